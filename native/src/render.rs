//! A Predict's outcome rendered out of the index: symbols as positions in a table of the
//! texts the result uses, so the result outlives the index lock. From there it becomes
//! Python objects (dicts keyed by the model's field names) or protobuf wire bytes.

use crate::corpus::{Corpus, LocalSymbols};
use crate::index::{Index, NewPattern, SymbolId};
use crate::predict::{average_emotives, predict, Config, Lists, SearchStats, State};
use crate::records::{name_text, pairs_dict, str_tuple};
use crate::wire;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// A prediction rendered out of the index: symbols as positions in `Rendered::texts`.
pub struct RenderedPrediction {
    name: String,
    frequency: i64,
    sequence: Lists<u32>,
    emotives: Vec<(String, f64)>,
    metadata: Vec<(String, Vec<String>)>,
    matches: Vec<u32>,
    /// past = sequence[..present_start], present = [present_start..future_start], future the rest.
    present_start: usize,
    future_start: usize,
    missing: Lists<u32>,
    extras: Lists<u32>,
    anomalies: Vec<(u32, u32, f64)>,
    numbers: Numbers,
    weighted: Weighted,
}

/// The number fields of a prediction (SPEC.md §6.12).
pub struct Numbers {
    similarity: f64,
    evidence: f64,
    confidence: f64,
    snr: f64,
    fragmentation: f64,
    entropy: f64,
    normalized_entropy: f64,
    global_normalized_entropy: f64,
    itfdf_similarity: f64,
    confluence: f64,
    tfidf_score: f64,
    pattern_probability: f64,
    weighted_strength: f64,
    predictive_information: f64,
    bayesian_prior: f64,
    bayesian_likelihood: f64,
    bayesian_posterior: f64,
    potential: f64,
}

impl Numbers {
    /// (field name, value), in the order of their numbers in `kato.v1.Prediction`
    /// (`wire::prediction::FIRST_NUMBER` onwards).
    fn named(&self) -> [(&'static str, f64); 18] {
        [
            ("similarity", self.similarity),
            ("evidence", self.evidence),
            ("confidence", self.confidence),
            ("snr", self.snr),
            ("fragmentation", self.fragmentation),
            ("entropy", self.entropy),
            ("normalized_entropy", self.normalized_entropy),
            ("global_normalized_entropy", self.global_normalized_entropy),
            ("itfdf_similarity", self.itfdf_similarity),
            ("confluence", self.confluence),
            ("tfidf_score", self.tfidf_score),
            ("pattern_probability", self.pattern_probability),
            ("weighted_strength", self.weighted_strength),
            ("predictive_information", self.predictive_information),
            ("bayesian_prior", self.bayesian_prior),
            ("bayesian_likelihood", self.bayesian_likelihood),
            ("bayesian_posterior", self.bayesian_posterior),
            ("potential", self.potential),
        ]
    }
}

/// The weighted fields (§6.8), null without `affinity_emotive`.
pub struct Weighted {
    similarity: Option<f64>,
    evidence: Option<f64>,
    confidence: Option<f64>,
    snr: Option<f64>,
}

impl Weighted {
    /// (field name, value), in the order of their numbers (`wire::prediction::FIRST_WEIGHTED` onwards).
    fn named(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("weighted_similarity", self.similarity),
            ("weighted_evidence", self.evidence),
            ("weighted_confidence", self.confidence),
            ("weighted_snr", self.snr),
        ]
    }
}

pub struct RenderedFuture {
    future: Lists<u32>,
    aggregate_potential: f64,
    supporting_patterns: usize,
    total_weighted_frequency: f64,
}

#[derive(Default)]
pub struct Rendered {
    texts: Vec<String>,
    pub predictions: Vec<RenderedPrediction>,
    pub futures: Vec<RenderedFuture>,
    pub stats: SearchStats,
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

    fn lists<'e>(&mut self, lists: impl Iterator<Item = &'e [SymbolId]>) -> Lists<u32> {
        let mut out = Lists::default();
        for ids in lists {
            out.push(ids.iter().map(|&s| self.at(s)));
        }
        out
    }
}

