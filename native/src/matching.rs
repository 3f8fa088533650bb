//! Matching one pattern against the state: LCS lengths, difflib's matching blocks
//! (SPEC.md §6.2–6.3).

use hashbrown::HashMap;
use std::hash::Hash;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Elements of the sequences matched here: symbol ids and characters.
pub trait Key: Copy + Eq + Hash {
    fn slot(self) -> usize;
}

impl Key for u32 {
    fn slot(self) -> usize {
        self as usize
    }
}

impl Key for char {
    fn slot(self) -> usize {
        self as usize
    }
}

/// Keys of the fixed sequence → small indexes: a dense table for small keys (the
/// usual case: a lookup per pattern symbol, no hashing), a map for the rest.
struct KeyIndex<T: Key> {
    dense: Vec<u32>,
    sparse: Map<T, u32>,
}

impl<T: Key> KeyIndex<T> {
    const DENSE_LIMIT: usize = 1 << 16;

    fn new(keys: &[T]) -> Self {
        let top = keys.iter().map(|k| k.slot()).filter(|&s| s < Self::DENSE_LIMIT).max().map_or(0, |s| s + 1);
        KeyIndex { dense: vec![0; top], sparse: Map::default() }
    }

    fn get(&self, key: T) -> Option<usize> {
        let slot = key.slot();
        if slot < self.dense.len() {
            let v = self.dense[slot];
            return if v == 0 { None } else { Some(v as usize - 1) };
        }
        if self.sparse.is_empty() {
            return None;
        }
        self.sparse.get(&key).map(|&v| v as usize)
    }

    /// The index of `key`, adding it as `next` if new.
    fn get_or_insert(&mut self, key: T, next: usize) -> usize {
        if let Some(at) = self.get(key) {
            return at;
        }
        let slot = key.slot();
        if slot < self.dense.len() {
            self.dense[slot] = next as u32 + 1;
        } else {
            self.sparse.insert(key, next as u32);
        }
        next
    }
}

/// Bit-parallel LCS length (Hyyrö) against one fixed sequence `b`.
///
/// Each element of `b` gets a bit mask of its positions; the other sequence is
/// scanned once, and elements absent from `b` leave the state untouched.
///
/// The masks take (distinct elements of `b`) × ⌈len(b)/64⌉ words: quadratic in `b` when
/// its elements are mostly distinct (a 100,000-symbol STM of distinct symbols would take
/// 1.2 GiB). Above `DENSE_WORDS` the positions of each element are kept instead, O(len(b)),
/// and an element's mask is built from them when the scan meets it: the same words, the
/// same result, the same number of word operations per element scanned.
pub struct LcsAgainst<T: Key> {
    masks: KeyIndex<T>,
    words: usize,
    bits: Vec<u64>,           // dense: `words` words per element of `b`
    positions: Vec<Vec<u32>>, // sparse (when dense would exceed DENSE_WORDS): each element's positions
    length: usize,
}

impl<T: Key> LcsAgainst<T> {
    /// Words of dense masks allowed (4 MiB); beyond, masks are built from positions.
    const DENSE_WORDS: usize = 1 << 19;

    pub fn new(b: &[T]) -> Self {
        let words = b.len().div_ceil(64).max(1);
        let mut masks = KeyIndex::new(b);
        let mut positions: Vec<Vec<u32>> = Vec::new();
        for (j, &x) in b.iter().enumerate() {
            let at = masks.get_or_insert(x, positions.len());
            if at == positions.len() {
                positions.push(Vec::new());
            }
            positions[at].push(j as u32);
        }
        let mut bits: Vec<u64> = Vec::new();
        if positions.len() * words <= Self::DENSE_WORDS {
            bits.resize(positions.len() * words, 0);
            for (at, js) in positions.iter().enumerate() {
                for &j in js {
                    bits[at * words + j as usize / 64] |= 1u64 << (j % 64);
                }
            }
            positions = Vec::new();
        }
        LcsAgainst { masks, words, bits, positions, length: b.len() }
    }

