//! `kato_grpc._native`: the compiled KATO scoring engine.
//!
//! One `PatternIndex` per knowledge base holds the patterns compactly (interned
//! symbol ids, one flat arena) with their statistics, and runs Predict (SPEC.md §6)
//! without the GIL. `kato_grpc/kb/native.py` wraps it in the `KnowledgeView` the
//! engine reads; `kato_grpc/core/predict.py` is the reference it must equal bit for bit.

mod corpus;
mod index;
mod matching;
mod predict;
mod wire;

use corpus::{Corpus, LocalSymbols};
use index::{Extra, Index, Name, NewPattern, SymbolId};
use predict::{Config, Filters, State};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::sync::RwLock;

fn parse_name(text: &str) -> Option<Name> {
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

fn name_text(name: &Name) -> String {
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

fn new_pattern(record: &Bound<'_, PyAny>) -> PyResult<NewPattern> {
    let (name, events, frequency, emotives, metadata, affinity): (
        String,
        Vec<Vec<String>>,
        i64,
        Vec<Bound<'_, PyDict>>,
        Bound<'_, PyDict>,
        Bound<'_, PyDict>,
    ) = record.extract()?;
    let name = parse_name(&name).ok_or_else(|| PyValueError::new_err(format!("not a pattern name: {name:?}")))?;
    let extra = Extra {
        emotives: emotives.iter().map(ordered_items::<f64>).collect::<PyResult<_>>()?,
        metadata: ordered_items::<Vec<String>>(&metadata)?,
        affinity: ordered_items::<f64>(&affinity)?,
    };
    Ok(NewPattern { name, events, frequency, extra })
}

/// A pattern from its stored JSON columns; None if any column is not what the stores write.
fn pattern_from_json(row: (String, String, i64, String, String, String)) -> Option<NewPattern> {
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
struct OwnedRecord {
    name: String,
    events: Vec<Vec<String>>,
    frequency: i64,
    extra: Extra,
}

fn owned_record(index: &Index, slot: u32) -> OwnedRecord {
    let events =
        index.events(slot).iter().map(|e| e.iter().map(|&s| index.symbols.text(s).to_owned()).collect()).collect();
    OwnedRecord {
        name: name_text(index.name(slot)),
        events,
        frequency: index.frequency(slot),
        extra: index.extra(slot).cloned().unwrap_or_default(),
    }
}

fn str_tuple<'py>(py: Python<'py>, items: &[String]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, items.iter().map(|s| PyString::new(py, s)))
}

fn pairs_dict<'py, V: IntoPyObject<'py> + Clone>(
    py: Python<'py>,
    items: &[(String, V)],
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in items {
        dict.set_item(k, v.clone())?;
    }
    Ok(dict)
}

fn record_tuple<'py>(py: Python<'py>, r: &OwnedRecord) -> PyResult<Bound<'py, PyTuple>> {
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

/// A prediction rendered out of the index: symbols as positions in `Rendered::texts`.
struct RenderedPrediction {
    name: String,
    frequency: i64,
    sequence: Vec<Vec<u32>>,
    emotives: Vec<(String, f64)>,
    metadata: Vec<(String, Vec<String>)>,
    matches: Vec<u32>,
    /// past = sequence[..present_start], present = [present_start..future_start], future the rest.
    present_start: usize,
    future_start: usize,
    missing: Vec<Vec<u32>>,
    extras: Vec<Vec<u32>>,
    anomalies: Vec<(u32, u32, f64)>,
    numbers: [f64; 18],
    weighted: [Option<f64>; 4],
}

struct RenderedFuture {
    future: Vec<Vec<u32>>,
    aggregate_potential: f64,
    supporting_patterns: usize,
    total_weighted_frequency: f64,
}

#[derive(Default)]
struct Rendered {
    texts: Vec<String>,
    predictions: Vec<RenderedPrediction>,
    futures: Vec<RenderedFuture>,
    stats: predict::SearchStats,
}

/// Symbol ids → positions in a small table of the texts one result uses.
/// Dense (position + 1, 0 = not yet) for ids below `dense.len()`, hashed above it.
struct TextTable<'s, 'a> {
    symbols: &'s LocalSymbols<'a>,
    dense: Vec<u32>,
    position: hashbrown::HashMap<SymbolId, u32, foldhash::fast::FixedState>,
    texts: Vec<String>,
}