pub fn run_predict(
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
    let outcome = predict(&corpus, &symbols, &state, config, scratch);

    let mut table = TextTable::new(&symbols, index.symbols.len());
    let mut rendered = Rendered::default();
    for &i in &outcome.ranking {
        let m = &outcome.members[i];
        let s = &m.scored;
        let a = &m.alignment;
        let pattern = corpus.pattern(s.candidate);
        let sequence = table.lists(pattern.events.iter());
        let matches = table.list(&a.matches);
        let missing = table.lists(a.missing.iter());
        let extras = table.lists(a.extras.iter());
        let anomalies = a.anomalies.iter().map(|&(o, e, r)| (table.at(o), table.at(e), r)).collect();
        rendered.predictions.push(RenderedPrediction {
            name: name_text(&s.name),
            frequency: m.frequency,
            emotives: average_emotives(pattern.extra),
            metadata: pattern.extra.map(|x| x.metadata.clone()).unwrap_or_default(),
            sequence,
            matches,
            present_start: s.present_start,
            future_start: s.future_start,
            missing,
            extras,
            anomalies,
            numbers: Numbers {
                similarity: s.similarity,
                evidence: s.evidence,
                confidence: s.confidence,
                snr: s.snr,
                fragmentation: s.fragmentation,
                entropy: m.entropy,
                normalized_entropy: m.normalized_entropy,
                global_normalized_entropy: m.global_normalized_entropy,
                itfdf_similarity: m.itfdf_similarity,
                confluence: m.confluence,
                tfidf_score: m.tfidf_score,
                pattern_probability: m.pattern_probability,
                weighted_strength: m.weighted_strength,
                predictive_information: m.predictive_information,
                bayesian_prior: m.bayesian_prior,
                bayesian_likelihood: m.bayesian_likelihood,
                bayesian_posterior: m.bayesian_posterior,
                potential: m.potential,
            },
            weighted: Weighted {
                similarity: m.weighted_similarity,
                evidence: m.weighted_evidence,
                confidence: m.weighted_confidence,
                snr: m.weighted_snr,
            },
        });
    }
    for f in &outcome.futures {
        let member = &outcome.members[f.member].scored;
        let events = corpus.pattern(member.candidate).events;
        let future = table.lists(events.iter().skip(member.future_start));
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

/// The predictions as wire bytes of a `repeated kato.v1.Prediction` field numbered `field`.
pub fn encode_predictions(r: &Rendered, field: u32) -> Vec<u8> {
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
            let (present, future) = (p.present_start, p.future_start);
            m.events(f::SEQUENCE, sequence.iter().map(|e| e.iter().map(text)));
            p.matches.iter().for_each(|s| m.string(f::MATCHES, text(s)));
            m.events(f::PAST, sequence.range(0..present).map(|e| e.iter().map(text)));
            m.events(f::PRESENT, sequence.range(present..future).map(|e| e.iter().map(text)));
            m.events(f::FUTURE, sequence.range(future..sequence.len()).map(|e| e.iter().map(text)));
            m.events(f::MISSING, p.missing.iter().map(|e| e.iter().map(text)));
            m.events(f::EXTRAS, p.extras.iter().map(|e| e.iter().map(text)));
            for (observed, expected, similarity) in &p.anomalies {
                m.message(f::ANOMALIES, |a| {
                    a.string_field(1, text(observed));
                    a.string_field(2, text(expected));
                    a.double_field(3, *similarity);
                });
            }
            for (k, (_, x)) in p.numbers.named().into_iter().enumerate() {
                m.double_field(f::FIRST_NUMBER + k as u32, x);
            }
            for (k, (_, x)) in p.weighted.named().into_iter().enumerate() {
                if let Some(x) = x {
                    m.double(f::FIRST_WEIGHTED + k as u32, x);
                }
            }
        });
    }
    w.bytes
}

/// The future potentials as wire bytes of a `repeated kato.v1.FuturePotential` field.
pub fn encode_futures(r: &Rendered, field: u32) -> Vec<u8> {
    use wire::future_potential as fp;
    let text = |i: &u32| r.texts[*i as usize].as_str();
    let mut w = wire::Writer::new();
    for f in &r.futures {
        w.message(field, |m| {
            m.events(fp::FUTURE, f.future.iter().map(|e| e.iter().map(text)));
            m.double_field(fp::AGGREGATE_POTENTIAL, f.aggregate_potential);
            m.int_field(fp::SUPPORTING_PATTERNS, f.supporting_patterns as i64);
            m.double_field(fp::TOTAL_WEIGHTED_FREQUENCY, f.total_weighted_frequency);
        });
    }
    w.bytes
}