    /// Length of the longest common subsequence of `a` and `b`.
    pub fn lcs(&self, a: impl IntoIterator<Item = T>) -> usize {
        let words = self.words;
        if self.length == 0 {
            return 0;
        }
        if words == 1 {
            let mut v = !0u64;
            for x in a {
                if let Some(at) = self.masks.get(x) {
                    let m = self.bits[at];
                    let u = v & m;
                    v = v.wrapping_add(u) | (v & !m);
                }
            }
            return count_zeros(&[v], self.length);
        }
        let mut v = vec![!0u64; words];
        let mut built = if self.positions.is_empty() { Vec::new() } else { vec![0u64; words] };
        for x in a {
            if let Some(at) = self.masks.get(x) {
                let m: &[u64] = if self.positions.is_empty() {
                    &self.bits[at * words..(at + 1) * words]
                } else {
                    built.fill(0);
                    for &j in &self.positions[at] {
                        built[j as usize / 64] |= 1u64 << (j % 64);
                    }
                    &built
                };
                let mut carry = 0u64;
                for w in 0..words {
                    let u = v[w] & m[w];
                    let (sum, c1) = v[w].overflowing_add(u);
                    let (sum, c2) = sum.overflowing_add(carry);
                    carry = (c1 | c2) as u64;
                    v[w] = sum | (v[w] & !m[w]);
                }
            }
        }
        count_zeros(&v, self.length)
    }
}

fn count_zeros(v: &[u64], length: usize) -> usize {
    let mut zeros = 0;
    for (w, &word) in v.iter().enumerate() {
        let bits = (length - w * 64).min(64);
        let mask = if bits == 64 { !0u64 } else { (1u64 << bits) - 1 };
        zeros += (!word & mask).count_ones() as usize;
    }
    zeros
}

/// ``1 − d/tot`` over code points, d the Indel distance; 1.0 for two empty strings.
pub fn character_ratio(s1: &[char], s2: &[char]) -> f64 {
    let tot = s1.len() + s2.len();
    if tot == 0 {
        return 1.0;
    }
    let lcs = LcsAgainst::new(s2).lcs(s1.iter().copied());
    let d = tot - 2 * lcs;
    1.0 - d as f64 / tot as f64
}

/// A state of at most 64 symbols, against which a pattern becomes one word per symbol:
/// bit j of the row of `p[i]` is set iff `p[i] == q[j]`. The LCS and difflib's blocks are
/// then a few word operations per pattern symbol that occurs in the state (the usual
/// case: STMs are short, and most pattern symbols are not in them).
pub struct WordState {
    /// Per symbol id below `DENSE_LIMIT`: 1 + its position in `masks`, 0 if not in the state.
    dense: Vec<u8>,
    sparse: Map<u32, u8>,
    /// Bit j of `masks[at]` says that symbol is `q[j]`; `masks[0]` = 0 (not in the state).
    masks: Vec<u64>,
    length: usize,
}

/// The non-zero rows of a pattern against a `WordState`: (i, row), i ascending.
pub type Hits = Vec<(u32, u64)>;

/// Runs ending in the row just read, by length (see `word_longest`); reused between calls.
pub type RunEnds = [u64; 65];

impl WordState {
    pub const MAX_LENGTH: usize = 64;
    const DENSE_LIMIT: usize = 1 << 16;

    /// None if `q` is longer than a word (then `LcsAgainst` and `BlockMatcher` serve).
    pub fn new(q: &[u32]) -> Option<Self> {
        if q.len() > Self::MAX_LENGTH {
            return None;
        }
        let top = q.iter().map(|&x| x as usize).filter(|&x| x < Self::DENSE_LIMIT).max().map_or(0, |x| x + 1);
        let mut state = WordState { dense: vec![0; top], sparse: Map::default(), masks: vec![0], length: q.len() };
        for (j, &x) in q.iter().enumerate() {
            let mut at = state.position(x);
            if at == 0 {
                at = state.masks.len();
                state.masks.push(0);
                match state.dense.get_mut(x as usize) {
                    Some(slot) => *slot = at as u8,
                    None => {
                        state.sparse.insert(x, at as u8);
                    }
                }
            }
            state.masks[at] |= 1u64 << j;
        }
        Some(state)
    }

    fn position(&self, x: u32) -> usize {
        match self.dense.get(x as usize) {
            Some(&at) => at as usize,
            None if self.sparse.is_empty() => 0,
            None => self.sparse.get(&x).map_or(0, |&at| at as usize),
        }
    }

    /// The non-zero rows of `p` in `out`. Branch-free per symbol: whether a pattern symbol
    /// is in the state is as good as random, and a mispredicted branch costs more than
    /// the lookup.
    pub fn hits(&self, p: &[u32], out: &mut Hits) {
        out.clear();
        out.resize(p.len(), (0, 0));
        let mut count = 0;
        for (i, &x) in p.iter().enumerate() {
            let row = self.masks[self.position(x)];
            out[count] = (i as u32, row);
            count += (row != 0) as usize;
        }
        out.truncate(count);
    }

