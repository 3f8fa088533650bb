//! `kato_grpc._native`: the compiled KATO scoring engine, its PyO3 surface.
//!
//! One `PatternIndex` per knowledge base holds the patterns compactly (interned
//! symbol ids, one flat arena) with their statistics, and runs Predict (SPEC.md §6)
//! without the GIL. `kato_grpc/kb/native.py` wraps it in the `KnowledgeView` the
//! engine reads; `kato_grpc/core/predict.py` is the reference it must equal bit for bit.
//! Records cross as tuples (`records.rs`), a Predict's outcome as dicts or wire bytes
//! (`render.rs`); every call that reads the index does so without the GIL.

mod corpus;
mod index;
mod matching;
mod predict;
mod records;
mod render;
mod wire;

use index::{Index, NewPattern, SymbolId};
use predict::{Config, FilterStage, Filters, RankKey};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use records::{
    affinity_of, name_text, new_pattern, owned_record, parse_name, pattern_from_json, record_tuple, JsonRow,
};
use render::Rendered;
use std::sync::RwLock;

/// The session settings Predict reads, as attributes of `kato_grpc.core.config.SessionConfig`
/// (or anything with those attributes).
#[derive(FromPyObject)]
struct SessionConfig {
    recall_threshold: f64,
    max_predictions: usize,
    use_token_matching: bool,
    fuzzy_token_threshold: f64,
    rank_sort_algo: String,
    affinity_emotive: Option<String>,
    filter_pipeline: Vec<String>,
    length_min_ratio: f64,
    length_max_ratio: f64,
    jaccard_threshold: f64,
    jaccard_min_overlap: i64,
    minhash_threshold: f64,
}

impl SessionConfig {
    /// The engine's config; names parsed once, an unknown one is a ValueError naming it.
    fn parse(self) -> PyResult<Config> {
        let rank_by = RankKey::parse(&self.rank_sort_algo)
            .ok_or_else(|| PyValueError::new_err(format!("unknown rank_sort_algo {:?}", self.rank_sort_algo)))?;
        let mut filters = Filters {
            length_min_ratio: self.length_min_ratio,
            length_max_ratio: self.length_max_ratio,
            jaccard_threshold: self.jaccard_threshold,
            jaccard_min_overlap: self.jaccard_min_overlap,
            minhash_threshold: self.minhash_threshold,
            ..Filters::default()
        };
        for name in &self.filter_pipeline {
            match FilterStage::parse(name) {
                Some(FilterStage::Length) => filters.length = true,
                Some(FilterStage::Jaccard) => filters.jaccard = true,
                Some(FilterStage::Minhash) => filters.minhash = true,
                Some(FilterStage::Bloom) => filters.bloom = true,
                Some(FilterStage::Rapidfuzz) => {}
                None => return Err(PyValueError::new_err(format!("unknown filter_pipeline stage {name:?}"))),
            }
        }
        Ok(Config {
            recall_threshold: self.recall_threshold,
            max_predictions: self.max_predictions,
            use_token_matching: self.use_token_matching,
            fuzzy_token_threshold: self.fuzzy_token_threshold,
            rank_by,
            affinity_emotive: self.affinity_emotive.unwrap_or_default(),
            filters,
        })
    }
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
        let mut batch: Vec<JsonRow> = Vec::with_capacity(8192);
        let mut raw: Vec<Bound<'py, PyAny>> = Vec::with_capacity(8192);
        let flush =
            |batch: &mut Vec<JsonRow>, raw: &mut Vec<Bound<'py, PyAny>>, rejected: &mut Vec<Bound<'py, PyAny>>| {
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

    fn pattern_count(&self, py: Python<'_>) -> usize {
        py.allow_threads(|| self.read().pattern_count())
    }

    fn symbol_table_size(&self, py: Python<'_>) -> usize {
        py.allow_threads(|| self.read().symbol_table_size())
    }

    fn total_symbols(&self, py: Python<'_>) -> i64 {
        py.allow_threads(|| self.read().total_symbols())
    }

    fn pmf(&self, py: Python<'_>, symbol: &str) -> usize {
        py.allow_threads(|| {
            let index = self.read();
            index.symbols.get(symbol).map_or(0, |id| index.pmf(id))
        })
    }

    fn freq(&self, py: Python<'_>, symbol: &str) -> i64 {
        py.allow_threads(|| {
            let index = self.read();
            index.symbols.get(symbol).map_or(0, |id| index.freq(id))
        })
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

    /// Predict (SPEC.md §6) for `stm` with `config` (a `SessionConfig`), the call's own
    /// pending records laid over the index. Runs without the GIL.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        stm: Vec<Vec<String>>,
        config: SessionConfig,
        pending: &Bound<'py, PyList>,
    ) -> PyResult<PredictOutcome> {
        let config = config.parse()?;
        let pending: Vec<NewPattern> = pending.iter().map(|r| new_pattern(&r)).collect::<PyResult<_>>()?;
        let rendered = py.allow_threads(|| {
            let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
            let rendered = render::run_predict(&self.read(), &stm, &config, pending, &mut scratch);
            self.scratch.lock().unwrap_or_else(|e| e.into_inner()).push(scratch);
            rendered
        });
        Ok(PredictOutcome { rendered })
    }
}

/// One Predict's result, held natively: read as Python dicts, or as protobuf bytes.
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

    /// The predictions as dicts keyed by the field names of `kato_grpc.core.model.Prediction`.
    fn predictions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        render::predictions_to_python(py, &self.rendered)
    }

    /// The future potentials as dicts keyed by the field names of `FuturePotential`.
    fn futures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        render::futures_to_python(py, &self.rendered)
    }

    /// The predictions as protobuf wire bytes of a `repeated kato.v1.Prediction` field
    /// numbered `field` (merge them into the message that has the field).
    fn encode_predictions<'py>(&self, py: Python<'py>, field: u32) -> Bound<'py, PyBytes> {
        let bytes = py.allow_threads(|| render::encode_predictions(&self.rendered, field));
        PyBytes::new(py, &bytes)
    }

    /// The future potentials as wire bytes of a `repeated kato.v1.FuturePotential` field.
    fn encode_futures<'py>(&self, py: Python<'py>, field: u32) -> Bound<'py, PyBytes> {
        let bytes = py.allow_threads(|| render::encode_futures(&self.rendered, field));
        PyBytes::new(py, &bytes)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PatternIndex>()?;
    m.add_class::<PredictOutcome>()?;
    Ok(())
}
