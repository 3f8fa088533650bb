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