impl<'s, 'a> TextTable<'s, 'a> {
    fn new(symbols: &'s LocalSymbols<'a>, id_count: usize) -> Self {
        TextTable {
            symbols,
            dense: vec![0; id_count.min(1 << 16)],
            position: Default::default(),
            texts: Vec::with_capacity(512),
        }
    }

    fn at(&mut self, id: SymbolId) -> u32 {
        let i = id as usize;
        let known = if i < self.dense.len() { self.dense[i].checked_sub(1) } else { self.position.get(&id).copied() };
        if let Some(p) = known {
            return p;
        }
        let p = self.texts.len() as u32;
        self.texts.push(self.symbols.text(id).to_owned());
        if i < self.dense.len() {
            self.dense[i] = p + 1;
        } else {
            self.position.insert(id, p);
        }
        p
    }

    fn list(&mut self, ids: &[SymbolId]) -> Vec<u32> {
        ids.iter().map(|&s| self.at(s)).collect()
    }
}

fn run_predict(
    index: &Index,
    stm: &[Vec<String>],
    config: &Config,
    pending: Vec<NewPattern>,
    scratch: &mut Vec<u32>,
) -> Rendered {
    let mut symbols = LocalSymbols::new(index);
    let corpus = Corpus::new(index, pending, &mut symbols);
    let events: Vec<Vec<SymbolId>> = stm.iter().map(|e| e.iter().map(|s| symbols.intern(s)).collect()).collect();
    let flat = events.iter().flatten().copied().collect();
    let state = State { events, flat };
    let outcome = predict::predict(&corpus, &symbols, &state, config, scratch);

    let mut table = TextTable::new(&symbols, index.symbols.len());
    let mut rendered = Rendered::default();
    for &i in &outcome.ranking {
        let m = &outcome.members[i];
        let s = &m.scored;
        let a = &m.alignment;
        let pattern = corpus.pattern(s.candidate);
        let sequence: Vec<Vec<u32>> = pattern.events.iter().map(|e| table.list(e)).collect();
        let matches = table.list(&a.matches);
        let missing = a.missing.iter().map(|e| table.list(e)).collect();
        let extras = a.extras.iter().map(|e| table.list(e)).collect();
        let anomalies = a.anomalies.iter().map(|&(o, e, r)| (table.at(o), table.at(e), r)).collect();
        rendered.predictions.push(RenderedPrediction {
            name: name_text(&s.name),
            frequency: m.frequency,
            emotives: predict::average_emotives(pattern.extra),
            metadata: pattern.extra.map(|x| x.metadata.clone()).unwrap_or_default(),
            sequence,
            matches,
            present_start: s.present_start,
            future_start: s.future_start,
            missing,
            extras,
            anomalies,
            numbers: [
                s.similarity(),
                s.evidence,
                s.confidence,
                s.snr,
                s.fragmentation,
                m.entropy,
                m.normalized_entropy,
                m.global_normalized_entropy,
                m.itfdf_similarity,
                m.confluence,
                m.tfidf_score,
                m.pattern_probability,
                m.weighted_strength,
                m.predictive_information,
                m.bayesian_prior,
                m.bayesian_likelihood,
                m.bayesian_posterior,
                m.potential,
            ],
            weighted: [m.weighted_similarity, m.weighted_evidence, m.weighted_confidence, m.weighted_snr],
        });
    }
    for f in &outcome.futures {
        let member = &outcome.members[f.member].scored;
        let events = corpus.pattern(member.candidate).events;
        let future = events.iter().skip(member.future_start).map(|e| table.list(e)).collect();
        rendered.futures.push(RenderedFuture {
            future,
            aggregate_potential: f.aggregate_potential,
            supporting_patterns: f.supporting_patterns,
            total_weighted_frequency: f.total_weighted_frequency,
        });
    }
    rendered.texts = table.texts;
    rendered.stats = outcome.stats;
    rendered
}

