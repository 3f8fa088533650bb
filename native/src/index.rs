//! The compact pattern index: interned symbols, patterns in one flat arena, and
//! per-symbol posting lists and statistics (SPEC.md §2.2).
//!
//! A pattern lives in a *slot*. Its events are stored in `arena` as
//! `[event count, symbol count, length of each event..., symbol ids...]`. Slots of deleted patterns
//! are reused; the arena is compacted once more than half of it is garbage.
//! No per-pattern heap object exists except for the rare pattern that carries
//! emotives, metadata or affinity (`Extra`).

use hashbrown::{HashMap, HashTable};
use std::sync::Mutex;

pub type SymbolId = u32;
pub type Slot = u32;
pub type Name = [u8; 20];

const FREE: u32 = u32::MAX;

/// Ask the CPU to start loading `items[at]` into cache, without waiting for it.
///
/// At 1M patterns a Predict reads ~20k patterns at random places in ~100 MB: each read
/// is a cache miss. Loops that know which patterns come next prefetch a few ahead, so
/// the misses overlap instead of stalling one after another. Out of range: no-op.
#[inline(always)]
pub fn prefetch<T>(items: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if at < items.len() {
        // SAFETY: a prefetch is a hint; it never faults, and the address is in bounds.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(items.as_ptr().add(at) as *const i8)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (items, at);
}

/// Emotives, metadata and affinity contributions: present on few patterns, so boxed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extra {
    /// The rolling emotive window, oldest first; each map keeps its key order.
    pub emotives: Vec<Vec<(String, f64)>>,
    /// Key → sorted unique values, keys in code-point order.
    pub metadata: Vec<(String, Vec<String>)>,
    pub affinity: Vec<(String, f64)>,
}

impl Extra {
    pub fn is_empty(&self) -> bool {
        self.emotives.is_empty() && self.metadata.is_empty() && self.affinity.is_empty()
    }

    pub fn boxed(self) -> Option<Box<Extra>> {
        if self.is_empty() {
            None
        } else {
            Some(Box::new(self))
        }
    }
}

/// A pattern as given to `Index::put`: symbols still as text.
pub struct NewPattern {
    pub name: Name,
    pub events: Vec<Vec<String>>,
    pub frequency: i64,
    pub extra: Extra,
}

/// A stored pattern's events, borrowed from the arena.
#[derive(Clone, Copy)]
pub struct Events<'a> {
    /// Length of each event.
    pub lengths: &'a [u32],
    /// All symbols in order (the flat pattern `p`).
    pub symbols: &'a [SymbolId],
}

impl<'a> Events<'a> {
    pub fn from_layout(layout: &'a [u32]) -> Self {
        let count = layout[0] as usize;
        Events { lengths: &layout[2..2 + count], symbols: &layout[2 + count..] }
    }

    /// The symbols of each event, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [SymbolId]> + '_ {
        let symbols = self.symbols;
        let mut start = 0usize;
        self.lengths.iter().map(move |&len| {
            let event = &symbols[start..start + len as usize];
            start += len as usize;
            event
        })
    }
}

/// Symbol text ↔ id. Ids are never reused, so an id means one text forever.
#[derive(Default)]
pub struct Symbols {
    ids: HashMap<String, SymbolId, foldhash::fast::FixedState>,
    texts: Vec<String>,
}

impl Symbols {
    pub fn get(&self, text: &str) -> Option<SymbolId> {
        self.ids.get(text).copied()
    }

    pub fn intern(&mut self, text: &str) -> SymbolId {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as SymbolId;
        self.texts.push(text.to_owned());
        self.ids.insert(text.to_owned(), id);
        id
    }

    pub fn text(&self, id: SymbolId) -> &str {
        &self.texts[id as usize]
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }
}

/// `[event count, symbol count, event lengths..., symbol ids...]` of `events`.
pub fn encode_layout(events: &[Vec<String>], mut id_of: impl FnMut(&str) -> SymbolId) -> Vec<u32> {
    let total: usize = events.iter().map(Vec::len).sum();
    let mut layout = Vec::with_capacity(2 + events.len() + total);
    layout.push(events.len() as u32);
    layout.push(total as u32);
    layout.extend(events.iter().map(|e| e.len() as u32));
    for event in events {
        layout.extend(event.iter().map(|s| id_of(s)));
    }
    layout
}

fn name_hash(name: &Name) -> u64 {
    // Names are SHA-1 digests: their first bytes are already uniformly spread.
    u64::from_le_bytes(name[..8].try_into().unwrap())
}