/// The predictions as dicts keyed by the field names of `kato_grpc.core.model.Prediction`
/// (anomalies as dicts keyed by those of `Anomaly`).
pub fn predictions_to_python<'py>(py: Python<'py>, r: &Rendered) -> PyResult<Bound<'py, PyList>> {
    let texts: Vec<Bound<'_, PyString>> = r.texts.iter().map(|t| PyString::new(py, t)).collect();
    let symbols = |ids: &[u32]| PyTuple::new(py, ids.iter().map(|&i| texts[i as usize].clone()));
    let events = |evs: &Lists<u32>| -> PyResult<Bound<'_, PyTuple>> {
        PyTuple::new(py, evs.iter().map(symbols).collect::<PyResult<Vec<_>>>()?)
    };
    let mut out = Vec::with_capacity(r.predictions.len());
    for p in &r.predictions {
        let metadata = PyDict::new(py);
        for (k, values) in &p.metadata {
            metadata.set_item(k, str_tuple(py, values)?)?;
        }
        // past, present and future share the event tuples of the sequence, as in Python.
        let sequence: Vec<Bound<'_, PyTuple>> = p.sequence.iter().map(symbols).collect::<PyResult<_>>()?;
        let slice = |range: std::ops::Range<usize>| PyTuple::new(py, &sequence[range]);
        let mut anomalies = Vec::with_capacity(p.anomalies.len());
        for &(observed, expected, similarity) in &p.anomalies {
            let a = PyDict::new(py);
            a.set_item(intern!(py, "observed"), &texts[observed as usize])?;
            a.set_item(intern!(py, "expected"), &texts[expected as usize])?;
            a.set_item(intern!(py, "similarity"), similarity)?;
            anomalies.push(a);
        }
        let d = PyDict::new(py);
        d.set_item(intern!(py, "type"), intern!(py, "prototypical"))?;
        d.set_item(intern!(py, "name"), &p.name)?;
        d.set_item(intern!(py, "frequency"), p.frequency)?;
        d.set_item(intern!(py, "sequence"), slice(0..sequence.len())?)?;
        d.set_item(intern!(py, "emotives"), pairs_dict(py, &p.emotives)?)?;
        d.set_item(intern!(py, "metadata"), metadata)?;
        d.set_item(intern!(py, "matches"), symbols(&p.matches)?)?;
        d.set_item(intern!(py, "past"), slice(0..p.present_start)?)?;
        d.set_item(intern!(py, "present"), slice(p.present_start..p.future_start)?)?;
        d.set_item(intern!(py, "future"), slice(p.future_start..sequence.len())?)?;
        d.set_item(intern!(py, "missing"), events(&p.missing)?)?;
        d.set_item(intern!(py, "extras"), events(&p.extras)?)?;
        d.set_item(intern!(py, "anomalies"), PyTuple::new(py, anomalies)?)?;
        for (key, x) in p.numbers.named() {
            d.set_item(PyString::intern(py, key), x)?;
        }
        for (key, x) in p.weighted.named() {
            d.set_item(PyString::intern(py, key), x)?;
        }
        out.push(d);
    }
    PyList::new(py, out)
}

/// The future potentials as dicts keyed by the field names of `FuturePotential`.
pub fn futures_to_python<'py>(py: Python<'py>, r: &Rendered) -> PyResult<Bound<'py, PyList>> {
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
        let d = PyDict::new(py);
        d.set_item(intern!(py, "future"), future)?;
        d.set_item(intern!(py, "aggregate_potential"), f.aggregate_potential)?;
        d.set_item(intern!(py, "supporting_patterns"), f.supporting_patterns)?;
        d.set_item(intern!(py, "total_weighted_frequency"), f.total_weighted_frequency)?;
        out.push(d);
    }
    PyList::new(py, out)
}
