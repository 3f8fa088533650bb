//! Predict (SPEC.md §6), step for step as `kato_grpc/core/predict.py` computes it:
//! candidates → similarity and threshold → alignment → pruning to the ensemble →
//! ensemble metrics → affinity weights → potential → ranking and cut.
//!
//! Every floating-point expression is evaluated in the Python core's operand order,
//! so both engines give the same bits (the property tests compare them with `==`).

use crate::corpus::{Candidate, Corpus, LocalSymbols};
use crate::index::{prefetch, Extra, Name, SymbolId};
use crate::matching::{character_ratio, BlockMatcher, Hits, LcsAgainst, RunEnds, WordState};
use hashbrown::HashMap;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The session settings Predict reads (SPEC.md §7).
pub struct Config {
    pub recall_threshold: f64,
    pub max_predictions: usize,
    pub use_token_matching: bool,
    pub fuzzy_token_threshold: f64,
    pub rank_by: RankKey,
    pub affinity_emotive: String,
    pub filters: Filters,
}

/// The fields `rank_sort_algo` may name (SPEC.md §6.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankKey {
    Potential,
    Similarity,
    Evidence,
    Confidence,
    Snr,
    Fragmentation,
    Frequency,
    NormalizedEntropy,
    GlobalNormalizedEntropy,
    ItfdfSimilarity,
    Confluence,
    PredictiveInformation,
    BayesianPosterior,
    BayesianPrior,
    BayesianLikelihood,
    TfidfScore,
    WeightedSimilarity,
    WeightedEvidence,
    WeightedConfidence,
    WeightedSnr,
}

impl RankKey {
    pub const ALL: [(&'static str, RankKey); 20] = [
        ("potential", RankKey::Potential),
        ("similarity", RankKey::Similarity),
        ("evidence", RankKey::Evidence),
        ("confidence", RankKey::Confidence),
        ("snr", RankKey::Snr),
        ("fragmentation", RankKey::Fragmentation),
        ("frequency", RankKey::Frequency),
        ("normalized_entropy", RankKey::NormalizedEntropy),
        ("global_normalized_entropy", RankKey::GlobalNormalizedEntropy),
        ("itfdf_similarity", RankKey::ItfdfSimilarity),
        ("confluence", RankKey::Confluence),
        ("predictive_information", RankKey::PredictiveInformation),
        ("bayesian_posterior", RankKey::BayesianPosterior),
        ("bayesian_prior", RankKey::BayesianPrior),
        ("bayesian_likelihood", RankKey::BayesianLikelihood),
        ("tfidf_score", RankKey::TfidfScore),
        ("weighted_similarity", RankKey::WeightedSimilarity),
        ("weighted_evidence", RankKey::WeightedEvidence),
        ("weighted_confidence", RankKey::WeightedConfidence),
        ("weighted_snr", RankKey::WeightedSnr),
    ];

    pub fn parse(name: &str) -> Option<RankKey> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|&(_, key)| key)
    }
}

/// The stages `filter_pipeline` may name (SPEC.md §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterStage {
    Length,
    Jaccard,
    Minhash,
    Bloom,
    /// Keeps what the threshold keeps anyway.
    Rapidfuzz,
}

impl FilterStage {
    pub fn parse(name: &str) -> Option<FilterStage> {
        Some(match name {
            "length" => FilterStage::Length,
            "jaccard" => FilterStage::Jaccard,
            "minhash" => FilterStage::Minhash,
            "bloom" => FilterStage::Bloom,
            "rapidfuzz" => FilterStage::Rapidfuzz,
            _ => return None,
        })
    }
}

/// The stages of `filter_pipeline` that remove patterns, and their settings.
#[derive(Default)]
pub struct Filters {
    pub length: bool,
    pub jaccard: bool,
    pub minhash: bool,
    pub bloom: bool,
    pub length_min_ratio: f64,
    pub length_max_ratio: f64,
    pub jaccard_threshold: f64,
    pub jaccard_min_overlap: i64,
    pub minhash_threshold: f64,
}

/// (observed, expected, similarity) of a fuzzy token match.
pub type Anomaly = (SymbolId, SymbolId, f64);

/// A candidate that passed the threshold, with its own (non-ensemble) metrics and
/// where the STM falls on it (§6.3–6.4): past is its events `[0, present_start)`,
/// present `[present_start, future_start)`, future the rest.
pub struct Scored {
    pub candidate: Candidate,
    pub name: Name,
    pub similarity: f64,
    pub evidence: f64,
    pub confidence: f64,
    pub snr: f64,
    pub pre_potential: f64,
    pub fragmentation: f64,
    pub present_start: usize,
    pub future_start: usize,
    /// Under fuzzy tokens, the matches and anomalies (they decide m).
    fuzzy: Option<(Vec<SymbolId>, Vec<Anomaly>)>,
}

/// Lists (events) of values in one buffer: the values in order, and where each list ends.
/// One allocation for all of a prediction's events instead of one per event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lists<T> {
    values: Vec<T>,
    ends: Vec<u32>,
}