#[derive(Default)]
pub struct Index {
    pub symbols: Symbols,
    /// Per symbol: `freq(s)`, Σ occurrences × frequency.
    symbol_freq: Vec<i64>,
    /// Per symbol: the slots of the patterns containing it (each once); `pmf(s)` is its length.
    postings: Vec<Vec<Slot>>,
    /// Per symbol: the slots of the patterns containing it more than once (few), so that
    /// Predict counts a pattern's multiset overlap with the state from postings alone.
    repeats: Vec<Vec<Slot>>,
    live_symbols: usize,

    names: Vec<Name>,
    offsets: Vec<u32>,
    /// Per slot: the pattern's symbol count `L`, kept apart for candidate bounds.
    lengths: Vec<u32>,
    frequencies: Vec<i64>,
    extras: Vec<Option<Box<Extra>>>,
    arena: Vec<u32>,
    garbage: usize,
    free_slots: Vec<Slot>,
    by_name: HashTable<Slot>,
    pattern_count: usize,
    total_symbols: i64,
    /// Live slots in ascending name order, rebuilt on demand after a change.
    sorted: Mutex<Option<std::sync::Arc<Vec<Slot>>>>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    // --- reads ----------------------------------------------------------------------
    pub fn pattern_count(&self) -> usize {
        self.pattern_count
    }

    pub fn symbol_table_size(&self) -> usize {
        self.live_symbols
    }

    pub fn total_symbols(&self) -> i64 {
        self.total_symbols
    }

    pub fn pmf(&self, id: SymbolId) -> usize {
        self.postings.get(id as usize).map_or(0, Vec::len)
    }

    pub fn freq(&self, id: SymbolId) -> i64 {
        self.symbol_freq.get(id as usize).copied().unwrap_or(0)
    }