    /// Length of the longest common subsequence (Hyyrö's bit-parallel recurrence, in
    /// which a row of zeros leaves the state unchanged, so only the hits are read).
    pub fn lcs(&self, hits: &[(u32, u64)]) -> usize {
        let mut v = !0u64;
        for &(_, m) in hits {
            let u = v & m;
            v = v.wrapping_add(u) | (v & !m);
        }
        count_zeros(&[v], self.length)
    }

    /// difflib's first block: the longest common run of the whole `p` and state.
    pub fn top(&self, hits: &[(u32, u64)], p_len: usize, ends: &mut RunEnds) -> (usize, usize, usize) {
        word_longest(hits, ends, (0, p_len), (0, self.length))
    }

    /// Whether a symbol matches before the first block on both sides (then the left
    /// recursion finds a block) and whether one matches after it (the right one does).
    pub fn sides(&self, hits: &[(u32, u64)], (i, j, k): (usize, usize, usize)) -> Sides {
        let below = |bit: usize| if bit >= 64 { !0u64 } else { (1u64 << bit) - 1 };
        Sides {
            left: hits.iter().take_while(|h| (h.0 as usize) < i).any(|h| h.1 & below(j) != 0),
            right: hits.iter().any(|h| h.0 as usize >= i + k && h.1 & !below(j + k) != 0),
        }
    }

    /// difflib's matching blocks of `p` (as its hits) and the state, as `BlockMatcher::blocks`,
    /// given the first block (`top`) and its `sides`.
    pub fn blocks(
        &self,
        hits: &[(u32, u64)],
        p_len: usize,
        (top, sides): ((usize, usize, usize), Sides),
        ends: &mut RunEnds,
        out: &mut Vec<(usize, usize, usize)>,
    ) {
        out.clear();
        let (i, j, k) = top;
        if k == 0 {
            return;
        }
        if sides.left {
            word_blocks(hits, ends, (0, i), (0, j), out);
        }
        out.push(top);
        if sides.right {
            word_blocks(hits, ends, (i + k, p_len), (j + k, self.length), out);
        }
    }
}

/// Where symbols match around the first block (`WordState::sides`).
#[derive(Clone, Copy)]
pub struct Sides {
    pub left: bool,
    pub right: bool,
}

impl Sides {
    /// The blocks number at least this: the first, and one more on each side that matches.
    pub fn least_blocks(self) -> usize {
        1 + self.left as usize + self.right as usize
    }
}

/// The longest common run of `a[alo..ahi]` and `b[blo..bhi]`, smallest `i` then smallest `j`.
///
/// After each row, `ends[t]` holds the positions j where a run of length ≥ t+1 ends in it.
/// A run grows by one per row, so the best length `k` grows by at most one per row, and
/// it does at the first row where `ends[k]` (runs of length k+1) is not empty, at that
/// row's lowest such j: exactly where difflib's scan (i ascending, j ascending, replace
/// only when strictly longer) replaces its best. A row without hits ends every run.
fn word_longest(
    hits: &[(u32, u64)],
    ends: &mut RunEnds,
    a: (usize, usize),
    b: (usize, usize),
) -> (usize, usize, usize) {
    let ((alo, ahi), (blo, bhi)) = (a, b);
    let width = bhi - blo;
    if width == 0 {
        return (alo, blo, 0);
    }
    let window = if width == 64 { !0u64 } else { ((1u64 << width) - 1) << blo };
    let limit = (ahi - alo).min(width);
    let (mut best_i, mut best_j, mut k) = (alo, blo, 0usize);
    let mut continues = usize::MAX; // the row that would extend the runs of the last one
    let start = hits.partition_point(|&(i, _)| (i as usize) < alo);
    for &(i, row) in &hits[start..] {
        let i = i as usize;
        if i >= ahi {
            break;
        }
        let x = row & window;
        if x == 0 {
            continue;
        }
        if i == continues {
            for t in (1..=k).rev() {
                ends[t] = x & (ends[t - 1] << 1);
            }
        } else {
            ends[1..=k].fill(0);
        }
        ends[0] = x;
        continues = i + 1;
        if ends[k] != 0 {
            let j = ends[k].trailing_zeros() as usize;
            k += 1;
            best_i = i + 1 - k;
            best_j = j + 1 - k;
            if k == limit {
                break; // no longer run fits in the ranges
            }
        }
    }
    (best_i, best_j, k)
}

