"""The knowledge base as the engine sees it (SPEC.md §2.2).

`KnowledgeView` is the small read-only interface the engine needs. `MemoryKnowledgeBase`
implements it in memory and applies effects; durable stores keep one as their index.
`PendingView` lays one call's own effects over a view, so the later steps of an
ObserveSequence (or an Observe that auto-learns) see what the earlier steps learned.

Every statistic is kept equal to its definition over the stored patterns, so deleting or
editing a pattern moves the statistics with it (a departure from KATO, §11).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from kato_grpc.core.learning import learned_record
from kato_grpc.core.model import (
    ClearKnowledgeBase,
    Effect,
    IndexVectors,
    LearnPattern,
    PatternRecord,
)

__all__ = [
    "KnowledgeView",
    "MemoryKnowledgeBase",
    "PendingView",
    "SymbolStat",
    "VectorIndex",
    "WritableIndex",
    "apply_effect",
    "symbol_affinity",
]

SymbolStat = tuple[str, int, int]
"""(symbol, frequency, pattern_member_frequency)."""


class KnowledgeView(Protocol):
    """What the engine reads from a knowledge base. Read-only."""

    def candidates(self, symbols: Iterable[str] | None) -> list[PatternRecord]:
        """Patterns containing any of `symbols` (all patterns when None), by ascending name."""

    def get_pattern(self, name: str) -> PatternRecord | None:
        """The stored pattern of that (bare) name, or None."""

    def pattern_count(self) -> int:
        """`U`: number of stored patterns."""

    def symbol_table_size(self) -> int:
        """`N_sym`: number of symbols with pmf > 0."""

    def pmf(self, symbol: str) -> int:
        """Number of stored patterns containing `symbol`."""

    def freq(self, symbol: str) -> int:
        """Σ over patterns of occurrences of `symbol` × frequency."""

    def nearest_vectors(self, vector: Sequence[float], k: int) -> list[tuple[float, str]]:
        """The `k` nearest indexed vectors as (Euclidean distance, name), ties by name."""

    def vector_dimension(self) -> int | None:
        """Dimension of the vector index, None while it is empty."""


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    total = 0.0
    for x, y in zip(a, b, strict=True):
        total += (x - y) * (x - y)
    return math.sqrt(total)


def _nearest(
    entries: Iterable[tuple[str, Sequence[float]]], vector: Sequence[float], k: int
) -> list[tuple[float, str]]:
    ranked = sorted((_distance(v, vector), name) for name, v in entries)
    return ranked[:k]


class VectorIndex:
    """The KB's vector index (SPEC.md §2.2): name → vector, all of one dimension."""

    def __init__(self) -> None:
        self._vectors: dict[str, tuple[float, ...]] = {}
        self.dimension: int | None = None

    def add(self, entries: Iterable[tuple[str, Sequence[float]]]) -> None:
        """Add entries; a known name or another dimension is skipped (§5.2 step 3)."""
        for name, vector in entries:
            if name in self._vectors:
                continue
            if self.dimension is None:
                self.dimension = len(vector)
            elif len(vector) != self.dimension:
                continue
            self._vectors[name] = tuple(vector)

    def nearest(self, vector: Sequence[float], k: int) -> list[tuple[float, str]]:
        return _nearest(self._vectors.items(), vector, k)

    def copy(self) -> dict[str, tuple[float, ...]]:
        return dict(self._vectors)


class WritableIndex(Protocol):
    """What applying an effect needs of an index (`MemoryKnowledgeBase`, the native one)."""

    def get_pattern(self, name: str) -> PatternRecord | None: ...
    def put_pattern(self, record: PatternRecord) -> None: ...
    def index_vectors(self, entries: Iterable[tuple[str, Sequence[float]]]) -> None: ...
    def clear(self) -> None: ...


def apply_effect(index: WritableIndex, effect: Effect) -> None:
    """Apply one engine effect to an index; a learn builds on the stored record (§5.2)."""
    if isinstance(effect, LearnPattern):
        index.put_pattern(learned_record(index.get_pattern(effect.name), effect))
    elif isinstance(effect, IndexVectors):
        index.index_vectors(effect.entries)
    elif isinstance(effect, ClearKnowledgeBase):
        index.clear()
    else:  # pragma: no cover - a new effect type must be handled here
        raise TypeError(f"unknown effect {effect!r}")