    pub fn postings(&self, id: SymbolId) -> &[Slot] {
        self.postings.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The slots of the patterns containing `id` more than once.
    pub fn repeats(&self, id: SymbolId) -> &[Slot] {
        self.repeats.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Upper end of the slot numbers (live or free).
    pub fn slot_capacity(&self) -> usize {
        self.names.len()
    }

    pub fn is_live(&self, slot: Slot) -> bool {
        self.offsets[slot as usize] != FREE
    }

    pub fn name(&self, slot: Slot) -> &Name {
        &self.names[slot as usize]
    }

    pub fn length(&self, slot: Slot) -> usize {
        self.lengths[slot as usize] as usize
    }

    pub fn frequency(&self, slot: Slot) -> i64 {
        self.frequencies[slot as usize]
    }

    pub fn extra(&self, slot: Slot) -> Option<&Extra> {
        self.extras[slot as usize].as_deref()
    }

    /// Start loading what reading `slot`'s pattern will touch first: its arena offset.
    pub fn prefetch_offset(&self, slot: Slot) {
        prefetch(&self.offsets, slot as usize);
    }

    /// Start loading `slot`'s name and events (its offset should be in cache by now).
    pub fn prefetch_pattern(&self, slot: Slot) {
        prefetch(&self.names, slot as usize);
        let start = self.offsets[slot as usize];
        if start != FREE {
            prefetch(&self.arena, start as usize);
            prefetch(&self.arena, start as usize + 16); // a pattern often spans two lines
        }
    }

    pub fn prefetch_length(&self, slot: Slot) {
        prefetch(&self.lengths, slot as usize);
    }

    pub fn layout(&self, slot: Slot) -> &[u32] {
        let start = self.offsets[slot as usize] as usize;
        let (count, length) = (self.arena[start] as usize, self.arena[start + 1] as usize);
        &self.arena[start..start + 2 + count + length]
    }

    pub fn events(&self, slot: Slot) -> Events<'_> {
        Events::from_layout(self.layout(slot))
    }

    pub fn find(&self, name: &Name) -> Option<Slot> {
        self.by_name.find(name_hash(name), |&slot| &self.names[slot as usize] == name).copied()
    }

    /// Live slots in ascending name order.
    pub fn sorted_slots(&self) -> std::sync::Arc<Vec<Slot>> {
        let mut cache = self.sorted.lock().unwrap();
        if let Some(sorted) = cache.as_ref() {
            return sorted.clone();
        }
        let mut slots: Vec<Slot> = (0..self.names.len() as Slot).filter(|&s| self.is_live(s)).collect();
        slots.sort_unstable_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        let sorted = std::sync::Arc::new(slots);
        *cache = Some(sorted.clone());
        sorted
    }

    // --- writes ---------------------------------------------------------------------
    fn invalidate_order(&mut self) {
        *self.sorted.get_mut().unwrap() = None;
    }

    fn encode(&mut self, events: &[Vec<String>]) -> Vec<u32> {
        let symbols = &mut self.symbols;
        encode_layout(events, |s| symbols.intern(s))
    }

    /// Store `pattern`, replacing any pattern of that name; statistics follow.
    pub fn put(&mut self, pattern: NewPattern) {
        let layout = self.encode(&pattern.events);
        if let Some(slot) = self.find(&pattern.name) {
            if self.layout(slot) == layout.as_slice() {
                // Same events (the usual case: a name is the hash of its events).
                let delta = pattern.frequency - self.frequencies[slot as usize];
                self.shift_frequency(slot, delta);
                self.extras[slot as usize] = pattern.extra.boxed();
                return;
            }
            self.remove(slot);
        }
        self.add(pattern.name, &layout, pattern.frequency, pattern.extra.boxed());
    }

    fn shift_frequency(&mut self, slot: Slot, delta: i64) {
        if delta == 0 {
            return;
        }
        let start = self.offsets[slot as usize] as usize;
        let (count, length) = (self.arena[start] as usize, self.arena[start + 1] as usize);
        for k in 0..length {
            let id = self.arena[start + 2 + count + k] as usize;
            self.symbol_freq[id] += delta;
        }
        self.total_symbols += delta * length as i64;
        self.frequencies[slot as usize] += delta;
    }

    fn add(&mut self, name: Name, layout: &[u32], frequency: i64, extra: Option<Box<Extra>>) {
        let offset = self.arena.len() as u32;
        self.arena.extend_from_slice(layout);
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                let i = slot as usize;
                self.names[i] = name;
                self.offsets[i] = offset;
                self.lengths[i] = layout[1];
                self.frequencies[i] = frequency;
                self.extras[i] = extra;
                slot
            }
            None => {
                self.names.push(name);
                self.offsets.push(offset);
                self.lengths.push(layout[1]);
                self.frequencies.push(frequency);
                self.extras.push(extra);
                (self.names.len() - 1) as Slot
            }
        };
        let events = Events::from_layout(layout);
        if self.symbol_freq.len() < self.symbols.len() {
            self.symbol_freq.resize(self.symbols.len(), 0);
            self.postings.resize_with(self.symbols.len(), Vec::new);
            self.repeats.resize_with(self.symbols.len(), Vec::new);
        }
        for (k, &id) in events.symbols.iter().enumerate() {
            let i = id as usize;
            self.symbol_freq[i] += frequency;
            if !events.symbols[..k].contains(&id) {
                if self.postings[i].is_empty() {
                    self.live_symbols += 1;
                }
                self.postings[i].push(slot);
                if events.symbols[k + 1..].contains(&id) {
                    self.repeats[i].push(slot);
                }
            }
        }
        self.total_symbols += frequency * events.symbols.len() as i64;
        self.pattern_count += 1;
        let names = &self.names;
        self.by_name.insert_unique(name_hash(&name), slot, |&s| name_hash(&names[s as usize]));
        self.invalidate_order();
    }

    fn remove(&mut self, slot: Slot) {
        let i = slot as usize;
        let layout = self.layout(slot).to_vec();
        let events = Events::from_layout(&layout);
        let frequency = self.frequencies[i];
        for (k, &id) in events.symbols.iter().enumerate() {
            let s = id as usize;
            self.symbol_freq[s] -= frequency;
            if !events.symbols[..k].contains(&id) {
                let postings = &mut self.postings[s];
                if let Some(at) = postings.iter().position(|&p| p == slot) {
                    postings.swap_remove(at);
                }
                if postings.is_empty() {
                    self.live_symbols -= 1;
                    postings.shrink_to_fit();
                }
                let repeats = &mut self.repeats[s];
                if let Some(at) = repeats.iter().position(|&p| p == slot) {
                    repeats.swap_remove(at);
                }
            }
        }
        self.total_symbols -= frequency * events.symbols.len() as i64;
        self.pattern_count -= 1;
        let name = self.names[i];
        if let Ok(entry) = self.by_name.find_entry(name_hash(&name), |&s| s == slot) {
            entry.remove();
        }
        self.garbage += layout.len();
        self.offsets[i] = FREE;
        self.extras[i] = None;
        self.free_slots.push(slot);
        self.invalidate_order();
        if self.garbage > 1 << 16 && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
    }

    pub fn delete(&mut self, name: &Name) -> bool {
        match self.find(name) {
            Some(slot) => {
                self.remove(slot);
                true
            }
            None => false,
        }
    }

    pub fn clear(&mut self) {
        *self = Index::new();
    }

    /// Rewrite the arena without the garbage of deleted patterns.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for i in 0..self.offsets.len() {
            if self.offsets[i] != FREE {
                let layout = self.layout(i as Slot);
                let offset = arena.len() as u32;
                arena.extend_from_slice(layout);
                self.offsets[i] = offset;
            }
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Release the spare capacity left by growth (after a bulk load).
    pub fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        for postings in self.postings.iter_mut().chain(&mut self.repeats) {
            postings.shrink_to_fit();
        }
        self.names.shrink_to_fit();
        self.offsets.shrink_to_fit();
        self.lengths.shrink_to_fit();
        self.frequencies.shrink_to_fit();
        self.extras.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(k: u32, events: &[&[&str]]) -> NewPattern {
        let mut name = [0u8; 20];
        name[..4].copy_from_slice(&k.to_be_bytes());
        name[4] = 1; // names are digests: spread the hash bytes a little
        NewPattern {
            name,
            events: events.iter().map(|e| e.iter().map(|s| s.to_string()).collect()).collect(),
            frequency: 1,
            extra: Extra::default(),
        }
    }

    fn texts(index: &Index, slot: Slot) -> Vec<Vec<String>> {
        index.events(slot).iter().map(|e| e.iter().map(|&s| index.symbols.text(s).to_owned()).collect()).collect()
    }

    #[test]
    fn a_deleted_slot_is_reused_and_statistics_follow() {
        let mut index = Index::new();
        index.put(pattern(1, &[&["a", "b"], &["a"]]));
        index.put(pattern(2, &[&["c"]]));
        let one = index.find(&pattern(1, &[]).name).unwrap();
        assert!(index.delete(&pattern(1, &[]).name));
        assert_eq!(index.pattern_count(), 1);
        let a = index.symbols.get("a").unwrap();
        assert_eq!((index.pmf(a), index.freq(a), index.repeats(a).len()), (0, 0, 0));
        assert_eq!(index.symbol_table_size(), 1);
        index.put(pattern(3, &[&["a"], &["a", "d"]]));
        let three = index.find(&pattern(3, &[]).name).unwrap();
        assert_eq!(three, one, "the free slot is taken first");
        assert_eq!(texts(&index, three), [vec!["a"], vec!["a", "d"]]);
        assert_eq!((index.pmf(a), index.freq(a), index.repeats(a)), (1, 2, &[three][..]));
    }

    #[test]
    fn the_arena_is_compacted_once_half_of_it_is_garbage() {
        let mut index = Index::new();
        let symbols: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let events = |k: u32| -> Vec<Vec<&str>> {
            (0..4).map(|e| (0..5).map(|s| symbols[((k * 7 + e * 5 + s) % 40) as usize].as_str()).collect()).collect()
        };
        let count = 8000u32;
        for k in 0..count {
            let evs = events(k);
            let refs: Vec<&[&str]> = evs.iter().map(Vec::as_slice).collect();
            index.put(pattern(k, &refs));
        }
        let full = index.arena.len();
        for k in (0..count).filter(|k| k % 4 != 0) {
            assert!(index.delete(&pattern(k, &[]).name));
        }
        assert!(index.arena.len() < full / 2, "compacted: {} of {full} words left", index.arena.len());
        assert!(index.garbage * 2 <= index.arena.len());
        for k in (0..count).filter(|k| k % 4 == 0) {
            let slot = index.find(&pattern(k, &[]).name).unwrap();
            assert_eq!(texts(&index, slot), events(k), "pattern {k} survives compaction");
        }
        assert_eq!(index.pattern_count(), (count / 4) as usize);
    }

    #[test]
    fn a_relearn_with_the_same_events_changes_only_the_frequency() {
        let mut index = Index::new();
        index.put(pattern(1, &[&["a", "b"]]));
        let slot = index.find(&pattern(1, &[]).name).unwrap();
        let arena = index.arena.len();
        index.put(NewPattern { frequency: 5, ..pattern(1, &[&["a", "b"]]) });
        assert_eq!((index.find(&pattern(1, &[]).name), index.arena.len()), (Some(slot), arena));
        assert_eq!((index.frequency(slot), index.total_symbols()), (5, 10));
    }
}
