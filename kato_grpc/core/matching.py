"""Matching one pattern against the STM: similarity, blocks, alignment (SPEC.md §6.2–6.5).

Notation: `p` is the pattern's flat symbol list (length L), `q` the flat STM (length n).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from rapidfuzz.distance import LCSseq

from kato_grpc.core.model import Anomaly, Event

__all__ = [
    "flatten",
    "token_similarity",
    "character_similarity",
    "character_ratio",
    "matching_blocks",
    "BlockMatcher",
    "Alignment",
    "align",
    "fuzzy_matches",
]


def flatten(events: Sequence[Sequence[str]]) -> list[str]:
    """All symbols of a list of events, in order."""
    return [symbol for event in events for symbol in event]


def token_similarity(lcs: int, pattern_length: int, state_length: int) -> float:
    """``2·lcs / (L + n)``, with KATO's ×100/100 round trip kept (§6.2).

    `lcs` is the length of the longest common subsequence of whole symbols.

    >>> token_similarity(2, 4, 2)
    0.6666666666666665
    """
    return 2.0 * lcs / (pattern_length + state_length) * 100.0 / 100.0


def character_ratio(s1: str, s2: str) -> float:
    """``1 − d/tot`` over code points, d the Indel distance; 1.0 for two empty strings.

    This is RapidFuzz's ``fuzz.ratio / 100`` before the ×100/100 round trip.
    """
    tot = len(s1) + len(s2)
    if tot == 0:
        return 1.0
    d = tot - 2 * LCSseq.similarity(s1, s2)
    return 1.0 - d / tot


def character_similarity(p: Sequence[str], q: Sequence[str]) -> float:
    """Similarity of the space-joined symbol texts (character mode, §6.2).

    >>> character_similarity(["ab"], ["ab"])
    1.0
    """
    s1, s2 = " ".join(p), " ".join(q)
    if len(s1) + len(s2) == 0:
        return 1.0
    return character_ratio(s1, s2) * 100.0 / 100.0


class BlockMatcher:
    """Greedy longest-run blocks ``(i, j, k)`` with ``p[i:i+k] == q[j:j+k]`` (§6.3).

    Among equally long runs the smallest `i`, then the smallest `j` wins. No junk, no
    popularity heuristic: exactly difflib with ``autojunk=False``, sentinel dropped.
    The state `q` is fixed once: difflib indexes its second sequence, so one matcher
    serves every candidate pattern of a Predict.

    >>> BlockMatcher(["b", "a"]).blocks(["a", "b", "c", "a"])
    [(0, 1, 1)]
    """

    def __init__(self, q: Sequence[object]) -> None:
        self._matcher = SequenceMatcher(None, (), q, autojunk=False)

    def blocks(self, p: Sequence[object]) -> list[tuple[int, int, int]]:
        self._matcher.set_seq1(p)
        return [(block.a, block.b, block.size) for block in self._matcher.get_matching_blocks()[:-1]]


def matching_blocks(p: Sequence[object], q: Sequence[object]) -> list[tuple[int, int, int]]:
    """The blocks of one pattern against one state (see `BlockMatcher`).

    >>> matching_blocks(["a", "b", "c", "a"], ["b", "a"])
    [(0, 1, 1)]
    """
    return BlockMatcher(q).blocks(p)


def fuzzy_matches(p: Sequence[str], q: Sequence[str], threshold: float) -> tuple[list[str], list[Anomaly]]:
    """Fuzzy token partners for every state symbol (§6.5.1).

    For each `t` of `q` (in order), the partner is the first pattern symbol with the
    highest ``r = character_ratio · 100`` among those with ``r ≥ 100·threshold``.
    """
    matches: list[str] = []
    anomalies: list[Anomaly] = []
    floor = 100.0 * threshold
    distinct = list(dict.fromkeys(p))
    for t in q:
        best_symbol, best_score = None, -1.0
        for s in distinct:
            score = 100.0 if s == t else character_ratio(s, t) * 100.0
            if score >= floor and score > best_score:
                best_symbol, best_score = s, score
        if best_symbol is None:
            continue
        matches.append(t)
        if best_symbol != t:
            anomalies.append(Anomaly(observed=t, expected=best_symbol, similarity=best_score / 100.0))
    return matches, anomalies


@dataclass(frozen=True)
class Alignment:
    """Where the STM falls on one pattern (§6.3–6.4)."""

    matches: tuple[str, ...]
    past: tuple[Event, ...]
    present: tuple[Event, ...]
    future: tuple[Event, ...]
    missing: tuple[Event, ...]
    extras: tuple[Event, ...]
    fragmentation: float
    anomalies: tuple[Anomaly, ...] = ()


def align(
    events: Sequence[Event],
    p: Sequence[str],
    stm: Sequence[Event],
    q: Sequence[str],
    blocks: Sequence[tuple[int, int, int]],
    fuzzy_threshold: float = 0.0,
) -> Alignment:
    """Split the pattern into past / present / future around the blocks (§6.3–6.4).

    With no block (only reachable at threshold 0), the whole pattern is `present`,
    nothing matches and fragmentation is −1.
    """
    if blocks:
        first_i = blocks[0][0]
        last_i, _, last_k = blocks[-1]
        matches = [symbol for _, j, k in blocks for symbol in q[j : j + k]]
        past_len, present_len = first_i, last_i + last_k - first_i
        fragmentation = float(len(blocks) - 1)
    else:
        matches, past_len, present_len, fragmentation = [], 0, len(p), -1.0

    past: list[Event] = []
    present: list[Event] = []
    future: list[Event] = []
    covered = 0
    for event in events:
        if covered < past_len:
            past.append(event)
        elif covered < past_len + present_len:
            present.append(event)
        else:
            future.append(event)
        covered += len(event)
    # A match that starts inside an event takes that event into `present`.
    if blocks and past and p[blocks[0][0]] in past[-1]:
        present.insert(0, past.pop())

    anomalies: list[Anomaly] = []
    if fuzzy_threshold > 0.0:
        matches, anomalies = fuzzy_matches(p, q, fuzzy_threshold)

    matched = set(matches)
    in_present = {symbol for event in present for symbol in event}
    missing = tuple(tuple(s for s in event if s not in matched) for event in present)
    extras = tuple(tuple(s for s in event if s not in in_present) for event in stm)
    return Alignment(
        matches=tuple(matches),
        past=tuple(past),
        present=tuple(present),
        future=tuple(future),
        missing=missing,
        extras=extras,
        fragmentation=fragmentation,
        anomalies=tuple(anomalies),
    )