fn config_from(py_config: &Bound<'_, PyTuple>) -> PyResult<Config> {
    let (
        recall_threshold,
        max_predictions,
        use_token_matching,
        fuzzy_token_threshold,
        rank_sort_algo,
        affinity_emotive,
        filter_pipeline,
        length_min_ratio,
        length_max_ratio,
        jaccard_threshold,
        jaccard_min_overlap,
        minhash_threshold,
    ): (f64, usize, bool, f64, String, String, Vec<String>, f64, f64, f64, i64, f64) = py_config.extract()?;
    let has = |stage: &str| filter_pipeline.iter().any(|s| s == stage);
    Ok(Config {
        recall_threshold,
        max_predictions,
        use_token_matching,
        fuzzy_token_threshold,
        rank_sort_algo,
        affinity_emotive,
        filters: Filters {
            length: has("length"),
            jaccard: has("jaccard"),
            minhash: has("minhash"),
            bloom: has("bloom"),
            length_min_ratio,
            length_max_ratio,
            jaccard_threshold,
            jaccard_min_overlap,
            minhash_threshold,
        },
    })
}

/// The patterns and statistics of one knowledge base, and Predict over them.
#[pyclass(frozen, module = "kato_grpc._native")]
struct PatternIndex {
    inner: RwLock<Index>,
    /// Zeroed buffers Predict borrows (one per concurrent call), so big tables are not
    /// allocated and faulted in on every call.
    scratch: std::sync::Mutex<Vec<Vec<u32>>>,
}

impl PatternIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PatternIndex {
    #[new]
    fn new() -> Self {
        PatternIndex { inner: RwLock::new(Index::new()), scratch: Default::default() }
    }

