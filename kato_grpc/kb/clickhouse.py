"""`ClickHouseStore`: knowledge bases in ClickHouse, served by any number of replicas.

    store = ClickHouseStore("clickhouse://127.0.0.1:9000/kato")
    store = ClickHouseStore("clickhouse://ch:9000/kato?insert_quorum=2&select_sequential_consistency=1")

Every server process (a *replica*) keeps its own in-process index per KB, which is what
the core's candidate search reads; ClickHouse is the shared, durable truth behind it.
docs/clickhouse.md is the operator's version of this docstring. Three files: this one
(the store), `kato_grpc.kb.clickhouse_log` (versions, rows, how far an index has read)
and `kato_grpc.kb.clickhouse_schema` (the migrations that build the tables).

How a replica stays coherent, step by step
------------------------------------------
1. A write appends, it never overwrites. A learn, update or delete is one row in
   ``pattern_ops``: an *operation* ("learn with these emotives", "set the frequency to
   7", "delete"; `kato_grpc.kb.ops`), so writes to one pattern through different
   replicas at the same moment all take effect. The same INSERT copies every row into
   the change log ``kb_log``, which is what other replicas read.
2. Every write gets a version that sorts after all its replica has seen of the KB:
   ``make_version(counter, tag)``, i.e. ``counter << 20 | tag``. The counter is one
   more than the newest version this replica has read or written for the KB (it
   catches up right before planning); the tag is random per process and only breaks
   ties; ``seq`` numbers the rows of one INSERT. So a write that starts after another
   was acknowledged sorts after it, and writes that overlap in time are ordered by
   (version, seq), the same way for everyone. A pattern's record is the fold of its
   operations in that order (below).
3. Before any read or write of a KB, a replica catches up (`_catch_up`): one SELECT
   reads the log past the newest version its index has seen (`KbCursor`), and the KB's
   log floor (step 5). Nothing new: done, and that is the common case. Otherwise it
   folds the new operations into its index; a pattern that gets an operation sorting
   before one already folded in is re-folded from its history in ``pattern_ops``. After
   a clear elsewhere, or when very many patterns changed, it reloads the KB instead.
4. A write that lands late is still found. INSERTs can land out of version order, so
   a reader re-reads the last `OVERLAP` counters below its newest version (skipping the
   versions it has already folded in). A writer that finds newer versions than its own
   by more than half that window (its INSERT stalled) appends ``notice`` rows above the
   head, each naming one of its versions; a reader that sees a notice reads the version
   it names (`_reannounce_if_overtaken`).
5. The log is bounded. `trim_change_log` drops the log's hourly partitions older than
   `log_retention` (every replica runs it about once per `log_retention / 4`), after
   raising each KB's *floor* (``kb_log_floor``) to the newest version they hold. A
   replica whose newest version is below the floor was away longer than the log is
   kept and missed changes it can no longer read: it reloads the KB.

Consistency a client gets: read-your-writes on ANY replica once a write is acknowledged,
monotonic reads per KB on each replica, and exact counts under contention.

The write order
---------------
Every replica folds a pattern's operations in (version, seq) order, identically:

- frequency = the number of acknowledged learns since the pattern was last created,
  deleted or given a frequency by UpdatePattern;
- the emotive window = the last `persistence` entries of those learns' emotives, in
  write order; symbol statistics and affinity follow the folded record;
- a delete is a tombstone at its place in the order: learns ordered after it create the
  pattern afresh (frequency 1), learns ordered before it are gone with it;
- an update ordered after a concurrent delete finds nothing and changes nothing.

Group commit: concurrent writes to this store (from the servicer's threads) that arrive
while one INSERT is running are planned together and sent as the next single INSERT
(`GroupCommit`); each call returns only once that INSERT has returned, so an
acknowledgement still means ClickHouse has the write. A big INSERT spreads its rows over
consecutive counters (`ROWS_PER_VERSION` per counter), so a version's rows stay few.

Tables (database from the URL; created and migrated on start, see `MIGRATIONS`)
-----------------------------------------------------------------------------
A write is ONE ``INSERT`` into ``kb_writes_v2``, a ``Null`` table. Its materialized views
fan the rows out, in the order of their names (data first, the log last, so a reader
who sees a version in the log finds its rows), to:

``pattern_ops``   MergeTree ORDER BY (kb_id, name, version, seq): every pattern operation.
``vectors``       ReplacingMergeTree(version) ORDER BY (kb_id, name): the vector index.
``applied``       ReplacingMergeTree(session_version) ORDER BY (kb_id, session_id):
                  exactly-once effects of server-held sessions.
``kb_clears``     ReplacingMergeTree(version) ORDER BY kb_id: rows below a KB's last
                  clear are dead.
``kb_log``        MergeTree PARTITION BY hour ORDER BY (kb_id, version): the change log
                  (version, kind, key, the operation) and the KB's change counter in one.
``kb_log_floor``  ReplacingMergeTree(floor) ORDER BY kb_id: per KB, the newest version
                  the trimmed log no longer holds.

ClickHouse unreachable: every call raises `StoreUnavailable` (UNAVAILABLE) with the
address and the cause; the next call reconnects by itself. A write interrupted by a
lost connection may or may not have landed; the replica catches up either way.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from kato_grpc.core.errors import NotFoundError
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.learning import accumulate_metadata, strip_prefix
from kato_grpc.core.model import ClearKnowledgeBase, Effect, IndexVectors, LearnPattern, PatternRecord
from kato_grpc.kb.clickhouse_log import (
    FLOOR_ROW,
    LOG_COLUMNS,
    NOTICE_ATTEMPTS,
    OVERLAP,
    ROWS_PER_VERSION,
    TAG_BITS,
    WRITE_COLUMNS,
    KbCursor,
    LogRow,
    Order,
    WriteRow,
    make_version,
    version_after,
    version_counter,
    version_tag,
    window_start,
)
from kato_grpc.kb.clickhouse_schema import MIGRATIONS, SCHEMA_VERSION
from kato_grpc.kb.engines import Index
from kato_grpc.kb.groupcommit import GroupCommit, Pending
from kato_grpc.kb.indexed import IndexedStore
from kato_grpc.kb.ops import PatternOp, check_frequency, fold, fold_all
from kato_grpc.sessions.base import StoreUnavailable

__all__ = ["ClickHouseStore", "MIGRATIONS", "SCHEMA_VERSION", "TAG_BITS", "OVERLAP"]

log = logging.getLogger("kato_grpc.kb.clickhouse")

CHUNK = 1000
"""Names per `IN (...)` when re-reading changed patterns (keeps queries well under max_query_size)."""
RELOAD_AT = 20 * CHUNK
"""A replica that missed more changed patterns than this (and than half its KB) reloads the KB."""
LOG_RETENTION = 24 * 3600.0
"""Seconds of change log kept by default; replicas away longer reload the KB."""
TRIM_GRACE = 5.0
"""Seconds between raising floors and dropping the log rows they cover: a catch-up
query that read the old floor has finished long before."""

_OP_COLUMNS = "name, version, seq, op, events, frequency, emotives, metadata, affinity_contrib, persistence"
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Server error codes that mean "try again later", not "this request is wrong".
_TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        319,  # UNKNOWN_STATUS_OF_INSERT
    }
)


def _op_from_row(row: Sequence[Any]) -> PatternOp:
    """A `pattern_ops` row read as `_OP_COLUMNS` → the operation."""
    name, _version, _seq, op, *columns = row
    return PatternOp.from_columns(op, name, *columns)


def _fold_rows(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, PatternRecord | None]]:
    """(name, folded record) per name of `pattern_ops` rows sorted by (name, version, seq)."""
    name, record = None, None
    for row in rows:
        if row[0] != name:
            if name is not None:
                yield name, record
            name, record = row[0], None
        record = fold(record, _op_from_row(row))
    if name is not None:
        yield name, record


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@dataclass
class _Write:
    """One call's write, waiting for a group commit: `plan` adds its rows to the batch of
    its KB and returns the call's result (or raises, adding nothing). `sessions`: the
    server-held sessions whose exactly-once markers the plan checks."""

    kb_id: str
    plan: Callable[[_KbBatch], Any]
    sessions: tuple[str, ...] = ()


@dataclass
class _KbBatch:
    """The rows one group commit writes to one KB, and the records they make.

    Planned against the replica's index, caught up just before, plus the batch's own
    earlier writes (`overlay`), so a delete after a learn in the same batch finds it.
    """

    kb_id: str
    index: Index
    version: int  # of the batch's first rows
    applied_before: dict[str, int]  # session id -> newest session version stored
    rows: list[WriteRow] = field(default_factory=list)
    overlay: dict[str, PatternRecord | None] = field(default_factory=dict)
    vectors: dict[str, tuple[float, ...]] = field(default_factory=dict)
    cleared: bool = False
    cleared_at: int = 0
    _known: dict | None = None
    _dim: int | None = None

    def _add_row(self, kind: str, key: str, **values: Any) -> None:
        # A new counter every ROWS_PER_VERSION rows: a version's rows stay few, so the
        # readers' re-read window (OVERLAP counters) stays a few thousand rows.
        counter = version_counter(self.version) + len(self.rows) // ROWS_PER_VERSION
        version = make_version(counter, version_tag(self.version))
        self.rows.append(WriteRow(self.kb_id, kind, key, version, len(self.rows), **values))
        if kind == "clear":
            self.cleared_at = version

    def versions(self) -> list[int]:
        return sorted({row.version for row in self.rows})

    def current(self, name: str) -> PatternRecord | None:
        if name in self.overlay:
            return self.overlay[name]
        return None if self.cleared else self.index.get_pattern(name)

    def _add_op(self, op: PatternOp) -> PatternRecord | None:
        record = self.overlay[op.name] = fold(self.current(op.name), op)
        self._add_row("pattern", op.name, op=op.kind, **op.columns())
        return record

    def learn(self, effect: LearnPattern) -> None:
        self._add_op(PatternOp.learn(effect, accumulate_metadata(effect.metadata)))

    def put(self, record: PatternRecord) -> None:
        self._add_op(PatternOp.put(record))

    def update(self, name: str, frequency, emotives, metadata) -> PatternRecord:
        self._check_exists(name)
        emotives = None if emotives is None else tuple(dict(m) for m in emotives)
        metadata = None if metadata is None else {k: tuple(sorted(set(metadata[k]))) for k in sorted(metadata)}
        updated = self._add_op(PatternOp("update", name, frequency=frequency, emotives=emotives, metadata=metadata))
        assert updated is not None  # the pattern exists (checked above), so an update keeps it
        return updated

    def delete(self, name: str) -> None:
        self._check_exists(name)
        self._add_op(PatternOp("delete", name))

    def _check_exists(self, name: str) -> None:
        if self.current(name) is None:
            raise NotFoundError(f"pattern {name!r} not found in knowledge base {self.kb_id!r}")

    def index_vectors(self, entries: Iterable[tuple[str, Sequence[float]]]) -> None:
        if self._known is None:
            self._known, self._dim = (
                ({}, None) if self.cleared else (self.index.vectors(), self.index.vector_dimension())
            )
        for name, vector in entries:
            # SPEC §5.2 step 3: skip a known name or a vector of another dimension;
            # the first vector of an empty index fixes the dimension.
            self._dim = len(vector) if self._dim is None else self._dim
            if name not in self._known and name not in self.vectors and len(vector) == self._dim:
                self.vectors[name] = tuple(vector)
                self._add_row("vector", name, vector=list(vector))

    def clear(self) -> None:
        """Earlier writes of the batch are ordered before the clear, so they are gone:
        only their exactly-once markers are still written."""
        self.rows = [row for row in self.rows if row.kind == "applied"]
        self.overlay, self.vectors, self.cleared, self._known, self._dim = {}, {}, True, {}, None
        self._add_row("clear", "")

    def effects(self, effects: Sequence[Effect], origin: tuple[str, int] | None) -> None:
        if origin is not None:
            session, version = origin
            if self.applied_before.get(session, -1) >= version:
                return  # a repaired or repeated transition counts once
            self.applied_before[session] = version
        for effect in effects:
            if isinstance(effect, LearnPattern):
                self.learn(effect)
            elif isinstance(effect, IndexVectors):
                self.index_vectors(effect.entries)
            elif isinstance(effect, ClearKnowledgeBase):
                self.clear()
            else:  # pragma: no cover - a new effect type must be handled here
                raise TypeError(f"unknown effect {effect!r}")
        if origin is not None:
            self._add_row("applied", origin[0], session_version=origin[1])

    def savepoint(self) -> tuple:
        return (
            list(self.rows),
            dict(self.overlay),
            dict(self.vectors),
            self.cleared,
            self.cleared_at,
            self._known,
            self._dim,
            dict(self.applied_before),
        )

    def rollback(self, saved: tuple) -> None:
        """Back to `savepoint()`: a call whose planning failed adds nothing."""
        (
            self.rows,
            self.overlay,
            self.vectors,
            self.cleared,
            self.cleared_at,
            self._known,
            self._dim,
            self.applied_before,
        ) = saved

    def changes_data(self) -> bool:
        """Whether the batch is more than exactly-once markers, which no reader needs to see."""
        return any(row.kind != "applied" for row in self.rows)

    def show(self, index: Index, cursor: KbCursor) -> None:
        """Apply the committed batch to the index, and note in `cursor` what it folded in."""
        if self.cleared:
            index.clear()
        for name, record in self.overlay.items():
            if record is None:
                index.delete_pattern(name)
            else:
                index.put_pattern(record)
        index.index_vectors(self.vectors.items())
        for row in self.rows:
            if row.kind == "pattern":
                cursor.note_folded(row.key, (row.version, row.seq))
        cursor.versions.update(self.versions())


class ClickHouseStore(IndexedStore):
    """Knowledge bases in the ClickHouse database named by `url`, coherent across replicas."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 3.0,
        send_receive_timeout: float = 60.0,
        new_index: Callable[[], Index] = MemoryKnowledgeBase,
        log_retention: float = LOG_RETENTION,
    ) -> None:
        from clickhouse_driver.util.helpers import parse_url

        super().__init__(new_index)
        host, kwargs = parse_url(url)
        self.database = kwargs.pop("database", "default")
        if not _DATABASE.fullmatch(self.database):
            raise ValueError(f"ClickHouse database {self.database!r} in {url!r} must be a plain identifier")
        kwargs.setdefault("connect_timeout", connect_timeout)
        kwargs.setdefault("send_receive_timeout", send_receive_timeout)
        kwargs.setdefault("client_name", "kato-grpc")
        self.url = url
        self.address = f"{host or 'localhost'}:{kwargs.get('port', 9000)}"
        self._client_args = (host, kwargs)
        self._client = None
        self._schema_ready = False
        self._purge_supported = True
        self.log_retention = log_retention
        self._next_trim = time.monotonic() + random.uniform(0, log_retention / 4)  # replicas spread out
        self.tag = random.SystemRandom().getrandbits(TAG_BITS)
        self._cursors: dict[str, KbCursor] = {}  # kb_id -> how far its index has read the KB's log
        self._db_lock = threading.RLock()  # one clickhouse-driver connection: one query at a time
        self._batcher: GroupCommit[_Write] = GroupCommit(self._commit_batch)
        try:
            self._ensure_schema()
        except StoreUnavailable as exc:  # serve anyway: each call retries and reports UNAVAILABLE
            log.warning("%s; will create the schema on the first call that reaches it", exc)

    # --- connection ------------------------------------------------------------------------
    def _t(self, table: str) -> str:
        return f"`{self.database}`.`{table}`"

    def _connect(self):
        if self._client is None:
            from clickhouse_driver import Client

            host, kwargs = self._client_args
            self._client = Client(host, **kwargs)
            # A store dropped without close() still hangs up, instead of leaving its
            # socket to the garbage collector (a ResourceWarning).
            self._hang_up = weakref.finalize(self, _disconnect, self._client)
        return self._client

    @contextmanager
    def _guard(self, what: str) -> Iterator[Any]:
        """The connection, held; connection trouble becomes StoreUnavailable and resets it."""
        from clickhouse_driver import errors

        with self._db_lock:
            try:
                yield self._connect()
            except (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError) as exc:
                self._reset()
                raise StoreUnavailable(self._unavailable(what, exc)) from exc
            except errors.ServerException as exc:
                if exc.code in _TRANSIENT_CODES:
                    raise StoreUnavailable(self._unavailable(what, exc)) from exc
                raise
            except errors.Error as exc:  # protocol trouble mid-stream: start afresh next time
                self._reset()
                raise StoreUnavailable(self._unavailable(what, exc)) from exc

    def _execute(self, query: str, params: Any = None, *, what: str = "query", settings: dict | None = None) -> Any:
        """Run one statement and return all its rows."""
        with self._guard(what) as client:
            return client.execute(query, params, settings=settings)

    def _stream(self, query: str, params: Any = None) -> Iterator[tuple]:
        """Run one SELECT and yield its rows block by block (consume it to the end)."""
        with self._guard("query") as client:
            yield from client.execute_iter(query, params, settings={"max_block_size": 65536})

    def _unavailable(self, what: str, exc: BaseException) -> str:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"ClickHouse at {self.address} (database {self.database!r}) is unavailable: {cause}"
        if what == "write":
            message += "; the write may not have been applied, retry it"
        return message

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._hang_up.detach()
            _disconnect(client)

    def _scalar(self, query: str, params: Any = None) -> Any:
        return self._execute(query, params)[0][0]

    # --- schema ------------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        """Create the database and run the migrations past the newest applied one."""
        if self._schema_ready:
            return
        with self._db_lock:
            self._execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`", what="schema")
            self._execute(
                f"CREATE TABLE IF NOT EXISTS {self._t('schema_migrations')} ("
                " version UInt32, description String, applied_at DateTime"
                ") ENGINE = ReplacingMergeTree ORDER BY version",
                what="schema",
            )
            applied = self._scalar(f"SELECT max(version) FROM {self._t('schema_migrations')}")
            for number, (description, statements) in enumerate(MIGRATIONS[applied:], start=applied + 1):
                for statement in statements:
                    self._execute(statement.format(db=f"`{self.database}`"), what="schema")
                self._execute(
                    f"INSERT INTO {self._t('schema_migrations')} (version, description, applied_at)"
                    " SELECT %(v)s, %(d)s, now()",
                    {"v": number, "d": description},
                    what="schema",
                )
                log.info("ClickHouse schema of %s migrated to version %d", self.database, number)
            self._schema_ready = True

    def schema_version(self) -> int:
        self._ensure_schema()
        return self._scalar(f"SELECT max(version) FROM {self._t('schema_migrations')}")

    # --- reading ClickHouse ----------------------------------------------------------------
    def _changes_since(self, kb_id: str, cursor: KbCursor) -> tuple[list[LogRow], int]:
        """The change log's rows the index lacks, and the KB's log floor: the cheap check,
        one round trip.

        The rows past `cursor.seen`, and those of the re-read window below it that are not
        among the versions already folded in: a write that landed after this replica read
        a newer one is picked up on the next call. A range of the (kb_id, version) primary
        key, empty when nothing changed. The rows carry the operations themselves, so
        catching up needs no second read. The floor comes along so that a replica behind
        a trimmed log knows it must reload."""
        low = window_start(cursor.seen)
        folded = tuple(sorted(v for v in cursor.versions if v > low))
        # PREWHERE: only the key columns of the window are read, the rest only where needed.
        rows = self._execute(
            f"SELECT {LOG_COLUMNS} FROM {self._t('kb_log')}"
            " PREWHERE kb_id = %(kb)s AND version > %(low)s"
            + (" AND version NOT IN %(folded)s" if folded else "")
            + f" UNION ALL SELECT {FLOOR_ROW} FROM {self._t('kb_log_floor')} WHERE kb_id = %(kb)s",
            {"kb": kb_id, "low": low, "folded": folded},
        )
        changes = [LogRow._make(row) for row in rows]
        floor = max((row.version for row in changes if row.kind == "floor"), default=0)
        return [row for row in changes if row.kind != "floor"], floor

    def _log_rows_at(self, kb_id: str, versions: Sequence[int]) -> list[LogRow]:
        """The change log's rows of the given versions."""
        rows = self._execute(
            f"SELECT {LOG_COLUMNS} FROM {self._t('kb_log')} WHERE kb_id = %(kb)s AND version IN %(versions)s",
            {"kb": kb_id, "versions": tuple(versions)},
        )
        return [LogRow._make(row) for row in rows]

    def _head(self, kb_id: str) -> tuple[int, int]:
        """(newest version the KB's log has or had, version of its last clear)."""
        return self._execute(
            f"SELECT greatest((SELECT max(version) FROM {self._t('kb_log')} WHERE kb_id = %(kb)s),"
            f" (SELECT max(floor) FROM {self._t('kb_log_floor')} WHERE kb_id = %(kb)s)),"
            f" (SELECT max(version) FROM {self._t('kb_clears')} WHERE kb_id = %(kb)s)",
            {"kb": kb_id},
        )[0]

    def _ops_query(self, *, upto: bool = False, names: bool = False) -> str:
        """SELECT a KB's pattern operations from version %(since)s on (up to %(upto)s, only
        of %(names)s), in the order they fold: by name, then write order."""
        return (
            f"SELECT {_OP_COLUMNS} FROM {self._t('pattern_ops')} WHERE kb_id = %(kb)s AND version >= %(since)s"
            + (" AND version <= %(upto)s" if upto else "")
            + (" AND name IN %(names)s" if names else "")
            + " ORDER BY name, version, seq"
        )

    def _read_patterns(
        self, kb_id: str, since: int, upto: int, names: Sequence[str]
    ) -> dict[str, tuple[PatternRecord | None, Order]]:
        """Each of `names` folded from its history between versions `since` and `upto`:
        (record or None, order of the newest operation read).

        Never past `upto` (the head just read from the log): an operation above it may
        sort after this replica's next write, and is folded on top once the log shows it."""
        out: dict[str, tuple[PatternRecord | None, Order]] = {name: (None, (0, 0)) for name in names}
        for chunk in _chunks(sorted(names)):
            rows = self._execute(
                self._ops_query(upto=True, names=True),
                {"kb": kb_id, "since": since, "upto": upto, "names": tuple(chunk)},
            )
            newest = {row[0]: (row[1], row[2]) for row in rows}  # sorted: the last row per name
            for name, record in _fold_rows(rows):
                out[name] = (record, newest[name])
        return out

    def _read_vectors(self, kb_id: str, since: int) -> list[tuple[str, tuple]]:
        """(name, vector) with version >= `since`, oldest first: the order they were indexed."""
        rows = self._execute(
            f"SELECT name, version, vector FROM {self._t('vectors')} WHERE kb_id = %(kb)s AND version >= %(since)s",
            {"kb": kb_id, "since": since},
        )
        first: dict[str, tuple[float, ...]] = {}
        for name, _version, vector in sorted(rows, key=lambda row: (row[1], row[0])):
            first.setdefault(name, tuple(vector))
        return list(first.items())

    def iter_records(self, kb_id: str) -> Iterator[PatternRecord]:
        """Every stored pattern of the KB in name order, folded from ClickHouse as it streams
        (export and copy read this; it never builds an index)."""
        self._ensure_schema()
        _, cleared = self._head(kb_id)
        rows = self._stream(self._ops_query(), {"kb": kb_id, "since": cleared})
        return (record for _, record in _fold_rows(rows) if record is not None)

    # --- the index -------------------------------------------------------------------------
    def _load(self, kb_id: str) -> Index:
        """The whole KB up to its current head, streamed into a fresh index."""
        self._ensure_schema()
        head, cleared = self._head(kb_id)
        # The log's re-read window, as far as it has landed: all in what is streamed next.
        window = {
            v
            for (v,) in self._execute(
                f"SELECT DISTINCT version FROM {self._t('kb_log')} WHERE kb_id = %(kb)s"
                " AND version > %(low)s AND version <= %(head)s",
                {"kb": kb_id, "low": window_start(head), "head": head},
            )
        }
        index = self._new_index()
        # Up to the head only: what lands later is caught up from the log, exactly once.
        rows = self._stream(self._ops_query(upto=True), {"kb": kb_id, "since": cleared, "upto": head})
        index.put_patterns(record for _, record in _fold_rows(rows) if record is not None)
        index.index_vectors(self._read_vectors(kb_id, cleared))
        self._cursors[kb_id] = KbCursor.loaded(head, cleared, window)
        return index

    def _index(self, kb_id: str) -> Index:
        """The KB's index, brought up to date with what other replicas wrote."""
        with self._lock:
            index = self._indexes.get(kb_id)
            if index is None:
                index = self._indexes[kb_id] = self._load(kb_id)
            else:
                index = self._catch_up(kb_id, index)
            return index

    def _reload(self, kb_id: str) -> Index:
        index = self._indexes[kb_id] = self._load(kb_id)
        return index

    def _catch_up(self, kb_id: str, index: Index) -> Index:
        """Fold into `index` what the KB's log shows that it lacks, or reload the KB when
        that is the only way (the log lost changes it never read) or the cheaper one."""
        self._ensure_schema()
        cursor = self._cursors[kb_id]
        changes, floor = self._changes_since(kb_id, cursor)
        if floor > cursor.seen:  # the log was trimmed past changes this replica never read
            log.info("kb %r: change log trimmed past version %d; reloading", kb_id, cursor.seen)
            return self._reload(kb_id)
        if not changes:
            return index
        head = max(cursor.seen, max(row.version for row in changes))
        # Versions re-announced by writers that landed after a reader moved on.
        late = sorted({row.announces for row in changes if row.kind == "notice" and row.announces})
        if late:
            changes += self._log_rows_at(kb_id, late)
        fresh = cursor.unfolded(changes)
        patterns = {row.key for row in fresh if row.kind == "pattern"}
        cleared_elsewhere = any(row.kind == "clear" for row in fresh)
        if cleared_elsewhere or len(patterns) > max(RELOAD_AT, index.pattern_count() // 2):  # or cheaper to read it all
            index = self._reload(kb_id)
            self._cursors[kb_id].seen = max(self._cursors[kb_id].seen, head)
            return index
        self._fold_changes(kb_id, index, cursor, fresh, head)
        return index

    def _fold_changes(self, kb_id: str, index: Index, cursor: KbCursor, fresh: list[LogRow], head: int) -> None:
        """Apply the log rows `fresh` (in write order) to the index, and move `cursor` to `head`.

        An operation sorting after everything folded into its pattern is folded on top;
        one that sorts before (it landed late) means re-folding that pattern's history."""
        ops: dict[str, list[LogRow]] = {}
        for row in fresh:
            if row.kind == "pattern":
                ops.setdefault(row.key, []).append(row)
        refold = sorted(name for name, rows in ops.items() if rows[0].order <= cursor.last_folded(name))
        # Read everything first, then change the index: a failure half-way leaves it as it was.
        refolded = self._read_patterns(kb_id, cursor.cleared_at, head, refold) if refold else {}
        vectors = [(row.key, tuple(row.vector)) for row in fresh if row.kind == "vector"]
        for name in sorted(ops):
            if name in refolded:
                record, order = refolded[name]
            else:
                record = fold_all((row.operation() for row in ops[name]), index.get_pattern(name))
                order = ops[name][-1].order
            if record is None:
                index.delete_pattern(name)
            else:
                index.put_pattern(record)
            cursor.note_folded(name, order)
        index.index_vectors(vectors)
        cursor.versions.update(row.version for row in fresh)
        cursor.prune(head)
        cursor.seen = head

    # --- writing: group commit -------------------------------------------------------------
    def _applied_before(self, kb_id: str, sessions: Sequence[str]) -> dict[str, int]:
        if not sessions:
            return {}
        return dict(
            self._execute(
                f"SELECT session_id, max(session_version) FROM {self._t('applied')}"
                " WHERE kb_id = %(kb)s AND session_id IN %(sids)s GROUP BY session_id",
                {"kb": kb_id, "sids": tuple(sorted(set(sessions)))},
            )
        )

    def _commit_batch(self, items: list[Pending[_Write]]) -> None:
        """Plan every waiting write against its KB's caught-up index, send them all as ONE
        INSERT, and only then show them in the indexes (the callers' results are set when
        planned, but a caller sees them only if the INSERT succeeds: `GroupCommit`)."""
        with self._lock:
            batches = self._plan_batches(items)
            rows = [row for batch in batches for row in batch.rows]
            if rows:
                try:
                    self._insert(rows)  # raises: every write of the batch fails (GroupCommit)
                except BaseException:
                    for batch in batches:  # it may have landed: read the KB afresh next time
                        self._indexes.pop(batch.kb_id, None)
                    raise
            for batch in batches:
                self._show_committed(batch)
        self._maybe_trim()

    def _plan_batches(self, items: list[Pending[_Write]]) -> list[_KbBatch]:
        """One batch per KB, holding the rows of its writes, each planned in turn; a write
        whose planning fails gets its error and adds nothing."""
        by_kb: dict[str, list[Pending[_Write]]] = {}
        for item in items:
            by_kb.setdefault(item.work.kb_id, []).append(item)
        batches: list[_KbBatch] = []
        for kb_id, kb_items in by_kb.items():
            try:
                index = self._index(kb_id)  # caught up right before planning
                sessions = [s for item in kb_items for s in item.work.sessions]
                # The batch sorts after everything this replica has read or written for the KB.
                version = version_after(self._cursors[kb_id].newest(), self.tag)
                batch = _KbBatch(kb_id, index, version, self._applied_before(kb_id, sessions))
            except Exception as exc:
                for item in kb_items:
                    item.error = exc
                continue
            for item in kb_items:
                saved = batch.savepoint()
                try:
                    item.result = item.work.plan(batch)
                except Exception as exc:
                    batch.rollback(saved)
                    item.error = exc
            batches.append(batch)
        return batches

    def _show_committed(self, batch: _KbBatch) -> None:
        """After the INSERT: show the batch in its KB's index and make sure every reader
        will find it."""
        cursor = self._cursors[batch.kb_id]
        base = cursor.seen
        if batch.changes_data():
            batch.show(self._indexes[batch.kb_id], cursor)
            self._reannounce_if_overtaken(batch.kb_id, base, batch.versions())
        if batch.cleared:
            cursor.cleared_at = batch.cleared_at
            self._purge(batch.kb_id, batch.cleared_at)

    def _submit(self, kb_id: str, plan: Callable[[_KbBatch], Any], sessions: tuple[str, ...] = ()) -> Any:
        return self._batcher.submit(_Write(kb_id, plan, sessions))

    @property
    def commits(self) -> int:
        """INSERTs the group commit has sent (for benchmarks and tests)."""
        return self._batcher.batches

    def apply(self, kb_id: str, effects: Sequence[Effect], origin: tuple[str, int] | None = None) -> None:
        """Apply one call's effects. With an `origin` (session id, version), effects of a
        version already applied are skipped: a repaired or repeated transition counts once."""
        if not effects:
            return
        sessions = (origin[0],) if origin else ()
        self._submit(kb_id, lambda batch: batch.effects(effects, origin), sessions)

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
        return self._submit(kb_id, lambda batch: batch.update(name, frequency, emotives, metadata))

    def delete_pattern(self, kb_id: str, name: str) -> None:
        name = strip_prefix(name)
        self._submit(kb_id, lambda batch: batch.delete(name))

    def clear(self, kb_id: str) -> None:
        self._submit(kb_id, lambda batch: batch.clear())

    def put_records(
        self, kb_id: str, records: Sequence[PatternRecord], vectors: Sequence[tuple[str, Sequence[float]]] = ()
    ) -> None:
        """Store whole records as they are (`put` operations) and index the vectors by
        the usual rule, in one INSERT: how a KB is copied or imported."""

        def plan(batch: _KbBatch) -> None:
            for record in records:
                batch.put(record)
            batch.index_vectors(vectors)

        self._submit(kb_id, plan)

    def iter_vectors(self, kb_id: str) -> list[tuple[str, tuple[float, ...]]]:
        self._ensure_schema()
        return self._read_vectors(kb_id, self._head(kb_id)[1])

    def pattern_count(self, kb_id: str) -> int:
        """Names with any operation since the last clear: the stored patterns, plus deleted
        ones (a progress bar's estimate, not a statistic)."""
        self._ensure_schema()
        return self._scalar(
            f"SELECT uniqExact(name) FROM {self._t('pattern_ops')} WHERE kb_id = %(kb)s AND version >= %(since)s",
            {"kb": kb_id, "since": self._head(kb_id)[1]},
        )

    def knowledge_bases(self, after: str, limit: int) -> list[tuple[str, int]]:
        """Folded in ClickHouse: a name is stored when its newest operation since its KB's
        last clear is not a delete (a delete is the only operation that removes one). Each
        page aggregates the operations of every KB after `after`: an operator's call, not
        one for a hot path."""
        self._ensure_schema()
        ops, clears = self._t("pattern_ops"), self._t("kb_clears")
        rows = self._execute(
            f"SELECT kb_id, countIf(last != 'delete') AS stored FROM ("
            f" SELECT o.kb_id AS kb_id, o.name AS name, argMax(o.op, (o.version, o.seq)) AS last"
            f" FROM {ops} AS o LEFT JOIN (SELECT kb_id, max(version) AS cleared FROM {clears} GROUP BY kb_id) AS c"
            f" ON o.kb_id = c.kb_id"
            f" WHERE o.kb_id > %(after)s AND o.version >= c.cleared GROUP BY o.kb_id, o.name)"
            f" GROUP BY kb_id HAVING stored > 0 ORDER BY kb_id LIMIT %(limit)s",
            {"after": after, "limit": limit},
        )
        return [(kb_id, int(n)) for kb_id, n in rows]

    def _insert(self, rows: list[WriteRow]) -> None:
        """A synchronous INSERT: it returns once ClickHouse has the rows (all of them, in
        every table its views feed; with insert_quorum in the URL, on that many replicas).
        `insert_distributed_sync` makes that hold when the tables are Distributed, too."""
        self._execute(
            f"INSERT INTO {self._t('kb_writes_v2')} ({WRITE_COLUMNS}) VALUES",
            rows,
            what="write",
            settings={"insert_distributed_sync": 1},
        )

    def _reannounce_if_overtaken(self, kb_id: str, base: int, versions: Sequence[int]) -> None:
        """Make sure no replica can have moved past one of our `versions` without reading it.

        Readers re-read the last `OVERLAP` counters below the newest version they have
        seen, so a write that landed behind others' newer versions by less than that is
        found. One overtaken by more (a stalled INSERT) is re-announced by `notice` rows
        above the head. (Our own versions land in one block: no reader sees some of them
        without the rest.) When ours is the head, the index, which shows this batch
        already, is at our newest version: nothing else landed but older writes the
        window covers.
        """
        ours = tuple(versions)
        for _ in range(NOTICE_ATTEMPTS):
            head, newest_other = self._newest_since(kb_id, base, ours)
            if head == ours[-1]:
                self._cursors[kb_id].seen = head
            # Ours lie well inside (half) the re-read window of any reader at the others' newest.
            if version_counter(newest_other) - version_counter(ours[0]) < OVERLAP // 2:
                return
            above = version_after(head, self.tag)
            self._insert([WriteRow(kb_id, "notice", "", above, i, announces=v) for i, v in enumerate(ours)])
            ours = (above,)  # the notices may be overtaken in turn
        log.warning("kb %r: versions %s re-announced %d times under contention", kb_id, versions, NOTICE_ATTEMPTS)

    def _newest_since(self, kb_id: str, base: int, ours: Sequence[int]) -> tuple[int, int]:
        """(the log's newest version above `base`, its newest above `base` that is not ours)."""
        return self._execute(
            f"SELECT max(version), maxIf(version, version NOT IN %(ours)s) FROM {self._t('kb_log')}"
            " WHERE kb_id = %(kb)s AND version > %(base)s",
            {"kb": kb_id, "base": base, "ours": tuple(ours)},
        )[0]

    def _purge(self, kb_id: str, cleared: int) -> None:
        """Drop the rows a clear made dead (an asynchronous mutation; best effort).

        Readers skip dead rows anyway. Distributed tables take no mutations: there the
        operator purges the shards' local tables (docs/clickhouse.md)."""
        if not self._purge_supported:
            return
        for table in ("pattern_ops", "vectors"):
            try:
                self._execute(
                    f"ALTER TABLE {self._t(table)} DELETE WHERE kb_id = %(kb)s AND version < %(v)s",
                    {"kb": kb_id, "v": cleared},
                )
            except Exception as exc:
                first_line = str(exc).strip().splitlines()[:2]
                if getattr(exc, "code", None) == 48:  # NOT_IMPLEMENTED: not a MergeTree (Distributed)
                    self._purge_supported = False
                    log.info(
                        "%s.%s takes no mutations (Distributed?): rows dead after a clear are left to the"
                        " operator's purge",
                        self.database,
                        table,
                    )
                    return
                log.warning("kb %r: purging %s after a clear failed: %s", kb_id, table, " ".join(first_line))

    # --- the bounded change log ------------------------------------------------------------
    def _maybe_trim(self) -> None:
        if time.monotonic() < self._next_trim:
            return
        self._next_trim = time.monotonic() + self.log_retention / 4
        threading.Thread(target=self._trim_quietly, name="kato-kb-log-trim", daemon=True).start()

    def _trim_quietly(self) -> None:
        try:
            self.trim_change_log()
        except Exception as exc:
            log.warning("trimming the change log of %s failed: %s", self.database, exc)

    def trim_change_log(self, retention: float | None = None, grace: float = TRIM_GRACE) -> int:
        """Drop the change log's hourly partitions wholly older than `retention` seconds
        (default: the store's). Each KB's floor is first raised to the newest version
        those partitions hold, so a replica that had not read them reloads instead.
        Returns the number of partitions dropped. Safe to run from several replicas."""
        retention = self.log_retention if retention is None else retention
        self._ensure_schema()
        cutoff = int(self._scalar("SELECT toUInt32(now())") - retention) // 3600
        hours = sorted(
            int(p)
            for (p,) in self._execute(
                "SELECT DISTINCT partition FROM system.parts WHERE database = %(db)s AND table = 'kb_log' AND active",
                {"db": self.database},
            )
            if int(p) < cutoff
        )
        if not hours:
            return 0
        self._execute(
            f"INSERT INTO {self._t('kb_log_floor')} (kb_id, floor)"
            f" SELECT kb_id, max(version) FROM {self._t('kb_log')} WHERE hour IN %(hours)s GROUP BY kb_id",
            {"hours": tuple(hours)},
            what="write",
        )
        time.sleep(grace)
        for hour in hours:
            self._execute(f"ALTER TABLE {self._t('kb_log')} DROP PARTITION {hour}", what="write")
        log.info("change log of %s: dropped %d hourly partition(s) before hour %d", self.database, len(hours), cutoff)
        return len(hours)

    def log_rows(self) -> int:
        """Rows in the change log, all KBs (for tests and operators)."""
        return self._scalar(f"SELECT count() FROM {self._t('kb_log')}")

    def close(self) -> None:
        with self._lock:
            super().close()
            self._cursors.clear()
            with self._db_lock:
                self._reset()


def _disconnect(client: Any) -> None:
    with suppress(Exception):
        client.disconnect()