fn word_blocks(
    hits: &[(u32, u64)],
    ends: &mut RunEnds,
    a: (usize, usize),
    b: (usize, usize),
    out: &mut Vec<(usize, usize, usize)>,
) {
    let (i, j, k) = word_longest(hits, ends, a, b);
    if k == 0 {
        return;
    }
    if a.0 < i && b.0 < j {
        word_blocks(hits, ends, (a.0, i), (b.0, j), out);
    }
    out.push((i, j, k));
    if i + k < a.1 && j + k < b.1 {
        word_blocks(hits, ends, (i + k, a.1), (j + k, b.1), out);
    }
}

/// difflib's `SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()`
/// without its sentinel, for a fixed `b` (the state) and many `a` (patterns).
pub struct BlockMatcher {
    /// The positions of each distinct element of `b`, ascending.
    index: KeyIndex<u32>,
    positions: Vec<Vec<u32>>,
    previous: Vec<u32>,
    current: Vec<u32>,
    previous_touched: Vec<usize>,
    current_touched: Vec<usize>,
}

impl BlockMatcher {
    pub fn new(b: &[u32]) -> Self {
        let mut index = KeyIndex::new(b);
        let mut positions: Vec<Vec<u32>> = Vec::new();
        for (j, &x) in b.iter().enumerate() {
            let at = index.get_or_insert(x, positions.len());
            if at == positions.len() {
                positions.push(Vec::new());
            }
            positions[at].push(j as u32);
        }
        BlockMatcher {
            index,
            positions,
            previous: vec![0; b.len() + 1],
            current: vec![0; b.len() + 1],
            previous_touched: Vec::new(),
            current_touched: Vec::new(),
        }
    }

    /// The longest common run with the smallest `i`, then the smallest `j`.
    fn longest(&mut self, a: &[u32], alo: usize, ahi: usize, blo: usize, bhi: usize) -> (usize, usize, usize) {
        let (mut best_i, mut best_j, mut best_k) = (alo, blo, 0usize);
        // The rows are swapped once per element of `a`: as locals, a swap stays in registers.
        let mut previous = std::mem::take(&mut self.previous);
        let mut current = std::mem::take(&mut self.current);
        let mut previous_touched = std::mem::take(&mut self.previous_touched);
        let mut current_touched = std::mem::take(&mut self.current_touched);
        previous_touched.clear();
        current_touched.clear();
        for (i, &x) in a.iter().enumerate().take(ahi).skip(alo) {
            if let Some(at) = self.index.get(x) {
                for &j in &self.positions[at] {
                    let j = j as usize;
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    // `previous[j]` holds the run ending at (i−1, j−1), stored at index j.
                    let k = previous[j] as usize + 1;
                    current[j + 1] = k as u32;
                    current_touched.push(j + 1);
                    if k > best_k {
                        best_i = i + 1 - k;
                        best_j = j + 1 - k;
                        best_k = k;
                    }
                }
            }
            for &j in &previous_touched {
                previous[j] = 0;
            }
            std::mem::swap(&mut previous, &mut current);
            std::mem::swap(&mut previous_touched, &mut current_touched);
            current_touched.clear();
        }
        for &j in &previous_touched {
            previous[j] = 0;
        }
        self.previous = previous;
        self.current = current;
        self.previous_touched = previous_touched;
        self.current_touched = current_touched;
        (best_i, best_j, best_k)
    }

    fn collect(
        &mut self,
        a: &[u32],
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
        out: &mut Vec<(usize, usize, usize)>,
    ) {
        let (i, j, k) = self.longest(a, alo, ahi, blo, bhi);
        if k == 0 {
            return;
        }
        if alo < i && blo < j {
            self.collect(a, alo, i, blo, j, out);
        }
        out.push((i, j, k));
        if i + k < ahi && j + k < bhi {
            self.collect(a, i + k, ahi, j + k, bhi, out);
        }
    }

    /// Blocks `(i, j, k)` with `a[i..i+k] == b[j..j+k]`, ascending, in `out` (cleared first).
    pub fn blocks(&mut self, a: &[u32], b_len: usize, out: &mut Vec<(usize, usize, usize)>) {
        out.clear();
        self.collect(a, 0, a.len(), 0, b_len, out);
    }
}

#[cfg(test)]
mod lcs_tests {
    use super::LcsAgainst;

    fn lcs_by_table(a: &[u32], b: &[u32]) -> usize {
        let mut previous = vec![0usize; b.len() + 1];
        for &x in a {
            let mut current = vec![0usize; b.len() + 1];
            for (j, &y) in b.iter().enumerate() {
                current[j + 1] = if x == y { previous[j] + 1 } else { current[j].max(previous[j + 1]) };
            }
            previous = current;
        }
        previous[b.len()]
    }