impl<T: Copy> Lists<T> {
    pub fn push(&mut self, list: impl IntoIterator<Item = T>) {
        self.values.extend(list);
        self.ends.push(self.values.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every value, list after list.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    pub fn get(&self, k: usize) -> &[T] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.values[start..self.ends[k] as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[T]> + '_ {
        (0..self.len()).map(|k| self.get(k))
    }

    /// The lists `range`.
    pub fn range(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &[T]> + '_ {
        range.map(|k| self.get(k))
    }
}

/// The lists of an ensemble member, built only once it is in the ensemble.
pub struct Alignment {
    pub matches: Vec<SymbolId>,
    pub missing: Lists<SymbolId>,
    pub extras: Lists<SymbolId>,
    pub anomalies: Vec<Anomaly>,
}

pub struct Prediction {
    pub scored: Scored,
    pub alignment: Alignment,
    pub frequency: i64,
    pub entropy: f64,
    pub normalized_entropy: f64,
    pub global_normalized_entropy: f64,
    pub itfdf_similarity: f64,
    pub confluence: f64,
    pub tfidf_score: f64,
    pub pattern_probability: f64,
    pub weighted_strength: f64,
    pub predictive_information: f64,
    pub bayesian_prior: f64,
    pub bayesian_likelihood: f64,
    pub bayesian_posterior: f64,
    pub potential: f64,
    pub weighted_similarity: Option<f64>,
    pub weighted_evidence: Option<f64>,
    pub weighted_confidence: Option<f64>,
    pub weighted_snr: Option<f64>,
}

impl Prediction {
    fn rank_value(&self, key: RankKey) -> Option<f64> {
        let s = &self.scored;
        Some(match key {
            RankKey::Potential => self.potential,
            RankKey::Similarity => s.similarity,
            RankKey::Evidence => s.evidence,
            RankKey::Confidence => s.confidence,
            RankKey::Snr => s.snr,
            RankKey::Fragmentation => s.fragmentation,
            RankKey::Frequency => self.frequency as f64,
            RankKey::NormalizedEntropy => self.normalized_entropy,
            RankKey::GlobalNormalizedEntropy => self.global_normalized_entropy,
            RankKey::ItfdfSimilarity => self.itfdf_similarity,
            RankKey::Confluence => self.confluence,
            RankKey::PredictiveInformation => self.predictive_information,
            RankKey::BayesianPosterior => self.bayesian_posterior,
            RankKey::BayesianPrior => self.bayesian_prior,
            RankKey::BayesianLikelihood => self.bayesian_likelihood,
            RankKey::TfidfScore => self.tfidf_score,
            RankKey::WeightedSimilarity => return self.weighted_similarity,
            RankKey::WeightedEvidence => return self.weighted_evidence,
            RankKey::WeightedConfidence => return self.weighted_confidence,
            RankKey::WeightedSnr => return self.weighted_snr,
        })
    }
}

pub struct FuturePotential {
    /// The member whose future the group shows (its first member).
    pub member: usize,
    pub aggregate_potential: f64,
    pub supporting_patterns: usize,
    pub total_weighted_frequency: f64,
}

pub struct Outcome {
    /// The ensemble in name order; `ranking` indexes it.
    pub members: Vec<Prediction>,
    pub ranking: Vec<usize>,
    pub futures: Vec<FuturePotential>,
    pub stats: SearchStats,
}

/// The STM as Predict sees it.
pub struct State {
    pub events: Vec<Vec<SymbolId>>,
    pub flat: Vec<SymbolId>,
}

/// Counts of the distinct symbols, in order of first occurrence.
fn first_occurrence_counts(symbols: &[SymbolId]) -> Vec<(SymbolId, usize)> {
    let mut counts: Vec<(SymbolId, usize)> = Vec::new();
    if symbols.len() <= 32 {
        // Short lists (the usual present): a scan beats hashing.
        for &s in symbols {
            match counts.iter_mut().find(|(x, _)| *x == s) {
                Some(entry) => entry.1 += 1,
                None => counts.push((s, 1)),
            }
        }
        return counts;
    }
    let mut at: Map<SymbolId, usize> = Map::default();
    for &s in symbols {
        match at.get(&s) {
            Some(&i) => counts[i].1 += 1,
            None => {
                at.insert(s, counts.len());
                counts.push((s, 1));
            }
        }
    }
    counts
}

fn distinct(symbols: &[SymbolId]) -> Vec<SymbolId> {
    let mut out: Vec<SymbolId> = Vec::new();
    for &s in symbols {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `2·lcs / (L + n)` with KATO's ×100/100 round trip (§6.2).
fn token_similarity(lcs: usize, pattern_length: usize, state_length: usize) -> f64 {
    2.0 * lcs as f64 / (pattern_length + state_length) as f64 * 100.0 / 100.0
}

fn frag_term(fragmentation: f64) -> f64 {
    if fragmentation == -1.0 {
        0.0
    } else {
        1.0 / (fragmentation + 1.0)
    }
}

/// Bounds are compared with this margin, so float rounding in a bound never drops a
/// candidate that the exact computation would keep (as in the Python core).
const MARGIN: f64 = 1e-9;

/// How many candidates ahead the search loops prefetch (`index::prefetch`): far enough
/// for a memory load (~100 ns) to arrive, near enough that it is still in cache when
/// used. Scoring a candidate takes ~0.5 µs; counting overlaps a few ns.
const SCORE_AHEAD: usize = 8;
const COUNT_AHEAD: usize = 48;

/// How a state matches patterns at the token level: word operations when it fits in a
/// word (`WordState`), the general matchers otherwise.
enum TokenMatcher {
    Word { state: WordState, hits: Hits, ends: Box<RunEnds> },
    General { lcs: LcsAgainst<SymbolId>, blocks: BlockMatcher },
}

impl TokenMatcher {
    fn new(q: &[SymbolId]) -> Self {
        match WordState::new(q) {
            Some(state) => TokenMatcher::Word { state, hits: Vec::new(), ends: Box::new([0; 65]) },
            None => TokenMatcher::General { lcs: LcsAgainst::new(q), blocks: BlockMatcher::new(q) },
        }
    }

    /// The matching blocks of `p` and the state (§6.3) in `out`.
    fn blocks(&mut self, p: &[SymbolId], n: usize, out: &mut Vec<(usize, usize, usize)>) {
        self.blocks_unless(p, n, false, out, |_| false);
    }

    /// As `blocks`, unless `hopeless(b)` says that a candidate with at least b blocks cannot
    /// enter the ensemble: then false, and the rest of the blocks is never searched. (With
    /// a word state b comes from the first block alone; otherwise nothing is spared.)
    /// `same_p` if `lcs` just read this same `p`.
    fn blocks_unless(
        &mut self,
        p: &[SymbolId],
        n: usize,
        same_p: bool,
        out: &mut Vec<(usize, usize, usize)>,
        hopeless: impl FnOnce(usize) -> bool,
    ) -> bool {
        match self {
            TokenMatcher::Word { state, hits, ends } => {
                if !same_p {
                    state.hits(p, hits);
                }
                let top = state.top(hits, p.len(), ends);
                if top.2 == 0 {
                    out.clear();
                    return true;
                }
                let sides = state.sides(hits, top);
                if hopeless(sides.least_blocks()) {
                    return false;
                }
                state.blocks(hits, p.len(), (top, sides), ends, out);
            }
            TokenMatcher::General { blocks, .. } => blocks.blocks(p, n, out),
        }
        true
    }

    /// The LCS of `p` and the state; `same_p` if this same `p` was just read.
    fn lcs(&mut self, p: &[SymbolId], same_p: bool) -> usize {
        match self {
            TokenMatcher::Word { state, hits, .. } => {
                if !same_p {
                    state.hits(p, hits);
                }
                state.lcs(hits)
            }
            TokenMatcher::General { lcs, .. } => lcs.lcs(p.iter().copied()),
        }
    }
}

/// How many candidates each stage of the search discarded (the benchmarks print them).
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchStats {
    /// Candidates considered: those sharing a symbol with the state, or every pattern.
    pub candidates: usize,
    /// Dropped before any matching: even their symbol overlap cannot reach the threshold.
    pub overlap_threshold: usize,
    /// Never matched: their bound on pre_potential fell below the ensemble's worst member.
    pub bound: usize,
    /// Removed by `filter_pipeline`.
    pub filtered: usize,
    /// Matched: the LCS, then (if it passes) the first block, then the rest unless a bound says no.
    pub matched: usize,
    /// Matched, then below the threshold (or without a block).
    pub threshold: usize,
    /// First block found, then dropped: with the blocks it implies, the bound falls below
    /// the ensemble's worst member.
    pub block_bound: usize,
    /// Matched and passing, but not in the ensemble.
    pub pruned: usize,
    pub ensemble: usize,
}

/// What a candidate must beat to enter a full ensemble (its worst member), and the
/// candidate's multiset overlap with the state (which bounds its matches).
#[derive(Clone, Copy)]
struct Floor<'s> {
    worst: &'s Scored,
    overlap: usize,
}

struct Scorer<'a, 'c> {
    corpus: &'c Corpus<'a>,
    symbols: &'c LocalSymbols<'a>,
    config: &'c Config,
    state: &'c State,
    state_set: Vec<SymbolId>,
    tokens: TokenMatcher,
    state_chars: Vec<char>,
    char_lcs: Option<LcsAgainst<char>>,
    blocks: Vec<(usize, usize, usize)>,
    ratio_cache: Map<(SymbolId, SymbolId), f64>,
    stats: SearchStats,
}

impl<'a, 'c> Scorer<'a, 'c> {
    fn new(corpus: &'c Corpus<'a>, symbols: &'c LocalSymbols<'a>, config: &'c Config, state: &'c State) -> Self {
        let mut state_set = state.flat.clone();
        state_set.sort_unstable();
        state_set.dedup();
        let (state_chars, char_lcs) = if config.use_token_matching {
            (Vec::new(), None)
        } else {
            let chars = join_chars(state.flat.iter().map(|&s| symbols.text(s)));
            let lcs = LcsAgainst::new(&chars);
            (chars, Some(lcs))
        };
        Scorer {
            corpus,
            symbols,
            config,
            state,
            state_set,
            tokens: TokenMatcher::new(&state.flat),
            state_chars,
            char_lcs,
            blocks: Vec::new(),
            ratio_cache: Map::default(),
            stats: SearchStats::default(),
        }
    }

    /// Whether a pattern survives every stage of `filter_pipeline` (§6.1).
    fn passes_filters(&self, p: &[SymbolId]) -> bool {
        let f = &self.config.filters;
        if !(f.length || f.jaccard || f.minhash || f.bloom) {
            return true;
        }
        let n = self.state.flat.len();
        if f.length {
            let low = ((n as f64) * f.length_min_ratio).floor().max(1.0);
            let high = ((n as f64) * f.length_max_ratio).floor();
            let length = p.len() as f64;
            if !(low <= length && length <= high) {
                return false;
            }
        }
        let mut pattern_set = p.to_vec();
        pattern_set.sort_unstable();
        pattern_set.dedup();
        let common = pattern_set.iter().filter(|s| self.state_set.binary_search(s).is_ok()).count();
        let union = pattern_set.len() + self.state_set.len() - common;
        let jaccard = if union > 0 { common as f64 / union as f64 } else { 0.0 };
        if f.jaccard && ((common as i64) < f.jaccard_min_overlap || jaccard < f.jaccard_threshold) {
            return false;
        }
        if f.minhash && jaccard < f.minhash_threshold {
            return false;
        }
        if f.bloom && common == 0 {
            return false;
        }
        true
    }

    fn character_similarity(&self, p: &[SymbolId]) -> f64 {
        let s1 = join_chars(p.iter().map(|&s| self.symbols.text(s)));
        let tot = s1.len() + self.state_chars.len();
        if tot == 0 {
            return 1.0;
        }
        let lcs = self.char_lcs.as_ref().unwrap().lcs(s1.iter().copied());
        let d = tot - 2 * lcs;
        (1.0 - d as f64 / tot as f64) * 100.0 / 100.0
    }

    /// The candidate's own metrics, or None if a filter, the threshold or §6.3 drops it,
    /// or if it would not rank before `floor` (the worst member kept so far) in pruning.
    fn score(&mut self, candidate: Candidate, floor: Option<Floor>) -> Option<Scored> {
        let mut blocks = std::mem::take(&mut self.blocks); // one buffer for every candidate
        let scored = self.score_with(candidate, floor, &mut blocks);
        self.blocks = blocks;
        scored
    }

    fn score_with(
        &mut self,
        candidate: Candidate,
        floor: Option<Floor>,
        blocks: &mut Vec<(usize, usize, usize)>,
    ) -> Option<Scored> {
        let (name, events) = self.corpus.name_and_events(candidate);
        let p = events.symbols;
        if !self.passes_filters(p) {
            self.stats.filtered += 1;
            return None;
        }
        self.stats.matched += 1;
        let n = self.state.flat.len();
        let threshold = self.config.recall_threshold;
        // The exact similarity first: with a word state the LCS is a few operations over the
        // pattern's hits, which the blocks then reuse.
        let similarity = if self.config.use_token_matching {
            token_similarity(self.tokens.lcs(p, false), p.len(), n)
        } else {
            self.character_similarity(p)
        };
        if similarity < threshold {
            self.stats.threshold += 1;
            return None;
        }
        // With the first block known, a bound that counts the blocks it implies may already
        // show the candidate cannot beat the floor (`pre_potential_bound`).
        let hopeless = |least: usize| {
            floor.as_ref().is_some_and(|f| pre_potential_bound(f.overlap, p.len(), n, least) < f.worst.pre_potential)
        };
        if !self.tokens.blocks_unless(p, n, self.config.use_token_matching, blocks, hopeless) {
            self.stats.block_bound += 1;
            return None;
        }
        let block_matches: usize = blocks.iter().map(|b| b.2).sum();
        if blocks.is_empty() && threshold > 0.0 {
            self.stats.threshold += 1;
            return None;
        }

        // §6.3: the blocks give the matches, the fragmentation and the flat past/present.
        let (mut m, past_len, present_len, fragmentation) = match (blocks.first(), blocks.last()) {
            (Some(first), Some(last)) => (block_matches, first.0, last.0 + last.2 - first.0, (blocks.len() - 1) as f64),
            _ => (0, 0, p.len(), -1.0),
        };
        // §6.4: whole events; an event only partly covered is taken whole.
        let (mut present_start, mut future_start, mut covered) = (0, 0, 0usize);
        for (e, &len) in events.lengths.iter().enumerate() {
            if covered < past_len {
                present_start = e + 1;
                future_start = e + 1;
            } else if covered < past_len + present_len {
                future_start = e + 1;
            } else {
                break;
            }
            covered += len as usize;
        }
        // A match that starts inside an event takes that event into `present`.
        if let Some(&(first_i, _, _)) = blocks.first() {
            if present_start > 0 && events.iter().nth(present_start - 1).unwrap().contains(&p[first_i]) {
                present_start -= 1;
            }
        }
        let fuzzy = if self.config.fuzzy_token_threshold > 0.0 { Some(self.fuzzy_matches(p)) } else { None };
        if let Some((matches, _)) = &fuzzy {
            m = matches.len();
        }

        let present_length: usize = events.lengths[present_start..future_start].iter().map(|&l| l as usize).sum();
        let evidence = m as f64 / p.len() as f64;
        let confidence = if present_length > 0 { m as f64 / present_length as f64 } else { 0.0 };
        let snr = if m + n > 0 { (3 * m as i64 - n as i64) as f64 / (m + n) as f64 } else { 0.0 };
        let pre_potential = (evidence + confidence) * snr + frag_term(fragmentation);
        if floor
            .is_some_and(|f| pruning_order(pre_potential, name, f.worst.pre_potential, &f.worst.name) != Ordering::Less)
        {
            self.stats.pruned += 1;
            return None; // it could not enter the ensemble: spare building it
        }
        Some(Scored {
            candidate,
            name: *name,
            similarity,
            evidence,
            confidence,
            snr,
            pre_potential,
            fragmentation,
            present_start,
            future_start,
            fuzzy,
        })
    }

    /// matches, missing, extras and anomalies of an ensemble member (§6.3–6.5.1).
    fn align(&mut self, scored: &Scored) -> Alignment {
        let q = &self.state.flat;
        let events = self.corpus.pattern(scored.candidate).events;
        let (matches, anomalies) = match &scored.fuzzy {
            Some((matches, anomalies)) => (matches.clone(), anomalies.clone()),
            None => {
                self.tokens.blocks(events.symbols, q.len(), &mut self.blocks);
                (self.blocks.iter().flat_map(|&(_, j, k)| q[j..j + k].iter().copied()).collect(), Vec::new())
            }
        };
        let present: Vec<&[SymbolId]> =
            events.iter().skip(scored.present_start).take(scored.future_start - scored.present_start).collect();
        let mut missing = Lists::default();
        for e in &present {
            missing.push(e.iter().copied().filter(|s| !matches.contains(s)));
        }
        let mut extras = Lists::default();
        for e in &self.state.events {
            extras.push(e.iter().copied().filter(|s| !present.iter().any(|pe| pe.contains(s))));
        }
        Alignment { matches, missing, extras, anomalies }
    }

    /// ``1 − d/tot`` of two symbols' texts, cached per pair for this Predict.
    fn ratio(&mut self, s: SymbolId, t: SymbolId) -> f64 {
        if let Some(&r) = self.ratio_cache.get(&(s, t)) {
            return r;
        }
        let a: Vec<char> = self.symbols.text(s).chars().collect();
        let b: Vec<char> = self.symbols.text(t).chars().collect();
        let r = character_ratio(&a, &b);
        self.ratio_cache.insert((s, t), r);
        r
    }

    /// Fuzzy token partners for every state symbol (§6.5.1).
    fn fuzzy_matches(&mut self, p: &[SymbolId]) -> (Vec<SymbolId>, Vec<Anomaly>) {
        let floor = 100.0 * self.config.fuzzy_token_threshold;
        let candidates = distinct(p);
        let mut matches = Vec::new();
        let mut anomalies = Vec::new();
        for k in 0..self.state.flat.len() {
            let t = self.state.flat[k];
            let mut best: Option<SymbolId> = None;
            let mut best_score = -1.0;
            for &s in &candidates {
                let score = if s == t { 100.0 } else { self.ratio(s, t) * 100.0 };
                if score >= floor && score > best_score {
                    best = Some(s);
                    best_score = score;
                }
            }
            if let Some(s) = best {
                matches.push(t);
                if s != t {
                    anomalies.push((t, s, best_score / 100.0));
                }
            }
        }
        (matches, anomalies)
    }
}

fn join_chars<'s>(texts: impl Iterator<Item = &'s str>) -> Vec<char> {
    let mut out = Vec::new();
    for (k, text) in texts.enumerate() {
        if k > 0 {
            out.push(' ');
        }
        out.extend(text.chars());
    }
    out
}

/// Orders kept members so that the heap's top is the one a newcomer must beat:
/// the lowest pre-potential, and among equals the largest name.
struct Kept(Scored);

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kept {
    fn cmp(&self, other: &Self) -> Ordering {
        // "Greater" = worse: lower pre_potential, then larger name.
        prunes_before(&self.0, &other.0)
    }
}

/// `a` before `b` in pruning: higher pre-potential, then smaller name.
fn prunes_before(a: &Scored, b: &Scored) -> Ordering {
    pruning_order(a.pre_potential, &a.name, b.pre_potential, &b.name)
}

/// The pruning order from the two fields it reads (a candidate not yet built has just these).
fn pruning_order(a_pre_potential: f64, a_name: &Name, b_pre_potential: f64, b_name: &Name) -> Ordering {
    b_pre_potential.partial_cmp(&a_pre_potential).unwrap_or(Ordering::Equal).then_with(|| a_name.cmp(b_name))
}

/// The ensemble of §6.6: the 3·max_predictions best pre-potentials (ties by name),
/// in name order, among the candidates that pass the threshold.
fn select_ensemble(
    scorer: &mut Scorer,
    corpus: &Corpus,
    state: &State,
    config: &Config,
    scratch: &mut Vec<u32>,
) -> Vec<Scored> {
    let keep = 3 * config.max_predictions;
    let exact_tokens = config.use_token_matching && config.fuzzy_token_threshold == 0.0;
    let needs_every_pattern = config.recall_threshold == 0.0 || !config.use_token_matching;
    let mut ensemble: Vec<Scored> = if exact_tokens {
        bounded_search(scorer, corpus, state, config, keep, needs_every_pattern, scratch)
    } else {
        let candidates = if needs_every_pattern { corpus.all() } else { sharing(corpus, &state.flat) };
        scorer.stats.candidates = candidates.len();
        let mut scored: Vec<Scored> = candidates.into_iter().filter_map(|c| scorer.score(c, None)).collect();
        if scored.len() > keep {
            // The pruning order is total (names are unique): the first `keep` are one set.
            scored.select_nth_unstable_by(keep - 1, prunes_before);
            scorer.stats.pruned += scored.len() - keep;
            scored.truncate(keep);
        }
        scored
    };
    scorer.stats.ensemble = ensemble.len();
    ensemble.sort_by_key(|member| member.name);
    ensemble
}

/// The candidates sharing a symbol with the state, each once.
fn sharing(corpus: &Corpus, q: &[SymbolId]) -> Vec<Candidate> {
    let mut out = Vec::new();
    for s in distinct(q) {
        corpus.containing(s, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// An upper bound on the pre_potential of a pattern of `length` symbols against a state
/// of `n`, when its matches are at most `most` (exact tokens: m ≤ LCS ≤ the multiset
/// overlap c). With m ≥ 1 matches (a shared symbol always makes a block), a present of R
/// symbols (m ≤ R ≤ L: it holds every match and lies in the pattern) and B ≥ 1 blocks,
///
///   pre_potential = (m/L + m/R)·snr(m) + 1/B,   snr(m) = (3m − n)/(m + n), increasing in m.
///
/// Where snr(m) ≥ 0 it is largest at R = m: (m/L + 1)·snr(m) + 1, increasing in m, so
/// taken at m = most. Where snr(m) < 0 it is largest at R = L: (2/L)·m(3m − n)/(m + n) + 1,
/// convex in m (its second derivative is 16n²/(L(m + n)³) > 0), so largest at an end of
/// [1, most]. With at least `least_blocks` blocks the last term is at most 1/least_blocks.
/// Without a shared symbol (most = 0) it is (0 + 0)·(−1) + 0 = 0.
fn pre_potential_bound(most: usize, length: usize, n: usize, least_blocks: usize) -> f64 {
    if most == 0 {
        return MARGIN;
    }
    let (l, n) = (length as f64, n as f64);
    let snr = |m: f64| (3.0 * m - n) / (m + n);
    let most_f = most as f64;
    let best = if snr(most_f) >= 0.0 {
        (most_f / l + 1.0) * snr(most_f)
    } else {
        let negative = |m: f64| 2.0 * m / l * snr(m);
        negative(1.0).max(negative(most_f))
    };
    best + 1.0 / least_blocks as f64 + MARGIN
}

/// Exact tokens: score candidates in decreasing order of an upper bound on their
/// pre-potential (`pre_potential_bound` of their overlap c) and stop once none left can
/// beat (or tie) the worst kept member.
fn bounded_search(
    scorer: &mut Scorer,
    corpus: &Corpus,
    state: &State,
    config: &Config,
    keep: usize,
    every_pattern: bool,
    overlap: &mut Vec<u32>,
) -> Vec<Scored> {
    let q = &state.flat;
    let n = q.len();
    let state_counts = first_occurrence_counts(q);
    // The multiset overlap c of each candidate sharing a symbol, in a dense table that
    // is all zeros between calls (a reused buffer: at 1M patterns it is 4 MB).
    if overlap.len() < corpus.candidate_capacity() {
        overlap.resize(corpus.candidate_capacity(), 0);
    }
    let mut sharing: Vec<Candidate> = Vec::new();
    let mut holders = Vec::new();
    for &(symbol, q_count) in &state_counts {
        holders.clear();
        corpus.containing(symbol, &mut holders);
        for (k, &candidate) in holders.iter().enumerate() {
            if let Some(&ahead) = holders.get(k + COUNT_AHEAD) {
                prefetch(&overlap[..], corpus.candidate_position(ahead));
            }
            let at = corpus.candidate_position(candidate);
            if overlap[at] == 0 {
                sharing.push(candidate);
            }
            overlap[at] += 1;
        }
        if q_count > 1 {
            // Only the patterns holding the symbol more than once (listed at learn time)
            // share more than one of its occurrences.
            holders.clear();
            corpus.containing_repeatedly(symbol, &mut holders);
            for &candidate in &holders {
                let p_count = corpus.pattern(candidate).events.symbols.iter().filter(|&&s| s == symbol).count();
                overlap[corpus.candidate_position(candidate)] += (p_count.min(q_count) - 1) as u32;
            }
        }
    }
    let overlap_of: Vec<u32> = sharing.iter().map(|&c| overlap[corpus.candidate_position(c)]).collect();
    for &candidate in &sharing {
        overlap[corpus.candidate_position(candidate)] = 0;
    }
    let overlap_at: Map<Candidate, u32> =
        if every_pattern { sharing.iter().copied().zip(overlap_of.iter().copied()).collect() } else { Map::default() };
    let pool: Vec<(Candidate, u32)> = if every_pattern {
        corpus.all().into_iter().map(|c| (c, overlap_at.get(&c).copied().unwrap_or(0))).collect()
    } else {
        sharing.into_iter().zip(overlap_of).collect()
    };
    scorer.stats.candidates = pool.len();
    // The bound depends on (c, L) only. Number the distinct (c, L) as groups, then lay the
    // candidates out group by group in decreasing bound order (a counting sort; the order
    // within a group does not change the result).
    let mut group_ids = GroupIds::new(n);
    let mut groups: Vec<Group> = Vec::new();
    let mut grouped: Vec<(Candidate, u32)> = Vec::with_capacity(pool.len());
    for (k, &(candidate, c)) in pool.iter().enumerate() {
        if let Some(&(ahead, _)) = pool.get(k + COUNT_AHEAD) {
            corpus.prefetch_length(ahead);
        }
        let c = c as usize;
        let length = corpus.length(candidate);
        if 2.0 * c as f64 / (length + n) as f64 + MARGIN < config.recall_threshold {
            scorer.stats.overlap_threshold += 1;
            continue;
        }
        let g = group_ids.get_or_insert(c, length, || {
            groups.push(Group { bound: pre_potential_bound(c, length, n, 1), overlap: c, size: 0, start: 0 });
            groups.len() - 1
        });
        groups[g].size += 1;
        grouped.push((candidate, g as u32));
    }
    let mut by_bound: Vec<usize> = (0..groups.len()).collect();
    by_bound.sort_by(|&a, &b| groups[b].bound.partial_cmp(&groups[a].bound).unwrap_or(Ordering::Equal));
    let mut start = 0;
    for &g in &by_bound {
        groups[g].start = start;
        start += groups[g].size;
    }
    let mut order: Vec<(Candidate, u32)> = vec![(0, 0); grouped.len()];
    for &(candidate, g) in &grouped {
        let group = &mut groups[g as usize];
        order[group.start] = (candidate, g);
        group.start += 1;
    }

    let mut heap: BinaryHeap<Kept> = BinaryHeap::with_capacity(keep + 1);
    for (k, &(candidate, g)) in order.iter().enumerate() {
        if let Some(&(ahead, _)) = order.get(k + 2 * SCORE_AHEAD) {
            corpus.prefetch_offset(ahead);
        }
        if let Some(&(ahead, _)) = order.get(k + SCORE_AHEAD) {
            corpus.prefetch_pattern(ahead);
        }
        let group = &groups[g as usize];
        if heap.len() == keep && group.bound < heap.peek().unwrap().0.pre_potential {
            scorer.stats.bound += order.len() - k;
            break;
        }
        let floor = if heap.len() == keep {
            heap.peek().map(|kept| Floor { worst: &kept.0, overlap: group.overlap })
        } else {
            None
        };
        let Some(scored) = scorer.score(candidate, floor) else {
            continue;
        };
        if heap.len() == keep {
            heap.pop(); // `score` returned it: it ranks before the worst kept
            scorer.stats.pruned += 1;
        }
        heap.push(Kept(scored));
    }
    heap.into_iter().map(|k| k.0).collect()
}

/// Candidates with one (overlap, length), hence one bound; `start` is where the group
/// begins in the search order (then where its next member goes, while laying out).
struct Group {
    bound: f64,
    overlap: usize,
    size: usize,
    start: usize,
}

/// Group numbers by (c, L): a dense table for the usual small lengths, a map beyond.
struct GroupIds {
    stride: usize,
    dense: Vec<u32>,
    sparse: Map<(usize, usize), usize>,
}

impl GroupIds {
    const DENSE_LIMIT: usize = 1 << 16;

    /// For overlaps c ≤ n.
    fn new(n: usize) -> Self {
        GroupIds { stride: n + 1, dense: Vec::new(), sparse: Map::default() }
    }

    fn get_or_insert(&mut self, c: usize, length: usize, new: impl FnOnce() -> usize) -> usize {
        let key = length * self.stride + c;
        if key >= Self::DENSE_LIMIT {
            return *self.sparse.entry((c, length)).or_insert_with(new);
        }
        if key >= self.dense.len() {
            self.dense.resize((key + 1).next_power_of_two().min(Self::DENSE_LIMIT), u32::MAX);
        }
        if self.dense[key] == u32::MAX {
            self.dense[key] = new() as u32;
        }
        self.dense[key] as usize
    }
}

/// Predictions and future potentials for the state (§6).
pub fn predict(
    corpus: &Corpus,
    symbols: &LocalSymbols,
    state: &State,
    config: &Config,
    scratch: &mut Vec<u32>,
) -> Outcome {
    let empty = |stats| Outcome { members: Vec::new(), ranking: Vec::new(), futures: Vec::new(), stats };
    let q = &state.flat;
    if q.is_empty() {
        return empty(SearchStats::default());
    }
    let mut scorer = Scorer::new(corpus, symbols, config, state);
    let ensemble = select_ensemble(&mut scorer, corpus, state, config, scratch);
    if ensemble.is_empty() {
        return empty(scorer.stats);
    }
    let alignments: Vec<Alignment> = ensemble.iter().map(|s| scorer.align(s)).collect();

    // Ensemble-wide quantities (§6.7).
    let total_patterns = corpus.pattern_count();
    let symbol_table_size = corpus.symbol_table_size();
    let frequencies: Vec<i64> = ensemble.iter().map(|s| corpus.pattern(s.candidate).frequency).collect();
    let ensemble_frequency: i64 = frequencies.iter().sum();
    let presents: Vec<Vec<SymbolId>> = ensemble
        .iter()
        .map(|s| {
            let events = corpus.pattern(s.candidate).events;
            events.iter().skip(s.present_start).take(s.future_start - s.present_start).flatten().copied().collect()
        })
        .collect();
    let mut probability: Map<SymbolId, f64> = Map::with_capacity_and_hasher(4 * q.len() + 64, Default::default());
    for (a, present) in alignments.iter().zip(&presents) {
        for &symbol in a.matches.iter().chain(present) {
            probability.entry(symbol).or_insert_with(|| {
                let pmf = corpus.pmf(symbol);
                if pmf > 0 {
                    pmf as f64 / total_patterns as f64
                } else {
                    0.0
                }
            });
        }
    }
    let prob = |s: SymbolId| probability.get(&s).copied().unwrap_or(0.0);

    // Dimensions D in code-point order; each symbol's rank orders a member's sums.
    let mut dimensions: Vec<SymbolId> = q.clone();
    for present in &presents {
        dimensions.extend_from_slice(present);
    }
    dimensions.sort_unstable();
    dimensions.dedup();
    dimensions.sort_unstable_by(|&a, &b| symbols.text(a).cmp(symbols.text(b)));
    let rank: Map<SymbolId, usize> = dimensions.iter().enumerate().map(|(i, &d)| (d, i)).collect();
    let q_counts: Map<SymbolId, usize> = first_occurrence_counts(q).into_iter().collect();
    // state_vector[i] belongs to dimensions[i].
    let state_vector: Vec<f64> =
        dimensions.iter().map(|&d| prob(d) * q_counts.get(&d).copied().unwrap_or(0) as f64).collect();
    let mut norm_sq = 0.0;
    for v in &state_vector {
        norm_sq += v * v;
    }
    let state_norm = norm_sq.sqrt();

    // Predictive information groups members by their (sorted) future.
    let mut group_of: Map<Lists<SymbolId>, usize> = Map::default();
    let mut group_weight: Vec<f64> = Vec::new();
    let mut group_size: Vec<usize> = Vec::new();
    let mut group_first: Vec<usize> = Vec::new();
    let mut member_group: Vec<Option<usize>> = Vec::with_capacity(ensemble.len());
    for (i, s) in ensemble.iter().enumerate() {
        let events = corpus.pattern(s.candidate).events;
        // Sorting by id groups exactly the events whose symbols sorted by text are equal.
        let mut future = Lists::default();
        for e in events.iter().skip(s.future_start) {
            let start = future.values.len();
            future.push(e.iter().copied());
            future.values[start..].sort_unstable();
        }
        if future.is_empty() {
            member_group.push(None);
            continue;
        }
        let g = *group_of.entry(future).or_insert_with(|| {
            group_weight.push(0.0);
            group_size.push(0);
            group_first.push(i);
            group_weight.len() - 1
        });
        group_weight[g] += s.similarity * frequencies[i] as f64;
        group_size[g] += 1;
        member_group.push(Some(g));
    }
    let mut total_weight = 0.0;
    for w in &group_weight {
        total_weight += w;
    }
    let aggregate: Vec<f64> =
        group_weight.iter().map(|&w| if total_weight != 0.0 { w / total_weight } else { 0.0 }).collect();

    let mut evidence_sum = 0.0;
    for (s, &f) in ensemble.iter().zip(&frequencies) {
        evidence_sum += s.similarity * (f as f64 / ensemble_frequency as f64);
    }

    // Affinity weights of the state's distinct symbols (§6.8).
    let weights: Option<Map<SymbolId, f64>> = if config.affinity_emotive.is_empty() {
        None
    } else {
        let mut w = Map::default();
        for s in distinct(q) {
            let value = corpus.affinity(s, &config.affinity_emotive);
            let freq = corpus.freq(s);
            w.insert(s, if freq > 0 && value != 0.0 { value.abs() / freq as f64 + 0.01 } else { 0.01 });
        }
        Some(w)
    };
    let weighted_sum = |items: &mut dyn Iterator<Item = SymbolId>, w: &Map<SymbolId, f64>| {
        let mut acc = 0.0;
        for s in items {
            acc += w.get(&s).copied().unwrap_or(0.0);
        }
        acc
    };
    let q_weight = weights.as_ref().map_or(0.0, |w| weighted_sum(&mut q.iter().copied(), w));

    let log_n = (symbol_table_size as f64).ln();
    let mut members: Vec<Prediction> = Vec::with_capacity(ensemble.len());
    for (i, ((s, alignment), present)) in ensemble.into_iter().zip(alignments).zip(presents).enumerate() {
        let f = frequencies[i];
        let counts = first_occurrence_counts(&present);
        let size = present.len();

        let itfdf = if state_norm == 0.0 {
            1.0 - 1.0 * f as f64 / ensemble_frequency as f64
        } else {
            // The member's own dimensions, in dimension order (the others add exactly 0.0).
            let mut ordered: Vec<(usize, SymbolId, usize)> = counts.iter().map(|&(d, c)| (rank[&d], d, c)).collect();
            ordered.sort_unstable_by_key(|&(r, _, _)| r);
            let mut norm_sq = 0.0;
            let mut dot = 0.0;
            for (r, d, count) in ordered {
                let pv = prob(d) * count as f64;
                norm_sq += pv * pv;
                dot += pv * state_vector[r];
            }
            let den = norm_sq.sqrt() * state_norm;
            let cos = if den != 0.0 { dot / den } else { 0.0 };
            let dist = 1.0 - cos;
            1.0 - dist * f as f64 / ensemble_frequency as f64
        };

        let confluence = if present.is_empty() {
            0.0
        } else {
            let mut g = 0.0;
            for &symbol in &present {
                let p = prob(symbol);
                g += if p > 0.0 { p } else { 1e-10 }.log10();
            }
            (f as f64 / total_patterns as f64) * (1.0 - std::hint::black_box(10.0f64).powf(g))
        };

        let mut entropy = 0.0;
        for &(_, c) in &counts {
            let share = c as f64 / size as f64;
            entropy -= share * share.log2();
        }
        let (normalized_entropy, global_normalized_entropy) = if counts.is_empty() || symbol_table_size <= 1 {
            (0.0, 0.0)
        } else {
            let mut normalized = 0.0;
            for &(_, c) in &counts {
                let share = c as f64 / size as f64;
                normalized -= share * (share.ln() / log_n);
            }
            let mut global = 0.0;
            for &(symbol, _) in &counts {
                let p = prob(symbol);
                if p > 0.0 {
                    global -= p * (p.ln() / log_n);
                }
            }
            (normalized, global)
        };
        let tfidf_score = if counts.is_empty() || total_patterns == 0 {
            0.0
        } else {
            let mut acc = 0.0;
            for &(symbol, c) in &counts {
                let tf = c as f64 / size as f64;
                let mut df = (prob(symbol) * total_patterns as f64).trunc() as i64;
                if df == 0 {
                    df = 1;
                }
                acc += tf * ((total_patterns as f64 / df as f64).log2() + 1.0);
            }
            acc / counts.len() as f64
        };

        let prior = f as f64 / ensemble_frequency as f64;
        let weighted_strength = s.similarity * f as f64 / ensemble_frequency as f64;
        let information = match member_group[i] {
            Some(g) => {
                let agg = aggregate[g];
                if agg != 0.0 {
                    weighted_strength / agg
                } else {
                    0.0
                }
            }
            None => 0.0,
        };

        let (mut e, mut c, mut r) = (s.evidence, s.confidence, s.snr);
        let (mut w_sim, mut w_ev, mut w_conf, mut w_snr) = (None, None, None, None);
        if let Some(w) = &weights {
            let a = &alignment;
            let w_matches = weighted_sum(&mut a.matches.iter().copied(), w);
            let w_pattern = weighted_sum(&mut corpus.pattern(s.candidate).events.symbols.iter().copied(), w);
            let w_present = weighted_sum(&mut present.iter().copied(), w);
            let w_extras = weighted_sum(&mut a.extras.values().iter().copied(), w);
            let den = q_weight + w_pattern;
            w_sim = if den != 0.0 { Some(2.0 * w_matches / den) } else { None };
            let ev = if w_pattern != 0.0 { w_matches / w_pattern } else { 0.0 };
            let conf = if w_present != 0.0 { w_matches / w_present } else { 0.0 };
            let snr = if w_matches + w_extras != 0.0 { w_matches / (w_matches + w_extras) } else { 0.0 };
            (w_ev, w_conf, w_snr) = (Some(ev), Some(conf), Some(snr));
            (e, c, r) = (ev, conf, snr);
        }
        let potential = (e + c) * r + itfdf + frag_term(s.fragmentation);
        let posterior = if evidence_sum != 0.0 { s.similarity * prior / evidence_sum } else { 0.0 };
        let similarity = s.similarity;
        members.push(Prediction {
            scored: s,
            alignment,
            frequency: f,
            entropy,
            normalized_entropy,
            global_normalized_entropy,
            itfdf_similarity: itfdf,
            confluence,
            tfidf_score,
            pattern_probability: prior,
            weighted_strength,
            predictive_information: information,
            bayesian_prior: prior,
            bayesian_likelihood: similarity,
            bayesian_posterior: posterior,
            potential,
            weighted_similarity: w_sim,
            weighted_evidence: w_ev,
            weighted_confidence: w_conf,
            weighted_snr: w_snr,
        });
    }

    // Ranking: descending by the rank field, nulls last, ties by name (§6.10).
    let mut ranking: Vec<usize> = (0..members.len()).collect();
    ranking.sort_by(|&a, &b| {
        let (x, y) = (members[a].rank_value(config.rank_by), members[b].rank_value(config.rank_by));
        let by_value = match (x, y) {
            (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_value.then_with(|| members[a].scored.name.cmp(&members[b].scored.name))
    });
    ranking.truncate(config.max_predictions);

    let mut futures: Vec<FuturePotential> = (0..group_weight.len())
        .map(|g| FuturePotential {
            member: group_first[g],
            aggregate_potential: aggregate[g],
            supporting_patterns: group_size[g],
            total_weighted_frequency: group_weight[g],
        })
        .collect();
    futures.sort_by(|a, b| b.aggregate_potential.partial_cmp(&a.aggregate_potential).unwrap_or(Ordering::Equal));
    Outcome { members, ranking, futures, stats: scorer.stats }
}

/// Average of the stored emotive window (§5.4), keys in first-appearance order.
pub fn average_emotives(extra: Option<&Extra>) -> Vec<(String, f64)> {
    let Some(extra) = extra else {
        return Vec::new();
    };
    let mut sums: Vec<(String, f64, usize)> = Vec::new();
    for map in &extra.emotives {
        for (key, value) in map {
            match sums.iter_mut().find(|(k, _, _)| k == key) {
                Some(entry) => {
                    entry.1 += value;
                    entry.2 += 1;
                }
                None => sums.push((key.clone(), 0.0 + value, 1)),
            }
        }
    }
    sums.into_iter().map(|(k, s, c)| (k, s / c as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_key_parses_from_its_name_and_nothing_else_does() {
        for (name, key) in RankKey::ALL {
            assert_eq!(RankKey::parse(name), Some(key));
        }
        for name in ["", "Potential", "potential ", "entropy", "weighted_strength"] {
            assert_eq!(RankKey::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn filter_stages_parse_from_their_names() {
        assert_eq!(FilterStage::parse("length"), Some(FilterStage::Length));
        assert_eq!(FilterStage::parse("jaccard"), Some(FilterStage::Jaccard));
        assert_eq!(FilterStage::parse("minhash"), Some(FilterStage::Minhash));
        assert_eq!(FilterStage::parse("bloom"), Some(FilterStage::Bloom));
        assert_eq!(FilterStage::parse("rapidfuzz"), Some(FilterStage::Rapidfuzz));
        assert_eq!(FilterStage::parse("lsh"), None);
    }

    #[test]
    fn the_pre_potential_bound_holds_for_every_feasible_alignment() {
        // Every (m, R, B) the alignment can produce: 1 ≤ m ≤ most, m ≤ R ≤ L, B ≥ 1.
        for n in 1..12 {
            for length in 1..14 {
                for most in 0..=n.min(length) {
                    for least in 1..4 {
                        let bound = pre_potential_bound(most, length, n, least);
                        for m in 1..=most {
                            for r in m..=length {
                                for b in least..least + 3 {
                                    let (e, c) = (m as f64 / length as f64, m as f64 / r as f64);
                                    let snr = (3 * m as i64 - n as i64) as f64 / (m + n) as f64;
                                    let pre = (e + c) * snr + frag_term((b - 1) as f64);
                                    assert!(pre <= bound, "n {n} L {length} m {m} R {r} B {b}: {pre} > {bound}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
