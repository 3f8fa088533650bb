//! What one Predict reads: the index, plus the patterns the current call has already
//! learned (an ObserveSequence or an auto-learning Observe), exactly as
//! `kato_grpc.core.knowledge.PendingView` shows them to the Python engine.

use crate::index::{encode_layout, Events, Extra, Index, Name, NewPattern, Slot, SymbolId};
use hashbrown::HashMap;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Candidate ids: a base slot, or `OVERLAY | position` for a pending pattern.
pub type Candidate = u32;
const OVERLAY: u32 = 1 << 31;

/// Symbol ids of the index, extended with texts the index does not know (symbols
/// only in the state or in pending patterns), so equal texts always share one id.
pub struct LocalSymbols<'a> {
    index: &'a Index,
    extra_ids: Map<String, SymbolId>,
    extra_texts: Vec<String>,
}

impl<'a> LocalSymbols<'a> {
    pub fn new(index: &'a Index) -> Self {
        LocalSymbols { index, extra_ids: Map::default(), extra_texts: Vec::new() }
    }

    pub fn intern(&mut self, text: &str) -> SymbolId {
        if let Some(id) = self.index.symbols.get(text) {
            return id;
        }
        if let Some(&id) = self.extra_ids.get(text) {
            return id;
        }
        let id = (self.index.symbols.len() + self.extra_texts.len()) as SymbolId;
        self.extra_texts.push(text.to_owned());
        self.extra_ids.insert(text.to_owned(), id);
        id
    }

    pub fn text(&self, id: SymbolId) -> &str {
        let base = self.index.symbols.len();
        if (id as usize) < base {
            self.index.symbols.text(id)
        } else {
            &self.extra_texts[id as usize - base]
        }
    }
}

struct Pending {
    name: Name,
    layout: Vec<u32>,
    frequency: i64,
    extra: Option<Box<Extra>>,
    /// The stored pattern this one replaces, if any.
    replaces: Option<Slot>,
}

pub struct Corpus<'a> {
    pub index: &'a Index,
    pending: Vec<Pending>,
    shadowed: Map<Slot, ()>,
}

/// One candidate's stored data.
pub struct PatternRef<'a> {
    pub name: &'a Name,
    pub events: Events<'a>,
    pub frequency: i64,
    pub extra: Option<&'a Extra>,
}

impl<'a> Corpus<'a> {
    pub fn new(index: &'a Index, pending: Vec<NewPattern>, symbols: &mut LocalSymbols<'a>) -> Self {
        let mut shadowed = Map::default();
        let mut items: Vec<Pending> = pending
            .into_iter()
            .map(|p| {
                let layout = encode_layout(&p.events, |s| symbols.intern(s));
                let replaces = index.find(&p.name);
                if let Some(slot) = replaces {
                    shadowed.insert(slot, ());
                }
                Pending { name: p.name, layout, frequency: p.frequency, extra: p.extra.boxed(), replaces }
            })
            .collect();
        items.sort_by_key(|p| p.name);
        Corpus { index, pending: items, shadowed }
    }

