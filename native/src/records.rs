//! Patterns crossing the boundary: names as text, records as Python tuples and back,
//! rows as the durable stores keep them (JSON columns, kato_grpc/kb/records.py).

use crate::index::{Extra, Index, Name, NewPattern, SymbolId};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

pub fn parse_name(text: &str) -> Option<Name> {
    let bytes = text.as_bytes();
    if bytes.len() != 40 {
        return None;
    }
    let mut name = [0u8; 20];
    for (i, out) in name.iter_mut().enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *out = digit(bytes[2 * i])? << 4 | digit(bytes[2 * i + 1])?;
    }
    Some(name)
}

pub fn name_text(name: &Name) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(40);
    for &b in name {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

fn ordered_items<'py, V: FromPyObject<'py>>(dict: &Bound<'py, PyDict>) -> PyResult<Vec<(String, V)>> {
    dict.iter().map(|(k, v)| Ok((k.extract::<String>()?, v.extract::<V>()?))).collect()
}

/// A record tuple's fields: name, events, frequency, emotive window, metadata, affinity.
type RecordFields<'py> =
    (String, Vec<Vec<String>>, i64, Vec<Bound<'py, PyDict>>, Bound<'py, PyDict>, Bound<'py, PyDict>);

pub fn new_pattern(record: &Bound<'_, PyAny>) -> PyResult<NewPattern> {
    let (name, events, frequency, emotives, metadata, affinity): RecordFields<'_> = record.extract()?;
    let name = parse_name(&name).ok_or_else(|| PyValueError::new_err(format!("not a pattern name: {name:?}")))?;
    let extra = Extra {
        emotives: emotives.iter().map(ordered_items::<f64>).collect::<PyResult<_>>()?,
        metadata: ordered_items::<Vec<String>>(&metadata)?,
        affinity: ordered_items::<f64>(&affinity)?,
    };
    Ok(NewPattern { name, events, frequency, extra })
}

/// A stored row: (name, events, frequency, emotives, metadata, affinity), JSON text columns.
pub type JsonRow = (String, String, i64, String, String, String);

/// A pattern from its stored JSON columns; None if any column is not what the stores write.
pub fn pattern_from_json(row: JsonRow) -> Option<NewPattern> {
    use serde_json::Value;
    let (name, events, frequency, emotives, metadata, affinity) = row;
    let strings =
        |v: &Value| -> Option<Vec<String>> { v.as_array()?.iter().map(|s| s.as_str().map(str::to_owned)).collect() };
    let numbers = |v: &Value| -> Option<Vec<(String, f64)>> {
        v.as_object()?.iter().map(|(k, x)| Some((k.clone(), x.as_f64()?))).collect()
    };
    let events: Value = serde_json::from_str(&events).ok()?;
    let emotives: Value = serde_json::from_str(&emotives).ok()?;
    let metadata: Value = serde_json::from_str(&metadata).ok()?;
    let affinity: Value = serde_json::from_str(&affinity).ok()?;
    Some(NewPattern {
        name: parse_name(&name)?,
        events: events.as_array()?.iter().map(strings).collect::<Option<_>>()?,
        frequency,
        extra: Extra {
            emotives: emotives.as_array()?.iter().map(numbers).collect::<Option<_>>()?,
            metadata: metadata
                .as_object()?
                .iter()
                .map(|(k, v)| Some((k.clone(), strings(v)?)))
                .collect::<Option<_>>()?,
            affinity: numbers(&affinity)?,
        },
    })
}

/// A stored pattern, owned, ready to become a Python tuple.
pub struct OwnedRecord {
    name: String,
    events: Vec<Vec<String>>,
    frequency: i64,
    extra: Extra,
}

pub fn owned_record(index: &Index, slot: u32) -> OwnedRecord {
    let events =
        index.events(slot).iter().map(|e| e.iter().map(|&s| index.symbols.text(s).to_owned()).collect()).collect();
    OwnedRecord {
        name: name_text(index.name(slot)),
        events,
        frequency: index.frequency(slot),
        extra: index.extra(slot).cloned().unwrap_or_default(),
    }
}

pub fn str_tuple<'py>(py: Python<'py>, items: &[String]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, items.iter().map(|s| PyString::new(py, s)))
}

pub fn pairs_dict<'py, V: IntoPyObject<'py> + Clone>(
    py: Python<'py>,
    items: &[(String, V)],
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in items {
        dict.set_item(k, v.clone())?;
    }
    Ok(dict)
}

pub fn record_tuple<'py>(py: Python<'py>, r: &OwnedRecord) -> PyResult<Bound<'py, PyTuple>> {
    let events = PyTuple::new(py, r.events.iter().map(|e| str_tuple(py, e)).collect::<PyResult<Vec<_>>>()?)?;
    let emotives = PyTuple::new(py, r.extra.emotives.iter().map(|m| pairs_dict(py, m)).collect::<PyResult<Vec<_>>>()?)?;
    let metadata = PyDict::new(py);
    for (k, values) in &r.extra.metadata {
        metadata.set_item(k, str_tuple(py, values)?)?;
    }
    let affinity = pairs_dict(py, &r.extra.affinity)?;
    PyTuple::new(
        py,
        [
            PyString::new(py, &r.name).into_any(),
            events.into_any(),
            r.frequency.into_pyobject(py)?.into_any(),
            emotives.into_any(),
            metadata.into_any(),
            affinity.into_any(),
        ],
    )
}

pub fn affinity_of(index: &Index, id: SymbolId) -> Vec<(String, f64)> {
    let mut slots = index.postings(id).to_vec();
    slots.sort_by(|a, b| index.name(*a).cmp(index.name(*b)));
    let mut sums: Vec<(String, f64)> = Vec::new();
    for slot in slots {
        if let Some(extra) = index.extra(slot) {
            for (key, value) in &extra.affinity {
                match sums.iter_mut().find(|(k, _)| k == key) {
                    Some(entry) => entry.1 += value,
                    None => sums.push((key.clone(), 0.0 + value)),
                }
            }
        }
    }
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_forty_lowercase_hex_digits() {
        let text = "0123456789abcdef0123456789abcdef01234567";
        let name = parse_name(text).unwrap();
        assert_eq!(name[0], 0x01);
        assert_eq!(name[19], 0x67);
        assert_eq!(name_text(&name), text);
        for bad in ["", "0123", &text.to_uppercase(), &format!("{}g", &text[..39]), &format!("{text}0")] {
            assert_eq!(parse_name(bad), None, "{bad:?}");
        }
    }
}