class MemoryKnowledgeBase:
    """An in-memory knowledge base: patterns, derived statistics, vector index."""

    def __init__(self) -> None:
        self.clear()

    # --- effects -----------------------------------------------------------------
    def clear(self) -> None:
        self._patterns: dict[str, PatternRecord] = {}
        self._sorted_names: list[str] | None = []
        self._members: dict[str, set[str]] = {}  # symbol -> names of patterns holding it
        self._freq: dict[str, int] = {}
        self._total_symbols = 0
        self._vectors = VectorIndex()

    def apply(self, effect: Effect) -> None:
        """Apply one engine effect."""
        apply_effect(self, effect)

    def index_vectors(self, entries: Iterable[tuple[str, Sequence[float]]]) -> None:
        self._vectors.add(entries)

    def put_pattern(self, record: PatternRecord) -> None:
        """Store `record`, replacing any pattern of that name; statistics follow."""
        if record.name in self._patterns:
            self._remove(self._patterns[record.name])
        self._add(record)

    def put_patterns(self, records: Iterable[PatternRecord]) -> None:
        for record in records:
            self.put_pattern(record)

    def delete_pattern(self, name: str) -> bool:
        record = self._patterns.get(name)
        if record is None:
            return False
        self._remove(record)
        return True

    def _add(self, record: PatternRecord) -> None:
        if record.name not in self._patterns and self._sorted_names is not None:
            self._sorted_names = None
        self._patterns[record.name] = record
        counts = Counter(symbol for event in record.events for symbol in event)
        for symbol, count in counts.items():
            self._members.setdefault(symbol, set()).add(record.name)
            self._freq[symbol] = self._freq.get(symbol, 0) + count * record.frequency
        self._total_symbols += record.length * record.frequency

    def _remove(self, record: PatternRecord) -> None:
        del self._patterns[record.name]
        self._sorted_names = None
        counts = Counter(symbol for event in record.events for symbol in event)
        for symbol, count in counts.items():
            members = self._members[symbol]
            members.discard(record.name)
            self._freq[symbol] -= count * record.frequency
            if not members:
                del self._members[symbol]
                del self._freq[symbol]
        self._total_symbols -= record.length * record.frequency

    # --- reads ---------------------------------------------------------------------
    def _names(self) -> list[str]:
        if self._sorted_names is None:
            self._sorted_names = sorted(self._patterns)
        return self._sorted_names

    def candidates(self, symbols: Iterable[str] | None) -> list[PatternRecord]:
        if symbols is None:
            names: Iterable[str] = self._names()
        else:
            found: set[str] = set()
            for symbol in set(symbols):
                found |= self._members.get(symbol, set())
            names = sorted(found)
        return [self._patterns[name] for name in names]

    def get_pattern(self, name: str) -> PatternRecord | None:
        return self._patterns.get(name)

    def list_patterns(self, after: str = "", limit: int | None = None) -> list[PatternRecord]:
        """Patterns with name > `after`, ascending, at most `limit`."""
        names = self._names()
        start = bisect.bisect_right(names, after) if after else 0
        stop = len(names) if limit is None else start + limit
        return [self._patterns[name] for name in names[start:stop]]

    def pattern_count(self) -> int:
        return len(self._patterns)

    def symbol_table_size(self) -> int:
        return len(self._members)

    def pmf(self, symbol: str) -> int:
        return len(self._members.get(symbol, ()))

    def freq(self, symbol: str) -> int:
        return self._freq.get(symbol, 0)

    def symbol_affinity(self, symbol: str) -> dict[str, float]:
        return symbol_affinity(self, symbol)

    def all_affinity(self) -> dict[str, dict[str, float]]:
        """Symbol → affinity for every symbol that has any, in code-point order."""
        out = {symbol: symbol_affinity(self, symbol) for symbol in sorted(self._members)}
        return {symbol: sums for symbol, sums in out.items() if sums}

    def symbol_stats(self) -> list[SymbolStat]:
        return [(symbol, self._freq[symbol], len(self._members[symbol])) for symbol in sorted(self._members)]

    def total_symbols_in_patterns(self) -> int:
        return self._total_symbols

    def nearest_vectors(self, vector: Sequence[float], k: int) -> list[tuple[float, str]]:
        return self._vectors.nearest(vector, k)

    def vector_dimension(self) -> int | None:
        return self._vectors.dimension

    def vectors(self) -> dict[str, tuple[float, ...]]:
        return self._vectors.copy()


