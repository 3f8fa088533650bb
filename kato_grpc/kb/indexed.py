"""`IndexedStore`: the part every store shares — one `MemoryKnowledgeBase` index per KB.

A subclass only says how to load a KB (`_load`) and how to persist a `Change`
(`_commit`). Every write is first computed as a `Change` against the current index,
committed, and only then applied to the index, so a failed commit leaves the index as
it was and the index never shows uncommitted data.

The ledger of applied origins (see `apply`) keeps a server-held session's newest
version for as long as the store lives (one entry per session, needed to repair its
outbox), and a client-held call's request id (origins starting ``request:``) for
``request_window_seconds`` after it was applied: a retry within the window counts once,
and the ledger stays bounded by the calls of one window however many ids pass.
Clearing a knowledge base forgets its client-held ids.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from kato_grpc.core.errors import NotFoundError
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.learning import learned_record, strip_prefix
from kato_grpc.core.model import ClearKnowledgeBase, Effect, IndexVectors, LearnPattern, PatternRecord
from kato_grpc.kb.base import Affinity, SymbolStats
from kato_grpc.kb.engines import Index
from kato_grpc.kb.ops import check_frequency, updated_record

__all__ = ["Change", "IndexedStore", "plan", "CLIENT_ORIGIN", "DEFAULT_REQUEST_WINDOW_SECONDS"]

CLIENT_ORIGIN = "request:"  # the prefix of a client-held call's origin (server/servicer.py)
DEFAULT_REQUEST_WINDOW_SECONDS = 86400.0  # --request-id-window-seconds

Vector = tuple[float, ...]


@dataclass
class Change:
    """What one write does to a KB, in this order: clear, delete, put, add vectors."""

    cleared: bool = False
    deleted: list[str] = field(default_factory=list)
    records: dict[str, PatternRecord] = field(default_factory=dict)  # final record per name
    vectors: dict[str, Vector] = field(default_factory=dict)  # only entries new to the index
    origin: tuple[str, int] | None = None  # (session id, version) of a server-held transition


def plan(index: Index, effects: Sequence[Effect]) -> Change:
    """Fold one call's effects, in order, into the `Change` they make to `index`.

    Effects of one call may touch the same pattern twice (an ObserveSequence that learns
    it again), so each learn builds on the record the earlier ones produced.
    """
    change = Change()
    known: dict[str, Vector] | None = None  # the index's vectors, copied only if needed
    dim: int | None = None
    for effect in effects:
        if isinstance(effect, LearnPattern):
            before = change.records.get(effect.name)
            if before is None and not change.cleared:
                before = index.get_pattern(effect.name)
            change.records[effect.name] = learned_record(before, effect)
        elif isinstance(effect, IndexVectors):
            if known is None:
                known, dim = index.vectors(), index.vector_dimension()
            # SPEC §5.2 step 3: skip a known name or a vector of another dimension;
            # the first vector of an empty index fixes the dimension.
            for name, vector in effect.entries:
                dim = len(vector) if dim is None else dim
                if name not in known and name not in change.vectors and len(vector) == dim:
                    change.vectors[name] = tuple(vector)
        elif isinstance(effect, ClearKnowledgeBase):
            change, known, dim = Change(cleared=True), {}, None
        else:  # pragma: no cover - a new effect type must be handled here
            raise TypeError(f"unknown effect {effect!r}")
    return change


def apply_to_index(index: Index, change: Change) -> None:
    if change.cleared:
        index.clear()
    for name in change.deleted:
        index.delete_pattern(name)
    for record in change.records.values():
        index.put_pattern(record)
    index.index_vectors(change.vectors.items())


class IndexedStore:
    """A `KnowledgeStore` built on one in-memory index per KB, kept after first use."""

    def __init__(
        self,
        new_index: Callable[[], Index] = MemoryKnowledgeBase,
        *,
        request_window_seconds: float = DEFAULT_REQUEST_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The index class: MemoryKnowledgeBase (Python engine) or NativeKnowledgeBase.
        self._new_index = new_index
        self._indexes: dict[str, Index] = {}
        self._applied: dict[tuple[str, str], int] = {}
        # Client-held origins in `_applied`, oldest applied first, with when (clock seconds).
        self._client_ids: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.request_window_seconds = request_window_seconds
        self._clock = clock  # wall-clock seconds: a durable ledger outlives the process
        # Writers and index loading take this lock; readers of a loaded index do not.
        # Re-entrant: a write fetches the index (which may load it) while holding it.
        self._lock = threading.RLock()
        # Set by `guard_index_writes`: then writers take turns on `_writers`, and a committed
        # change reaches the index after `_lock` is released, inside the guard.
        self._index_writes: Callable[[str], AbstractContextManager] | None = None
        self._writers = threading.Lock()

    def guard_index_writes(self, lock_for: Callable[[str], AbstractContextManager]) -> None:
        """Change a KB's loaded index only inside ``lock_for(kb_id)``: the server reads
        indexes from other threads and holds the other side of that lock meanwhile.

        The guard is taken after `_lock` is released (a reader holding the guard may be
        waiting for `_lock` to fetch an index) and before the next writer may plan, so
        every change is still planned against an index that shows all earlier ones.
        """
        self._index_writes = lock_for

    # --- what a back end provides ------------------------------------------------------
    def _load(self, kb_id: str) -> Index:
        """The KB's index as stored (called once per kb_id, under the lock)."""
        return self._new_index()

    def _commit(self, kb_id: str, change: Change) -> None:
        """Persist `change` atomically; raise (having changed nothing) on failure."""

    def _last_applied(self, kb_id: str, session_id: str) -> int:
        """The newest session version whose effects this KB has (-1 if none, or if a client-held
        id's window has passed)."""
        at = self._client_ids.get((kb_id, session_id))
        if at is not None and at < self._clock() - self.request_window_seconds:
            return -1
        return self._applied.get((kb_id, session_id), -1)

    # --- shared machinery ----------------------------------------------------------------
    def _index(self, kb_id: str) -> Index:
        index = self._indexes.get(kb_id)
        if index is None:
            with self._lock:
                index = self._indexes.get(kb_id)
                if index is None:
                    index = self._indexes[kb_id] = self._load(kb_id)
                    # A loaded index is millions of long-lived objects: move them out of
                    # the collector's sight, or every full collection walks them all
                    # (pauses of seconds at 1M patterns).
                    gc.collect()
                    gc.freeze()
        return index

    def _write(self, kb_id: str, make_change: Callable[[Index], Change]) -> None:
        """Compute a change against the current index, commit it, then show it.

        The index is fetched under the lock, so a store shared by several processes
        (ClickHouse) brings it up to date right before the change is planned."""
        with self._writers:
            with self._lock:
                index = self._index(kb_id)
                change = make_change(index)
                self._commit(kb_id, change)
                if self._index_writes is None:
                    apply_to_index(index, change)
                    return
            with self._index_writes(kb_id):
                apply_to_index(index, change)

    def loaded_pattern_counts(self) -> dict[str, int]:
        """Patterns per KB whose index this process holds; never loads or refreshes one (metrics)."""
        indexes = dict(self._indexes)  # a copy: a scrape runs on another thread
        return {kb_id: indexes[kb_id].pattern_count() for kb_id in sorted(indexes)}

    # --- KnowledgeStore -----------------------------------------------------------------
    def view(self, kb_id: str) -> Index:
        return self._index(kb_id)

    def apply(self, kb_id: str, effects: Sequence[Effect], origin: tuple[str, int] | None = None) -> None:
        """Apply one call's effects. With an `origin` (session id, version), effects of a
        version already applied are skipped: a repaired or repeated transition counts once."""
        if not effects:
            return
        if origin is None:
            self._write(kb_id, lambda index: plan(index, effects))
            return

        def make_change(index: Index) -> Change:
            if self._last_applied(kb_id, origin[0]) >= origin[1]:
                return Change()
            return replace(plan(index, effects), origin=origin)

        self._write(kb_id, make_change)
        with self._lock:
            self._remember(kb_id, origin)

    def _remember(self, kb_id: str, origin: tuple[str, int]) -> None:
        """Note an applied origin in the in-memory ledger and forget the client-held ids
        whose window has passed (under the lock)."""
        key = (kb_id, origin[0])
        self._applied[key] = max(origin[1], self._applied.get(key, -1))
        if not origin[0].startswith(CLIENT_ORIGIN):
            return
        now = self._clock()
        self._client_ids[key] = now
        self._client_ids.move_to_end(key)
        cutoff = now - self.request_window_seconds
        while self._client_ids:
            oldest, at = next(iter(self._client_ids.items()))
            if at >= cutoff:
                break
            del self._client_ids[oldest]
            self._applied.pop(oldest, None)

    def _forget_client_ids(self, kb_id: str) -> None:
        """A cleared KB's client-held ids (under the lock): a retry after the clear is applied
        again. Server-held sessions' versions stay, so an outbox repair never re-applies."""
        for key in [key for key in self._client_ids if key[0] == kb_id]:
            del self._client_ids[key]
            self._applied.pop(key, None)

    def ledger_size(self) -> int:
        """Entries in the ledger of applied origins (tests: it stays bounded)."""
        return len(self._applied)

    def put_records(
        self, kb_id: str, records: Sequence[PatternRecord], vectors: Sequence[tuple[str, Vector]] = ()
    ) -> None:
        """Store whole records as they are (replacing any of the same name) and index the
        vectors by the usual rule, in one atomic write: how a KB is copied or imported."""

        def make_change(index: Index) -> Change:
            change = plan(index, [IndexVectors(tuple(vectors))]) if vectors else Change()
            change.records = {record.name: record for record in records}
            return change

        self._write(kb_id, make_change)

    def get_pattern(self, kb_id: str, name: str) -> PatternRecord | None:
        return self._index(kb_id).get_pattern(strip_prefix(name))

    def list_patterns(self, kb_id: str, after: str, limit: int) -> list[PatternRecord]:
        return self._index(kb_id).list_patterns(strip_prefix(after), limit)

    def update_pattern(
        self,
        kb_id: str,
        name: str,
        *,
        frequency: int | None = None,
        emotives: Sequence[Mapping[str, float]] | None = None,
        metadata: Mapping[str, Sequence[str]] | None = None,
    ) -> PatternRecord:
        check_frequency(frequency)
        name = strip_prefix(name)
        updated: list[PatternRecord] = []

        def make_change(index: Index) -> Change:
            record = index.get_pattern(name)
            if record is None:
                raise NotFoundError(f"pattern {name!r} not found in knowledge base {kb_id!r}")
            record = updated_record(record, frequency, emotives, metadata)
            updated.append(record)
            return Change(records={name: record})

        self._write(kb_id, make_change)
        return updated[0]

    def delete_pattern(self, kb_id: str, name: str) -> None:
        name = strip_prefix(name)

        def make_change(index: Index) -> Change:
            if index.get_pattern(name) is None:
                raise NotFoundError(f"pattern {name!r} not found in knowledge base {kb_id!r}")
            return Change(deleted=[name])

        self._write(kb_id, make_change)

    def symbol_stats(self, kb_id: str) -> SymbolStats:
        index = self._index(kb_id)
        count = index.pattern_count()
        return SymbolStats(index.symbol_stats(), count, count, index.total_symbols_in_patterns())

    def symbol_affinity(self, kb_id: str, symbol: str | None) -> Affinity | dict[str, Affinity]:
        index = self._index(kb_id)
        return index.all_affinity() if symbol is None else index.symbol_affinity(symbol)

    def clear(self, kb_id: str) -> None:
        self._write(kb_id, lambda index: Change(cleared=True))
        with self._lock:
            self._forget_client_ids(kb_id)

    def knowledge_bases(self, after: str, limit: int) -> list[tuple[str, int]]:
        """The loaded indexes: the whole store for the memory store (durable stores override)."""
        counts = {kb_id: index.pattern_count() for kb_id, index in dict(self._indexes).items() if kb_id > after}
        return [(kb_id, n) for kb_id, n in sorted(counts.items()) if n > 0][:limit]

    def close(self) -> None:
        self._indexes.clear()