    /// Store a record tuple, replacing any pattern of that name.
    fn put(&self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<()> {
        let pattern = new_pattern(record)?;
        py.allow_threads(|| self.write().put(pattern));
        Ok(())
    }

    /// Store many record tuples (a bulk load); ends by trimming spare capacity.
    fn put_many(&self, py: Python<'_>, records: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut batch = Vec::with_capacity(4096);
        for record in records.try_iter()? {
            batch.push(new_pattern(&record?)?);
            if batch.len() == 4096 {
                let full = std::mem::take(&mut batch);
                py.allow_threads(|| {
                    let mut index = self.write();
                    full.into_iter().for_each(|p| index.put(p));
                });
            }
        }
        py.allow_threads(|| {
            let mut index = self.write();
            batch.into_iter().for_each(|p| index.put(p));
            index.shrink();
        });
        Ok(())
    }

    /// Store rows as the durable stores keep them: (name, events, frequency, emotives,
    /// metadata, affinity) with JSON text columns (kato_grpc/kb/records.py), parsed
    /// here without the GIL. Returns the rows it could not parse (for the caller's
    /// own parser); ends by trimming spare capacity.
    fn put_json_rows<'py>(&self, py: Python<'py>, rows: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut rejected = Vec::new();
        let mut batch: Vec<(String, String, i64, String, String, String)> = Vec::with_capacity(8192);
        let mut raw: Vec<Bound<'py, PyAny>> = Vec::with_capacity(8192);
        let flush = |batch: &mut Vec<(String, String, i64, String, String, String)>,
                     raw: &mut Vec<Bound<'py, PyAny>>,
                     rejected: &mut Vec<Bound<'py, PyAny>>| {
            let rows = std::mem::take(batch);
            let failed: Vec<usize> = py.allow_threads(|| {
                let mut index = self.write();
                let mut failed = Vec::new();
                for (k, row) in rows.into_iter().enumerate() {
                    match pattern_from_json(row) {
                        Some(pattern) => index.put(pattern),
                        None => failed.push(k),
                    }
                }
                failed
            });
            rejected.extend(failed.into_iter().map(|k| raw[k].clone()));
            raw.clear();
        };
        for row in rows.try_iter()? {
            let row = row?;
            batch.push(row.extract()?);
            raw.push(row);
            if batch.len() == 8192 {
                flush(&mut batch, &mut raw, &mut rejected);
            }
        }
        flush(&mut batch, &mut raw, &mut rejected);
        py.allow_threads(|| self.write().shrink());
        Ok(rejected)
    }

    fn delete(&self, py: Python<'_>, name: &str) -> bool {
        match parse_name(name) {
            Some(name) => py.allow_threads(|| self.write().delete(&name)),
            None => false,
        }
    }

    fn clear(&self, py: Python<'_>) {
        py.allow_threads(|| self.write().clear());
    }

    fn get<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(name) = parse_name(name) else {
            return Ok(None);
        };
        let found = py.allow_threads(|| {
            let index = self.read();
            index.find(&name).map(|slot| owned_record(&index, slot))
        });
        found.map(|r| record_tuple(py, &r)).transpose()
    }

    /// Records with name > `after`, ascending, at most `limit` (all when None).
    #[pyo3(signature = (after, limit=None))]
    fn list<'py>(&self, py: Python<'py>, after: &str, limit: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        let records = py.allow_threads(|| {
            let index = self.read();
            let sorted = index.sorted_slots();
            let start = sorted.partition_point(|&s| name_text(index.name(s)).as_str() <= after);
            let stop = limit.map_or(sorted.len(), |l| (start + l).min(sorted.len()));
            sorted[start..stop].iter().map(|&s| owned_record(&index, s)).collect::<Vec<_>>()
        });
        PyList::new(py, records.iter().map(|r| record_tuple(py, r)).collect::<PyResult<Vec<_>>>()?)
    }

    /// Records of the patterns containing any of `symbols` (all when None), by name.
    #[pyo3(signature = (symbols=None))]
    fn candidates<'py>(&self, py: Python<'py>, symbols: Option<Vec<String>>) -> PyResult<Bound<'py, PyList>> {
        let records = py.allow_threads(|| {
            let index = self.read();
            let mut slots: Vec<u32> = match &symbols {
                None => index.sorted_slots().to_vec(),
                Some(symbols) => {
                    let mut slots: Vec<u32> = symbols
                        .iter()
                        .filter_map(|s| index.symbols.get(s))
                        .flat_map(|id| index.postings(id).to_vec())
                        .collect();
                    slots.sort_unstable();
                    slots.dedup();
                    slots.sort_by(|a, b| index.name(*a).cmp(index.name(*b)));
                    slots
                }
            };
            slots.shrink_to_fit();
            slots.iter().map(|&s| owned_record(&index, s)).collect::<Vec<_>>()
        });
        PyList::new(py, records.iter().map(|r| record_tuple(py, r)).collect::<PyResult<Vec<_>>>()?)
    }

    fn pattern_count(&self) -> usize {
        self.read().pattern_count()
    }

    fn symbol_table_size(&self) -> usize {
        self.read().symbol_table_size()
    }

    fn total_symbols(&self) -> i64 {
        self.read().total_symbols()
    }

    fn pmf(&self, symbol: &str) -> usize {
        let index = self.read();
        index.symbols.get(symbol).map_or(0, |id| index.pmf(id))
    }

    fn freq(&self, symbol: &str) -> i64 {
        let index = self.read();
        index.symbols.get(symbol).map_or(0, |id| index.freq(id))
    }

    /// (symbol, freq, pmf) of every symbol with pmf > 0, in code-point order.
    fn symbol_stats(&self, py: Python<'_>) -> Vec<(String, i64, usize)> {
        py.allow_threads(|| {
            let index = self.read();
            let mut stats: Vec<(String, i64, usize)> = (0..index.symbols.len() as SymbolId)
                .filter(|&id| index.pmf(id) > 0)
                .map(|id| (index.symbols.text(id).to_owned(), index.freq(id), index.pmf(id)))
                .collect();
            stats.sort_by(|a, b| a.0.cmp(&b.0));
            stats
        })
    }

    /// `affinity(symbol)`: contributions summed in ascending pattern-name order, keys
    /// in code-point order (SPEC.md §2.2, §5.5).
    fn affinity(&self, py: Python<'_>, symbol: &str) -> Vec<(String, f64)> {
        py.allow_threads(|| {
            let index = self.read();
            index.symbols.get(symbol).map_or_else(Vec::new, |id| affinity_of(&index, id))
        })
    }

    /// Every symbol's non-empty affinity, symbols in code-point order.
    fn all_affinity(&self, py: Python<'_>) -> Vec<(String, Vec<(String, f64)>)> {
        py.allow_threads(|| {
            let index = self.read();
            let mut out: Vec<(String, Vec<(String, f64)>)> = (0..index.symbols.len() as SymbolId)
                .filter(|&id| index.pmf(id) > 0)
                .map(|id| (index.symbols.text(id).to_owned(), affinity_of(&index, id)))
                .filter(|(_, sums)| !sums.is_empty())
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        })
    }

    /// Predict (SPEC.md §6) for `stm` with `config` (a tuple, see kb/native.py), the
    /// call's own pending records laid over the index. Runs without the GIL.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        stm: Vec<Vec<String>>,
        config: &Bound<'py, PyTuple>,
        pending: &Bound<'py, PyList>,
    ) -> PyResult<PredictOutcome> {
        let config = config_from(config)?;
        let pending: Vec<NewPattern> = pending.iter().map(|r| new_pattern(&r)).collect::<PyResult<_>>()?;
        let rendered = py.allow_threads(|| {
            let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
            let rendered = run_predict(&self.read(), &stm, &config, pending, &mut scratch);
            self.scratch.lock().unwrap_or_else(|e| e.into_inner()).push(scratch);
            rendered
        });
        Ok(PredictOutcome { rendered })
    }
}