    pub fn pattern(&self, candidate: Candidate) -> PatternRef<'_> {
        if candidate & OVERLAY != 0 {
            let p = &self.pending[(candidate & !OVERLAY) as usize];
            PatternRef {
                name: &p.name,
                events: Events::from_layout(&p.layout),
                frequency: p.frequency,
                extra: p.extra.as_deref(),
            }
        } else {
            PatternRef {
                name: self.index.name(candidate),
                events: self.index.events(candidate),
                frequency: self.index.frequency(candidate),
                extra: self.index.extra(candidate),
            }
        }
    }

    /// `L`, the candidate's symbol count (from a dense table: no visit to its events).
    /// Prefetch hints (see `index::prefetch`); pending patterns are already in cache.
    pub fn prefetch_offset(&self, candidate: Candidate) {
        if candidate & OVERLAY == 0 {
            self.index.prefetch_offset(candidate);
        }
    }

    pub fn prefetch_pattern(&self, candidate: Candidate) {
        if candidate & OVERLAY == 0 {
            self.index.prefetch_pattern(candidate);
        }
    }

    pub fn prefetch_length(&self, candidate: Candidate) {
        if candidate & OVERLAY == 0 {
            self.index.prefetch_length(candidate);
        }
    }

    /// What scoring reads: `pattern` without the frequency and extras (two more cache misses).
    pub fn name_and_events(&self, candidate: Candidate) -> (&Name, Events<'_>) {
        if candidate & OVERLAY != 0 {
            let p = &self.pending[(candidate & !OVERLAY) as usize];
            (&p.name, Events::from_layout(&p.layout))
        } else {
            (self.index.name(candidate), self.index.events(candidate))
        }
    }

    pub fn length(&self, candidate: Candidate) -> usize {
        if candidate & OVERLAY != 0 {
            Self::pending_symbols(&self.pending[(candidate & !OVERLAY) as usize]).len()
        } else {
            self.index.length(candidate)
        }
    }

    fn pending_symbols(p: &Pending) -> &[SymbolId] {
        Events::from_layout(&p.layout).symbols
    }

    /// Size of a dense table with one entry per candidate (see `candidate_position`).
    pub fn candidate_capacity(&self) -> usize {
        self.index.slot_capacity() + self.pending.len()
    }

    pub fn candidate_position(&self, candidate: Candidate) -> usize {
        if candidate & OVERLAY != 0 {
            self.index.slot_capacity() + (candidate & !OVERLAY) as usize
        } else {
            candidate as usize
        }
    }

    /// Every pattern (threshold 0, character mode), in no particular order.
    pub fn all(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = (0..self.index.slot_capacity() as Slot)
            .filter(|&s| self.index.is_live(s) && !self.shadowed.contains_key(&s))
            .collect();
        out.extend((0..self.pending.len() as u32).map(|i| OVERLAY | i));
        out
    }

    /// The patterns containing `symbol`, in no particular order.
    pub fn containing(&self, symbol: SymbolId, out: &mut Vec<Candidate>) {
        let postings = self.index.postings(symbol);
        if self.shadowed.is_empty() {
            out.extend_from_slice(postings);
        } else {
            out.extend(postings.iter().filter(|slot| !self.shadowed.contains_key(*slot)));
        }
        for (i, p) in self.pending.iter().enumerate() {
            if Self::pending_symbols(p).contains(&symbol) {
                out.push(OVERLAY | i as u32);
            }
        }
    }

    /// The patterns containing `symbol` more than once, in no particular order.
    pub fn containing_repeatedly(&self, symbol: SymbolId, out: &mut Vec<Candidate>) {
        out.extend(self.index.repeats(symbol).iter().filter(|slot| !self.shadowed.contains_key(*slot)));
        for (i, p) in self.pending.iter().enumerate() {
            if Self::pending_symbols(p).iter().filter(|&&s| s == symbol).count() > 1 {
                out.push(OVERLAY | i as u32);
            }
        }
    }

    /// `U`.
    pub fn pattern_count(&self) -> usize {
        self.index.pattern_count() + self.pending.iter().filter(|p| p.replaces.is_none()).count()
    }

    /// `N_sym`.
    pub fn symbol_table_size(&self) -> usize {
        let mut new: Vec<SymbolId> = Vec::new();
        for p in self.pending.iter().filter(|p| p.replaces.is_none()) {
            for &s in Self::pending_symbols(p) {
                if self.index.pmf(s) == 0 && !new.contains(&s) {
                    new.push(s);
                }
            }
        }
        self.index.symbol_table_size() + new.len()
    }

    pub fn pmf(&self, symbol: SymbolId) -> usize {
        let added =
            self.pending.iter().filter(|p| p.replaces.is_none() && Self::pending_symbols(p).contains(&symbol)).count();
        self.index.pmf(symbol) + added
    }

    pub fn freq(&self, symbol: SymbolId) -> i64 {
        let mut total = self.index.freq(symbol);
        for p in &self.pending {
            let count = Self::pending_symbols(p).iter().filter(|&&s| s == symbol).count() as i64;
            let before = p.replaces.map_or(0, |slot| self.index.frequency(slot));
            total += count * (p.frequency - before);
        }
        total
    }

    /// `affinity(symbol)[emotive]`: the contributions summed in ascending name order.
    pub fn affinity(&self, symbol: SymbolId, emotive: &str) -> f64 {
        let mut holders: Vec<Candidate> = Vec::new();
        self.containing(symbol, &mut holders);
        let mut contributions: Vec<(&Name, f64)> = Vec::new();
        for candidate in holders {
            let pattern = self.pattern(candidate);
            if let Some(extra) = pattern.extra {
                if let Some((_, value)) = extra.affinity.iter().find(|(key, _)| key == emotive) {
                    contributions.push((pattern.name, *value));
                }
            }
        }
        contributions.sort_by(|a, b| a.0.cmp(b.0));
        let mut sum = 0.0;
        for (_, value) in contributions {
            sum += value;
        }
        sum
    }
}