    #[test]
    fn masks_built_from_positions_give_the_lcs_of_dense_masks() {
        // About 6,900 distinct elements × 125 words is past DENSE_WORDS: positions are kept.
        let b: Vec<u32> = (0..8000).map(|i| if i % 7 == 0 { 3 } else { i * 13 % 9973 + 10 }).collect();
        let lcs = LcsAgainst::new(&b);
        assert!(!lcs.positions.is_empty());
        let a: Vec<u32> = (0..3000).map(|i| if i % 5 == 0 { 3 } else { i * 29 % 9973 + 10 }).collect();
        assert_eq!(lcs.lcs(a.iter().copied()), lcs_by_table(&a, &b));
        let small: Vec<u32> = b[..300].to_vec();
        let dense = LcsAgainst::new(&small);
        assert!(dense.positions.is_empty());
        assert_eq!(dense.lcs(a.iter().copied()), lcs_by_table(&a, &small));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<u32> {
        text.chars().map(|c| c as u32).collect()
    }

    /// The blocks by both matchers, which must agree.
    fn blocks(a: &str, b: &str) -> Vec<(usize, usize, usize)> {
        let (a, b) = (ids(a), ids(b));
        let mut general = Vec::new();
        BlockMatcher::new(&b).blocks(&a, b.len(), &mut general);
        let state = WordState::new(&b).unwrap();
        let (mut hits, mut ends, mut word) = (Vec::new(), [0u64; 65], Vec::new());
        state.hits(&a, &mut hits);
        let top = state.top(&hits, a.len(), &mut ends);
        let sides = if top.2 > 0 { state.sides(&hits, top) } else { Sides { left: false, right: false } };
        state.blocks(&hits, a.len(), (top, sides), &mut ends, &mut word);
        assert_eq!(general, word, "the two matchers differ on {a:?} / {b:?}");
        general
    }

    #[test]
    fn difflib_documentation_examples() {
        // SequenceMatcher(None, "abxcd", "abcd").get_matching_blocks(), without the sentinel.
        assert_eq!(blocks("abxcd", "abcd"), [(0, 0, 2), (3, 2, 2)]);
        // The get_opcodes example: "qabxcd" / "abycdf" keep "ab" and "cd".
        assert_eq!(blocks("qabxcd", "abycdf"), [(1, 0, 2), (4, 3, 2)]);
        // find_longest_match(" abcd", "abcd abcd") without junk: the whole of a, at b[4].
        assert_eq!(blocks(" abcd", "abcd abcd"), [(0, 4, 5)]);
    }

    #[test]
    fn greedy_blocks_can_match_less_than_the_lcs() {
        // SPEC.md §6.3: LCS 2, but one block.
        assert_eq!(blocks("abca", "ba"), [(0, 1, 1)]);
        assert_eq!(LcsAgainst::new(&ids("ba")).lcs(ids("abca")), 2);
    }

    #[test]
    fn ties_take_the_smallest_i_then_the_smallest_j() {
        assert_eq!(blocks("ab", "abab"), [(0, 0, 2)]);
        assert_eq!(blocks("xaxa", "a"), [(1, 0, 1)]);
        assert_eq!(blocks("", "abc"), []);
        assert_eq!(blocks("abc", "xyz"), []);
    }

    #[test]
    fn the_word_matcher_equals_the_general_one() {
        // A fixed pseudo-random sweep (no dependency): small alphabets make long runs,
        // repeats and ties; states up to a full word.
        let mut seed = 0x2545f4914f6cdd1du64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..3000 {
            let alphabet = 1 + next(5) as u8;
            let a: String = (0..next(40)).map(|_| (b'a' + next(alphabet as u64) as u8) as char).collect();
            let b: String = (0..1 + next(64)).map(|_| (b'a' + next(alphabet as u64) as u8) as char).collect();
            blocks(&a, &b);
            let state = WordState::new(&ids(&b)).unwrap();
            let mut hits = Vec::new();
            state.hits(&ids(&a), &mut hits);
            assert_eq!(state.lcs(&hits), LcsAgainst::new(&ids(&b)).lcs(ids(&a)));
        }
    }

    #[test]
    fn character_ratio_is_rapidfuzz_ratio() {
        assert_eq!(character_ratio(&[], &[]), 1.0);
        let (a, b): (Vec<char>, Vec<char>) = ("abce".chars().collect(), "abcd".chars().collect());
        assert_eq!(character_ratio(&a, &b), 0.75);
    }
}