fn affinity_of(index: &Index, id: SymbolId) -> Vec<(String, f64)> {
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

/// One Predict's result, held natively: read as Python tuples, or as protobuf bytes.
#[pyclass(frozen, module = "kato_grpc._native")]
struct PredictOutcome {
    rendered: Rendered,
}

#[pymethods]
impl PredictOutcome {
    fn prediction_count(&self) -> usize {
        self.rendered.predictions.len()
    }

    fn future_count(&self) -> usize {
        self.rendered.futures.len()
    }

    /// How many candidates each stage of the search discarded (`predict::SearchStats`).
    fn search_stats(&self) -> Vec<(&'static str, usize)> {
        let s = &self.rendered.stats;
        vec![
            ("candidates", s.candidates),
            ("overlap_threshold", s.overlap_threshold),
            ("bound", s.bound),
            ("filtered", s.filtered),
            ("matched", s.matched),
            ("threshold", s.threshold),
            ("block_bound", s.block_bound),
            ("pruned", s.pruned),
            ("ensemble", s.ensemble),
        ]
    }

    /// The predictions as tuples in the field order of `kato_grpc.core.model.Prediction`
    /// (anomalies as (observed, expected, similarity) tuples).
    fn predictions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let r = &self.rendered;
        let texts: Vec<Bound<'_, PyString>> = r.texts.iter().map(|t| PyString::new(py, t)).collect();
        let symbols = |ids: &[u32]| PyTuple::new(py, ids.iter().map(|&i| texts[i as usize].clone()));
        let events = |evs: &[Vec<u32>]| -> PyResult<Bound<'_, PyTuple>> {
            PyTuple::new(py, evs.iter().map(|e| symbols(e)).collect::<PyResult<Vec<_>>>()?)
        };
        let mut out = Vec::with_capacity(r.predictions.len());
        for p in &r.predictions {
            let metadata = PyDict::new(py);
            for (k, values) in &p.metadata {
                metadata.set_item(k, str_tuple(py, values)?)?;
            }
            // past, present and future share the event tuples of the sequence, as in Python.
            let sequence: Vec<Bound<'_, PyTuple>> = p.sequence.iter().map(|e| symbols(e)).collect::<PyResult<_>>()?;
            let slice = |range: std::ops::Range<usize>| PyTuple::new(py, &sequence[range]);
            let anomalies = PyTuple::new(
                py,
                p.anomalies
                    .iter()
                    .map(|&(o, e, r)| {
                        PyTuple::new(
                            py,
                            [
                                texts[o as usize].clone().into_any(),
                                texts[e as usize].clone().into_any(),
                                r.into_pyobject(py)?.into_any(),
                            ],
                        )
                    })
                    .collect::<PyResult<Vec<_>>>()?,
            )?;
            let mut fields: Vec<Bound<'_, PyAny>> = vec![
                PyString::new(py, &p.name).into_any(),
                p.frequency.into_pyobject(py)?.into_any(),
                slice(0..sequence.len())?.into_any(),
                pairs_dict(py, &p.emotives)?.into_any(),
                metadata.into_any(),
                symbols(&p.matches)?.into_any(),
                slice(0..p.present_start)?.into_any(),
                slice(p.present_start..p.future_start)?.into_any(),
                slice(p.future_start..sequence.len())?.into_any(),
                events(&p.missing)?.into_any(),
                events(&p.extras)?.into_any(),
                anomalies.into_any(),
            ];
            for &x in &p.numbers {
                fields.push(x.into_pyobject(py)?.into_any());
            }
            for w in p.weighted {
                fields.push(w.into_pyobject(py)?.into_any());
            }
            out.push(PyTuple::new(py, fields)?);
        }
        PyList::new(py, out)
    }

    /// The future potentials as (future, aggregate_potential, supporting_patterns,
    /// total_weighted_frequency) tuples.
    fn futures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let r = &self.rendered;
        let texts: Vec<Bound<'_, PyString>> = r.texts.iter().map(|t| PyString::new(py, t)).collect();
        let mut out = Vec::with_capacity(r.futures.len());
        for f in &r.futures {
            let future = PyTuple::new(
                py,
                f.future
                    .iter()
                    .map(|e| PyTuple::new(py, e.iter().map(|&i| texts[i as usize].clone())))
                    .collect::<PyResult<Vec<_>>>()?,
            )?;
            out.push(PyTuple::new(
                py,
                [
                    future.into_any(),
                    f.aggregate_potential.into_pyobject(py)?.into_any(),
                    f.supporting_patterns.into_pyobject(py)?.into_any(),
                    f.total_weighted_frequency.into_pyobject(py)?.into_any(),
                ],
            )?);
        }
        PyList::new(py, out)
    }

    /// The predictions as protobuf wire bytes of a `repeated kato.v1.Prediction` field
    /// numbered `field` (merge them into the message that has the field).
    fn encode_predictions<'py>(&self, py: Python<'py>, field: u32) -> Bound<'py, PyBytes> {
        let bytes = py.allow_threads(|| encode_predictions(&self.rendered, field));
        PyBytes::new(py, &bytes)
    }

    /// The future potentials as wire bytes of a `repeated kato.v1.FuturePotential` field.
    fn encode_futures<'py>(&self, py: Python<'py>, field: u32) -> Bound<'py, PyBytes> {
        let r = &self.rendered;
        let mut w = wire::Writer::new();
        let text = |i: &u32| r.texts[*i as usize].as_str();
        for f in &r.futures {
            use wire::future_potential as fp;
            w.message(field, |m| {
                m.events(fp::FUTURE, f.future.iter().map(|e| e.iter().map(text)));
                m.double_field(fp::AGGREGATE_POTENTIAL, f.aggregate_potential);
                m.int_field(fp::SUPPORTING_PATTERNS, f.supporting_patterns as i64);
                m.double_field(fp::TOTAL_WEIGHTED_FREQUENCY, f.total_weighted_frequency);
            });
        }
        PyBytes::new(py, &w.bytes)
    }
}

