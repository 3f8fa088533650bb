"""The words `ClickHouseStore`'s coherence is told in: versions, the rows a write sends,
the change-log rows a reader reads, and how far a replica's index has read a KB.

`kato_grpc.kb.clickhouse`'s docstring tells how replicas stay coherent, step by step;
this module holds the small pieces that story uses. Nothing here does I/O.

A version is one number, ``counter << TAG_BITS | tag``, so that sorting versions sorts
by counter first (how many changes the KB had seen) and by writer tag only among writes
that took the same counter at the same moment:

>>> v = make_version(7, 3)
>>> version_counter(v), version_tag(v)
(7, 3)
>>> version_after(v, tag=5) == make_version(8, 5)
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from kato_grpc.kb.ops import PatternOp

__all__ = [
    "TAG_BITS",
    "OVERLAP",
    "ROWS_PER_VERSION",
    "NOTICE_ATTEMPTS",
    "make_version",
    "version_counter",
    "version_tag",
    "version_after",
    "window_start",
    "Order",
    "WriteRow",
    "WRITE_COLUMNS",
    "LogRow",
    "LOG_COLUMNS",
    "FLOOR_ROW",
    "KbCursor",
]

TAG_BITS = 20
"""Low bits of a version: the writer's tag. The high bits count the KB's changes."""
OVERLAP = 64
"""Counters below its head that a replica's catch-up re-reads for writes that landed late."""
ROWS_PER_VERSION = 128
"""Rows one counter covers at most: a big INSERT spreads over consecutive counters."""
NOTICE_ATTEMPTS = 20
"""Times a writer re-announces its versions above a head that keeps moving, then gives up."""
RECENT_LIMIT = 100_000
"""Patterns whose last folded operation a `KbCursor` remembers one by one."""


# --- versions ------------------------------------------------------------------------------
def make_version(counter: int, tag: int) -> int:
    """The version a writer tagged `tag` gives its write number `counter` of a KB."""
    return counter << TAG_BITS | tag


def version_counter(version: int) -> int:
    return version >> TAG_BITS


def version_tag(version: int) -> int:
    return version & ((1 << TAG_BITS) - 1)


def version_after(version: int, tag: int) -> int:
    """The version writer `tag` takes to sort after `version`: the next counter."""
    return make_version(version_counter(version) + 1, tag)


def window_start(head: int) -> int:
    """Versions above this one are in the re-read window below `head` (its last `OVERLAP`
    counters): where a write that landed after a newer one is still looked for."""
    return max(0, make_version(version_counter(head) - OVERLAP, 0))


Order = tuple[int, int]
"""An operation's place in the write order: (version, seq)."""


# --- rows ------------------------------------------------------------------------------------
class WriteRow(NamedTuple):
    """One row of the single INSERT into ``kb_writes_v2`` that every write is.

    `kind` says where the views send it: ``pattern`` (an operation, to pattern_ops),
    ``vector``, ``applied`` (exactly-once marker), ``clear``, ``notice``; every kind but
    ``applied`` also lands in the change log ``kb_log``. Fields a kind does not use keep
    their defaults.
    """

    kb_id: str
    kind: str
    key: str  # pattern name (pattern, vector), session id (applied), '' (clear, notice)
    version: int
    seq: int = 0  # numbers the rows of one INSERT
    op: str = "none"  # pattern: learn, put, update, delete
    events: str = ""
    frequency: int = 0
    emotives: str = ""
    metadata: str = ""
    affinity_contrib: str = ""
    persistence: int = 0
    vector: Sequence[float] = ()
    session_version: int = 0  # applied: the session version whose effects these are
    announces: int = 0  # notice: the version it re-announces


WRITE_COLUMNS = ", ".join(WriteRow._fields)


class LogRow(NamedTuple):
    """One row of the change log ``kb_log`` as a catch-up reads it (`LOG_COLUMNS`)."""

    version: int
    seq: int
    kind: str  # as in WriteRow, or 'floor' for the `FLOOR_ROW`
    key: str
    announces: int
    op: str
    events: str
    frequency: int
    emotives: str
    metadata: str
    affinity_contrib: str
    persistence: int
    vector: Sequence[float]

    @property
    def order(self) -> Order:
        return (self.version, self.seq)

    def operation(self) -> PatternOp:
        """The pattern operation a ``pattern`` row carries."""
        return PatternOp.from_columns(
            self.op,
            self.key,
            self.events,
            self.frequency,
            self.emotives,
            self.metadata,
            self.affinity_contrib,
            self.persistence,
        )


# The enums are read as strings, so that the floor row's 'floor' fits the same UNION.
LOG_COLUMNS = ", ".join(f"CAST({name} AS String)" if name in ("kind", "op") else name for name in LogRow._fields)
FLOOR_ROW = (
    "max(floor), toUInt32(0), 'floor', '', toUInt64(0), 'none', '', toUInt64(0), '', '', '', toUInt32(0),"
    " emptyArrayFloat64()"
)
"""``kb_log_floor`` read in the shape of a `LogRow` of kind 'floor' whose version is the
floor: the catch-up query gets the log's changes and its floor in one round trip."""


# --- how far an index has read ---------------------------------------------------------------
@dataclass
class KbCursor:
    """How far one replica's index of one KB has read the KB's changes.

    `seen`: the newest version whose changes the index shows (the head at the last
    catch-up); the next catch-up reads past it. `cleared_at`: the version of the clear
    the index reflects; rows below it are dead.

    `versions`: the versions folded in from the re-read window (`OVERLAP` counters below
    the head), so a re-read skips them. `recent`: the order of the newest operation
    folded into each pattern written since the index was loaded; every other pattern has
    folded all its operations up to version `folded_upto`. An operation at or before its
    pattern's last folded one landed late: that pattern is re-folded from its history
    instead of folded on top. Both stay bounded (`prune`).
    """

    seen: int
    cleared_at: int
    versions: set[int] = field(default_factory=set)
    folded_upto: int = 0
    recent: dict[str, Order] = field(default_factory=dict)

    @classmethod
    def loaded(cls, head: int, cleared_at: int, window: set[int]) -> KbCursor:
        """The cursor of an index just loaded up to `head`."""
        return cls(head, cleared_at, window, folded_upto=head)

    def newest(self) -> int:
        """The newest version this index has read or written."""
        return max([self.seen, *self.versions])

    def unfolded(self, rows: Iterable[LogRow]) -> list[LogRow]:
        """Of `rows`, those the index still lacks (since its clear, of a version not folded
        in yet), each (version, seq) once, in write order."""
        by_order = {
            row.order: row for row in rows if row.version >= self.cleared_at and row.version not in self.versions
        }
        return [by_order[order] for order in sorted(by_order)]

    def last_folded(self, name: str) -> Order:
        return self.recent.get(name, (self.folded_upto, 1 << 32))

    def note_folded(self, name: str, order: Order) -> None:
        self.recent[name] = max(order, self.last_folded(name))

    def prune(self, head: int) -> None:
        low = window_start(head)
        self.versions = {v for v in self.versions if v > low}
        if len(self.recent) > RECENT_LIMIT:
            self.folded_upto = max(self.folded_upto, *(order[0] for order in self.recent.values()))
            self.recent.clear()