class PendingView:
    """A `KnowledgeView` that shows `base` plus the effects of the current call.

    Only learn and index effects occur inside one call, so the overlay keeps the few
    touched pattern records and adjusts the base statistics by their difference.
    """

    def __init__(self, base: KnowledgeView) -> None:
        self._base = base
        self._touched: dict[str, tuple[PatternRecord | None, PatternRecord]] = {}
        self._vectors: dict[str, tuple[float, ...]] = {}

    def apply(self, effect: Effect) -> None:
        if isinstance(effect, LearnPattern):
            before, current = self._touched.get(effect.name, (None, None))
            if current is None:
                before = current = self._base.get_pattern(effect.name)
            self._touched[effect.name] = (before, learned_record(current, effect))
        elif isinstance(effect, IndexVectors):
            dim = self.vector_dimension()
            for name, vector in effect.entries:
                if dim is None:
                    dim = len(vector)
                if len(vector) == dim and name not in self._vectors:
                    self._vectors[name] = tuple(vector)
        else:
            raise TypeError(f"{type(effect).__name__} cannot be applied inside one call")

    def get_pattern(self, name: str) -> PatternRecord | None:
        touched = self._touched.get(name)
        return touched[1] if touched else self._base.get_pattern(name)

    @property
    def base(self) -> KnowledgeView:
        return self._base

    def pending_records(self) -> list[PatternRecord]:
        """The current records of the patterns this call has learned, by name."""
        return [self._touched[name][1] for name in sorted(self._touched)]

    def candidates(self, symbols: Iterable[str] | None) -> list[PatternRecord]:
        wanted = None if symbols is None else set(symbols)
        records = {r.name: r for r in self._base.candidates(wanted)}
        for name, (_, current) in self._touched.items():
            if wanted is None or wanted & _symbols_of(current.events):
                records[name] = current
        return [records[name] for name in sorted(records)]

    def pattern_count(self) -> int:
        added = sum(1 for before, _ in self._touched.values() if before is None)
        return self._base.pattern_count() + added

    def _new_symbols(self) -> set[str]:
        new: set[str] = set()
        for before, current in self._touched.values():
            if before is None:
                new |= {s for s in _symbols_of(current.events) if self._base.pmf(s) == 0}
        return new

    def symbol_table_size(self) -> int:
        return self._base.symbol_table_size() + len(self._new_symbols())

    def pmf(self, symbol: str) -> int:
        added = sum(
            1 for before, current in self._touched.values() if before is None and symbol in _symbols_of(current.events)
        )
        return self._base.pmf(symbol) + added

    def freq(self, symbol: str) -> int:
        total = self._base.freq(symbol)
        for before, current in self._touched.values():
            count = sum(event.count(symbol) for event in current.events)
            total += count * (current.frequency - (before.frequency if before else 0))
        return total

    def nearest_vectors(self, vector: Sequence[float], k: int) -> list[tuple[float, str]]:
        ranked = set(self._base.nearest_vectors(vector, k)) | set(_nearest(self._vectors.items(), vector, k))
        return sorted(ranked)[:k]

    def vector_dimension(self) -> int | None:
        dim = self._base.vector_dimension()
        if dim is None and self._vectors:
            dim = len(next(iter(self._vectors.values())))
        return dim


def symbol_affinity(view: KnowledgeView, symbol: str) -> dict[str, float]:
    """`affinity(symbol)` by its definition (§2.2, §5.5), keys in code-point order.

    Sums each emotive's contribution over the patterns containing `symbol`, in ascending
    pattern name order, so every store and replica gives the same bits. A key stays while
    a contributing pattern is stored, even when its sum is 0.0.
    """
    sums: dict[str, float] = {}
    for record in view.candidates([symbol]):
        for key, value in record.affinity_contrib.items():
            sums[key] = sums.get(key, 0.0) + value
    return {key: sums[key] for key in sorted(sums)}


def _symbols_of(events: Sequence[Sequence[str]]) -> set[str]:
    return {symbol for event in events for symbol in event}
