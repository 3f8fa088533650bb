//! Protobuf wire encoding of predictions (`kato.v1.Prediction`, `FuturePotential`,
//! protos/kato/v1/types.proto), so the server can put 100 predictions into a response
//! without building them field by field in Python. The field numbers below mirror the
//! proto; tests/unit/test_native_engine.py parses these bytes with the generated
//! classes and compares them with the Python encoder's messages.

const LEN: u32 = 2;
const FIXED64: u32 = 1;
const VARINT: u32 = 0;

pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { bytes: Vec::with_capacity(1 << 14) }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u32) {
        self.varint(((field << 3) | wire_type) as u64);
    }

    pub fn string(&mut self, field: u32, text: &str) {
        self.tag(field, LEN);
        self.varint(text.len() as u64);
        self.bytes.extend_from_slice(text.as_bytes());
    }

    /// A proto3 string with implicit presence: omitted when empty.
    pub fn string_field(&mut self, field: u32, text: &str) {
        if !text.is_empty() {
            self.string(field, text);
        }
    }

    pub fn double(&mut self, field: u32, value: f64) {
        self.tag(field, FIXED64);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// A proto3 double with implicit presence: omitted when +0.0 (its bits are zero).
    pub fn double_field(&mut self, field: u32, value: f64) {
        if value.to_bits() != 0 {
            self.double(field, value);
        }
    }

    pub fn int_field(&mut self, field: u32, value: i64) {
        if value != 0 {
            self.tag(field, VARINT);
            self.varint(value as u64);
        }
    }

    /// A length-delimited submessage written by `body`.
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        self.tag(field, LEN);
        let mut inner = Writer { bytes: Vec::new() };
        body(&mut inner);
        self.varint(inner.bytes.len() as u64);
        self.bytes.extend_from_slice(&inner.bytes);
    }

    /// `repeated Event` (an Event is `repeated string symbols = 1`).
    pub fn events<'t>(&mut self, field: u32, events: impl Iterator<Item = impl Iterator<Item = &'t str>>) {
        for event in events {
            self.message(field, |w| {
                for symbol in event {
                    w.string(1, symbol);
                }
            });
        }
    }
}

/// Field numbers of `kato.v1.Prediction`.
pub mod prediction {
    pub const TYPE: u32 = 1;
    pub const NAME: u32 = 2;
    pub const FREQUENCY: u32 = 3;
    pub const EMOTIVES: u32 = 4;
    pub const METADATA: u32 = 5;
    pub const SEQUENCE: u32 = 6;
    pub const MATCHES: u32 = 7;
    pub const PAST: u32 = 8;
    pub const PRESENT: u32 = 9;
    pub const FUTURE: u32 = 10;
    pub const MISSING: u32 = 11;
    pub const EXTRAS: u32 = 12;
    pub const ANOMALIES: u32 = 13;
    /// similarity (14) … potential (31), in the order of `RenderedPrediction::numbers`.
    pub const FIRST_NUMBER: u32 = 14;
    /// weighted_similarity (32) … weighted_snr (35), explicit presence.
    pub const FIRST_WEIGHTED: u32 = 32;
}

/// Field numbers of `kato.v1.FuturePotential`.
pub mod future_potential {
    pub const FUTURE: u32 = 1;
    pub const AGGREGATE_POTENTIAL: u32 = 2;
    pub const SUPPORTING_PATTERNS: u32 = 3;
    pub const TOTAL_WEIGHTED_FREQUENCY: u32 = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        body(&mut w);
        w.bytes
    }

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        assert_eq!(written(|w| w.varint(0)), [0x00]);
        assert_eq!(written(|w| w.varint(1)), [0x01]);
        assert_eq!(written(|w| w.varint(127)), [0x7f]);
        assert_eq!(written(|w| w.varint(300)), [0xac, 0x02]); // the protobuf docs' example
        assert_eq!(written(|w| w.varint(u64::MAX)).len(), 10);
    }

    #[test]
    fn negative_ints_take_ten_bytes_as_protobuf_writes_them() {
        assert_eq!(written(|w| w.int_field(1, -1)), [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn fields_carry_their_number_and_wire_type() {
        assert_eq!(written(|w| w.string(2, "hi")), [0x12, 0x02, b'h', b'i']);
        assert_eq!(written(|w| w.int_field(3, 150)), [0x18, 0x96, 0x01]);
        let mut double = vec![0x71]; // field 14, fixed64
        double.extend_from_slice(&0.5f64.to_le_bytes());
        assert_eq!(written(|w| w.double_field(14, 0.5)), double);
    }

    #[test]
    fn implicit_presence_omits_defaults_but_not_negative_zero() {
        assert!(written(|w| w.string_field(1, "")).is_empty());
        assert!(written(|w| w.int_field(1, 0)).is_empty());
        assert!(written(|w| w.double_field(1, 0.0)).is_empty());
        assert_eq!(written(|w| w.double_field(1, -0.0)).len(), 9);
    }

    #[test]
    fn messages_and_events_are_length_delimited() {
        let bytes = written(|w| w.events(6, [["a", "bc"].into_iter()].into_iter()));
        assert_eq!(bytes, [0x32, 0x07, 0x0a, 0x01, b'a', 0x0a, 0x02, b'b', b'c']);
        assert_eq!(written(|w| w.message(4, |_| {})), [0x22, 0x00]);
    }
}