fn encode_predictions(r: &Rendered, field: u32) -> Vec<u8> {
    use wire::prediction as f;
    let text = |i: &u32| r.texts[*i as usize].as_str();
    let mut w = wire::Writer::new();
    for p in &r.predictions {
        w.message(field, |m| {
            m.string_field(f::TYPE, "prototypical");
            m.string_field(f::NAME, &p.name);
            m.int_field(f::FREQUENCY, p.frequency);
            for (key, value) in &p.emotives {
                m.message(f::EMOTIVES, |e| {
                    e.string(1, key);
                    e.double(2, *value);
                });
            }
            for (key, values) in &p.metadata {
                m.message(f::METADATA, |e| {
                    e.string(1, key);
                    e.message(2, |list| values.iter().for_each(|v| list.string(1, v)));
                });
            }
            let sequence = &p.sequence;
            m.events(f::SEQUENCE, sequence.iter().map(|e| e.iter().map(text)));
            p.matches.iter().for_each(|s| m.string(f::MATCHES, text(s)));
            m.events(f::PAST, sequence[..p.present_start].iter().map(|e| e.iter().map(text)));
            m.events(f::PRESENT, sequence[p.present_start..p.future_start].iter().map(|e| e.iter().map(text)));
            m.events(f::FUTURE, sequence[p.future_start..].iter().map(|e| e.iter().map(text)));
            m.events(f::MISSING, p.missing.iter().map(|e| e.iter().map(text)));
            m.events(f::EXTRAS, p.extras.iter().map(|e| e.iter().map(text)));
            for (observed, expected, similarity) in &p.anomalies {
                m.message(f::ANOMALIES, |a| {
                    a.string_field(1, text(observed));
                    a.string_field(2, text(expected));
                    a.double_field(3, *similarity);
                });
            }
            for (k, &x) in p.numbers.iter().enumerate() {
                m.double_field(f::FIRST_NUMBER + k as u32, x);
            }
            for (k, x) in p.weighted.iter().enumerate() {
                if let Some(x) = x {
                    m.double(f::FIRST_WEIGHTED + k as u32, *x);
                }
            }
        });
    }
    w.bytes
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PatternIndex>()?;
    m.add_class::<PredictOutcome>()?;
    Ok(())
}
