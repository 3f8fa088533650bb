"""`ClickHouseStore`: knowledge bases in ClickHouse, served by any number of replicas.

    store = ClickHouseStore("clickhouse://127.0.0.1:9000/kato")
    store = ClickHouseStore("clickhouse://ch:9000/kato?insert_quorum=2&select_sequential_consistency=1")

Every server process keeps its own in-process index per KB (`IndexedStore`), which is
what the core's candidate search reads; ClickHouse is the shared, durable truth behind
it. docs/clickhouse.md is the operator's version of this docstring.

Tables (database from the URL; created and migrated on start, see `MIGRATIONS`)
-----------------------------------------------------------------------------
A write is ONE ``INSERT`` into ``kb_writes``, a ``Null`` table (it keeps nothing). Its
materialized views fan the rows out, in the order of their names, to:

``patterns``     ReplacingMergeTree(version) ORDER BY (kb_id, name)
    One row per stored pattern once merged; a delete writes a ``deleted = 1`` row
    (tombstone). Readers take the row with the highest ``version`` per name (merges may
    lag), so what merges keep and what readers pick is the same row.
``vectors``      ReplacingMergeTree(version) ORDER BY (kb_id, name)
``applied``      ReplacingMergeTree(session_version) ORDER BY (kb_id, session_id)
    Exactly-once effects of server-held sessions: the newest session version whose
    effects this KB has, written in the same INSERT as the effects themselves.
``kb_clears``    ReplacingMergeTree(version) ORDER BY kb_id
    The version of the KB's last ClearKnowledgeBase: rows of `patterns` and `vectors`
    with a lower version are dead. A clear is one row, not a tombstone per pattern.
``kb_changes``   MergeTree ORDER BY (kb_id, version)
    The change log and the KB's change counter in one: (version, kind, key) for every
    pattern, vector, clear or notice written. ``version > last seen`` is the cheap check
    before serving a KB: empty when nothing changed, else the names that did.

Why these engines and keys: every table is ordered by ``kb_id`` first, so one KB is one
contiguous range of the primary index (a KB is a ``kb_id`` range, never a scan of
others' rows) and a Distributed table sharded by ``cityHash64(kb_id)`` keeps a KB on one
shard. ReplacingMergeTree keeps storage at one row per pattern however often it is
re-learnt, while the ``version`` column makes the winner explicit. Nothing is
partitioned: a partition per KB would mean thousands of tiny partitions (ClickHouse
merges only within one, and every INSERT touching several would create a part in
each), and no table here needs partition-level drops; ``kb_id``-first ordering already
gives the locality. Why one ``Null`` table in front: a commit (patterns + vectors +
applied marker + change-log rows) is then one INSERT, so a client crash can never
leave half of it behind, and the change log is written after the data it announces.
Why no separate counter table (``kb_versions(kb_id, version)``): the change log's
primary key answers "anything newer than v?" as cheaply (measured: the same ~2 ms
round trip), returns what changed in that same round trip, and saves every INSERT a
part.

Versions and coherence
----------------------
A version is ``counter << 20 | writer tag``: the counter is one more than the newest
version this replica has seen for the KB (read just before planning the write), the tag
is random per process, so versions never tie and order writes identically for
ClickHouse's merges and for every reader.

Before any read or write of a KB, a replica reads the change log past the newest
version it has seen (one small SELECT). If anything is there, it re-reads just those
patterns and vectors (their newest rows) into its index; a clear by another replica
reloads the KB. A writer INSERTs, then checks that its version is still the KB's
newest; if a concurrent writer got a higher version in first, a reader may already have
moved past ours, so the writer appends a ``notice`` row that re-announces its version
above the newest, and readers re-read the changes of an announced version.

Consistency a client gets: read-your-writes on ANY replica once a write is
acknowledged (the ack follows the INSERT; the next call on any replica sees the newer
version and catches up), and monotonic reads per KB on each replica. Writes to
different patterns never interfere. Two writes to the SAME pattern through two replicas
at the same instant are both acknowledged and every replica converges on one result,
but the higher version wins whole (last-writer-wins): one concurrent re-learn's
increment can be lost. Route a KB's writes to one replica if that matters.

ClickHouse unreachable: every call raises `StoreUnavailable` (UNAVAILABLE) with the
address and the cause; the next call reconnects by itself. A write interrupted by a
lost connection may or may not have landed; the replica catches up either way.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.model import PatternRecord
from kato_grpc.kb.records import dumps, record_columns, record_from_columns
from kato_grpc.kb.indexed import Change, IndexedStore
from kato_grpc.sessions.base import StoreUnavailable

__all__ = ["ClickHouseStore", "MIGRATIONS", "SCHEMA_VERSION"]

log = logging.getLogger("kato_grpc.kb.clickhouse")

TAG_BITS = 20
"""Low bits of a version: the writer's tag. The high bits count the KB's changes."""
NOTICE_ATTEMPTS = 20
CHUNK = 1000
"""Names per `IN (...)` when re-reading changed rows (keeps queries well under max_query_size)."""
RELOAD_AT = 20 * CHUNK
"""A replica that missed more changed patterns than this (and than half its KB) reloads the KB."""

_KINDS = "Enum8('pattern' = 1, 'vector' = 2, 'applied' = 3, 'clear' = 4, 'notice' = 5)"

# Migration i (1-based) takes the schema from version i-1 to i. Append only; never edit.
# ClickHouse DDL is not transactional, so every statement must be idempotent (IF NOT
# EXISTS): a migration interrupted half-way, or run by two replicas at once, is re-run.
# {db} is the database of the URL. Views run in name order on an INSERT: data first, the
# change log next, the counter last, so a reader who sees a version finds its rows.
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("knowledge bases: kb_writes fanned out to patterns, vectors, applied, kb_clears, kb_changes", [
        f"""CREATE TABLE IF NOT EXISTS {{db}}.kb_writes (
            kb_id String,
            kind {_KINDS},
            key String,
            version UInt64,
            deleted UInt8,
            events String,
            frequency UInt64,
            emotives String,
            metadata String,
            affinity_contrib String,
            vector Array(Float64),
            session_version UInt64,
            announces UInt64
        ) ENGINE = Null""",
        """CREATE TABLE IF NOT EXISTS {db}.patterns (
            kb_id String,
            name String,
            version UInt64,
            deleted UInt8,
            events String,
            frequency UInt64,
            emotives String,
            metadata String,
            affinity_contrib String
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (kb_id, name)""",
        """CREATE TABLE IF NOT EXISTS {db}.vectors (
            kb_id String,
            name String,
            version UInt64,
            vector Array(Float64)
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (kb_id, name)""",
        """CREATE TABLE IF NOT EXISTS {db}.applied (
            kb_id String,
            session_id String,
            session_version UInt64,
            version UInt64
        ) ENGINE = ReplacingMergeTree(session_version) ORDER BY (kb_id, session_id)""",
        """CREATE TABLE IF NOT EXISTS {db}.kb_clears (
            kb_id String,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY kb_id""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.kb_changes (
            kb_id String,
            version UInt64,
            kind {_KINDS},
            key String,
            announces UInt64
        ) ENGINE = MergeTree ORDER BY (kb_id, version)""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_1_patterns TO {db}.patterns AS
            SELECT kb_id, key AS name, version, deleted, events, frequency, emotives, metadata, affinity_contrib
            FROM {db}.kb_writes WHERE kind = 'pattern'""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_2_vectors TO {db}.vectors AS
            SELECT kb_id, key AS name, version, vector FROM {db}.kb_writes WHERE kind = 'vector'""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_3_applied TO {db}.applied AS
            SELECT kb_id, key AS session_id, session_version, version FROM {db}.kb_writes WHERE kind = 'applied'""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_4_clears TO {db}.kb_clears AS
            SELECT kb_id, version FROM {db}.kb_writes WHERE kind = 'clear'""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_8_changes TO {db}.kb_changes AS
            SELECT kb_id, version, kind, key, announces FROM {db}.kb_writes WHERE kind != 'applied'""",
    ]),
]
SCHEMA_VERSION = len(MIGRATIONS)

_WRITE_COLUMNS = (
    "kb_id, kind, key, version, deleted, events, frequency, emotives, metadata, affinity_contrib,"
    " vector, session_version, announces"
)
_PATTERN_COLUMNS = "name, version, deleted, events, frequency, emotives, metadata, affinity_contrib"
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Server error codes that mean "try again later", not "this request is wrong".
_TRANSIENT_CODES = frozenset({
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
})


def _write_row(kb_id: str, kind: str, key: str, version: int, **values: Any) -> tuple:
    return (
        kb_id, kind, key, version, values.get("deleted", 0),
        values.get("events", ""), values.get("frequency", 0), values.get("emotives", ""),
        values.get("metadata", ""), values.get("affinity_contrib", ""),
        values.get("vector", []), values.get("session_version", 0), values.get("announces", 0),
    )


def _pattern_write(kb_id: str, version: int, r: PatternRecord) -> tuple:
    return _write_row(kb_id, "pattern", r.name, version, **record_columns(r))


def _newest(rows: Iterable[tuple]) -> dict[str, tuple]:
    """The last row per name of rows sorted by (name, version): the current one."""
    newest: dict[str, tuple] = {}
    for row in rows:
        newest[row[0]] = row
    return newest


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


class ClickHouseStore(IndexedStore):
    """Knowledge bases in the ClickHouse database named by `url`, coherent across replicas."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 3.0,
        send_receive_timeout: float = 60.0,
        new_index: Callable[[], MemoryKnowledgeBase] = MemoryKnowledgeBase,
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
        self.address = f"{host or 'localhost'}:{kwargs.get('port', 9000)}"
        self._client_args = (host, kwargs)
        self._client = None
        self._schema_ready = False
        self._purge_supported = True
        self.tag = random.SystemRandom().getrandbits(TAG_BITS)
        self._seen: dict[str, int] = {}  # kb_id -> newest version whose changes the index has
        self._cleared_at: dict[str, int] = {}  # kb_id -> version of the clear the index reflects
        self._db_lock = threading.RLock()  # one clickhouse-driver connection: one query at a time
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
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass

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
                ") ENGINE = ReplacingMergeTree ORDER BY version", what="schema")
            applied = self._scalar(f"SELECT max(version) FROM {self._t('schema_migrations')}")
            for number, (description, statements) in enumerate(MIGRATIONS[applied:], start=applied + 1):
                for statement in statements:
                    self._execute(statement.format(db=f"`{self.database}`"), what="schema")
                self._execute(
                    f"INSERT INTO {self._t('schema_migrations')} (version, description, applied_at)"
                    " SELECT %(v)s, %(d)s, now()", {"v": number, "d": description}, what="schema")
                log.info("ClickHouse schema of %s migrated to version %d", self.database, number)
            self._schema_ready = True

    def schema_version(self) -> int:
        self._ensure_schema()
        return self._scalar(f"SELECT max(version) FROM {self._t('schema_migrations')}")

    # --- reading ClickHouse ----------------------------------------------------------------
    def _changes_since(self, kb_id: str, seen: int) -> list[tuple]:
        """(version, kind, key, announces) of the change log past `seen`: the cheap check.

        A range of the (kb_id, version) primary key: ClickHouse reads the tail granule of
        each part, and the answer is empty when nothing changed."""
        return self._execute(
            f"SELECT version, kind, key, announces FROM {self._t('kb_changes')}"
            " WHERE kb_id = %(kb)s AND version > %(seen)s", {"kb": kb_id, "seen": seen})

    def _read_patterns(self, kb_id: str, since: int, names: Sequence[str]) -> dict[str, tuple]:
        """The newest row (live or tombstone) of each of `names` with version >= `since`."""
        query = (f"SELECT {_PATTERN_COLUMNS} FROM {self._t('patterns')}"
                 " WHERE kb_id = %(kb)s AND version >= %(since)s")
        newest: dict[str, tuple] = {}
        for chunk in _chunks(sorted(names)):
            newest.update(_newest(self._execute(
                query + " AND name IN %(names)s ORDER BY name, version",
                {"kb": kb_id, "since": since, "names": tuple(chunk)})))
        return newest

    def _read_vectors(self, kb_id: str, since: int, names: Sequence[str] | None) -> list[tuple[str, tuple]]:
        """(name, vector) with version >= `since`, oldest first: the order they were indexed."""
        query = f"SELECT name, version, vector FROM {self._t('vectors')} WHERE kb_id = %(kb)s AND version >= %(since)s"
        rows: list[tuple] = []
        if names is None:
            rows = self._execute(query, {"kb": kb_id, "since": since})
        else:
            for chunk in _chunks(sorted(names)):
                rows += self._execute(query + " AND name IN %(names)s",
                                      {"kb": kb_id, "since": since, "names": tuple(chunk)})
        first = {}
        for name, version, vector in sorted(rows, key=lambda row: (row[1], row[0])):
            first.setdefault(name, tuple(vector))
        return list(first.items())

    @staticmethod
    def _put_rows(index: MemoryKnowledgeBase, rows: dict[str, tuple], names: Iterable[str]) -> None:
        for name in names:
            row = rows.get(name)
            if row is None or row[2]:  # gone since (a clear) or a tombstone
                index.delete_pattern(name)
            else:
                index.put_pattern(record_from_columns(name, *row[3:]))

    # --- IndexedStore ------------------------------------------------------------------------
    def _load(self, kb_id: str) -> MemoryKnowledgeBase:
        """The whole KB as stored now; remembers the version it reflects."""
        self._ensure_schema()
        head, cleared = self._execute(
            f"SELECT (SELECT max(version) FROM {self._t('kb_changes')} WHERE kb_id = %(kb)s),"
            f" (SELECT max(version) FROM {self._t('kb_clears')} WHERE kb_id = %(kb)s)", {"kb": kb_id})[0]
        index = self._new_index()
        rows = self._stream(
            f"SELECT {_PATTERN_COLUMNS} FROM {self._t('patterns')} WHERE kb_id = %(kb)s AND version >= %(since)s"
            " ORDER BY name, version", {"kb": kb_id, "since": cleared})
        current = None
        for row in rows:  # sorted by name, version: the last row of each name is the current one
            if current is not None and row[0] != current[0] and not current[2]:
                index.put_pattern(record_from_columns(current[0], *current[3:]))
            current = row
        if current is not None and not current[2]:
            index.put_pattern(record_from_columns(current[0], *current[3:]))
        index.index_vectors(self._read_vectors(kb_id, cleared, None))
        self._seen[kb_id], self._cleared_at[kb_id] = head, cleared
        return index

    def _index(self, kb_id: str) -> MemoryKnowledgeBase:
        """The KB's index, brought up to date with what other replicas wrote."""
        with self._lock:
            index = self._indexes.get(kb_id)
            if index is None:
                index = self._indexes[kb_id] = self._load(kb_id)
            else:
                index = self._catch_up(kb_id, index)
            return index

    def _catch_up(self, kb_id: str, index: MemoryKnowledgeBase) -> MemoryKnowledgeBase:
        self._ensure_schema()
        changes = self._changes_since(kb_id, self._seen.get(kb_id, 0))
        if not changes:
            return index
        head = max(row[0] for row in changes)
        late = sorted({row[3] for row in changes if row[1] == "notice"})
        if late:  # versions re-announced by writers that landed after a reader moved on
            changes += self._execute(
                f"SELECT version, kind, key, announces FROM {self._t('kb_changes')}"
                " WHERE kb_id = %(kb)s AND version IN %(late)s", {"kb": kb_id, "late": tuple(late)})
        cleared = self._cleared_at.get(kb_id, 0)
        patterns = sorted({key for _, kind, key, _ in changes if kind == "pattern"})
        vectors = sorted({key for _, kind, key, _ in changes if kind == "vector"})
        if (any(kind == "clear" and version > cleared for version, kind, _, _ in changes)  # cleared elsewhere
                or len(patterns) > max(RELOAD_AT, index.pattern_count() // 2)):  # cheaper to read it all
            index = self._indexes[kb_id] = self._load(kb_id)
            self._seen[kb_id] = max(self._seen[kb_id], head)
            return index
        # Read everything first, then change the index: a failure half-way leaves it as it was.
        rows = self._read_patterns(kb_id, cleared, patterns) if patterns else {}
        new_vectors = self._read_vectors(kb_id, cleared, vectors) if vectors else []
        self._put_rows(index, rows, patterns)
        index.index_vectors(new_vectors)
        self._seen[kb_id] = head
        return index

    def _next_version(self, kb_id: str) -> int:
        return (((self._seen.get(kb_id, 0) >> TAG_BITS) + 1) << TAG_BITS) | self.tag

    def _commit(self, kb_id: str, change: Change) -> None:
        """One INSERT, acknowledged by ClickHouse before the index shows the change."""
        base = self._seen.get(kb_id, 0)
        version = self._next_version(kb_id)
        rows = []
        if change.cleared:
            rows.append(_write_row(kb_id, "clear", "", version))
        rows += [_write_row(kb_id, "pattern", name, version, deleted=1) for name in change.deleted]
        rows += [_pattern_write(kb_id, version, record) for record in change.records.values()]
        rows += [_write_row(kb_id, "vector", name, version, vector=list(v)) for name, v in change.vectors.items()]
        if change.origin is not None:
            rows.append(_write_row(kb_id, "applied", change.origin[0], version, session_version=change.origin[1]))
        if not rows:
            return
        self._insert(rows)
        if change.cleared or change.deleted or change.records or change.vectors:
            self._announce(kb_id, base, version)  # (an `applied` row alone is no change to read)
        if change.cleared:
            self._cleared_at[kb_id] = version
            self._purge(kb_id, version)

    def _insert(self, rows: list[tuple]) -> None:
        """A synchronous INSERT: it returns once ClickHouse has the rows (all of them, in
        every table its views feed; with insert_quorum in the URL, on that many replicas).
        `insert_distributed_sync` makes that hold when the tables are Distributed, too."""
        self._execute(f"INSERT INTO {self._t('kb_writes')} ({_WRITE_COLUMNS}) VALUES", rows, what="write",
                      settings={"insert_distributed_sync": 1})

    def _announce(self, kb_id: str, base: int, version: int) -> None:
        """Make sure no replica can have moved past `version` without reading it.

        A replica that read a newer head before our INSERT landed would never look at
        `version` again; if the head is not ours, re-announce it above the head. When
        ours is the head and nothing else landed since `base`, the index (which the
        caller updates with this change) is exactly at `version`.
        """
        announced = version
        for _ in range(NOTICE_ATTEMPTS):
            versions = {v for (v,) in self._execute(
                f"SELECT DISTINCT version FROM {self._t('kb_changes')} WHERE kb_id = %(kb)s AND version > %(base)s",
                {"kb": kb_id, "base": base})}
            head = max(versions, default=0)
            if head == announced:
                if announced == version and versions == {version}:
                    self._seen[kb_id] = version
                return
            announced = (((head >> TAG_BITS) + 1) << TAG_BITS) | self.tag
            self._insert([_write_row(kb_id, "notice", "", announced, announces=version)])
        log.warning("kb %r: version %d re-announced %d times under contention", kb_id, version, NOTICE_ATTEMPTS)

    def _purge(self, kb_id: str, cleared: int) -> None:
        """Drop the rows a clear made dead (an asynchronous mutation; best effort).

        Readers skip dead rows anyway. Distributed tables take no mutations: there the
        operator purges the shards' local tables (docs/clickhouse.md)."""
        if not self._purge_supported:
            return
        for table in ("patterns", "vectors"):
            try:
                self._execute(f"ALTER TABLE {self._t(table)} DELETE WHERE kb_id = %(kb)s AND version < %(v)s",
                              {"kb": kb_id, "v": cleared})
            except Exception as exc:  # noqa: BLE001 - dead rows are ignored by readers anyway
                first_line = str(exc).strip().splitlines()[:2]
                if getattr(exc, "code", None) == 48:  # NOT_IMPLEMENTED: not a MergeTree (Distributed)
                    self._purge_supported = False
                    log.info("%s.%s takes no mutations (Distributed?): rows dead after a clear are left to the"
                             " operator's purge", self.database, table)
                    return
                log.warning("kb %r: purging %s after a clear failed: %s", kb_id, table, " ".join(first_line))

    def _last_applied(self, kb_id: str, session_id: str) -> int:
        count, newest = self._execute(
            f"SELECT count(), max(session_version) FROM {self._t('applied')}"
            " WHERE kb_id = %(kb)s AND session_id = %(sid)s", {"kb": kb_id, "sid": session_id})[0]
        return newest if count else -1

    def close(self) -> None:
        with self._lock:
            super().close()
            self._seen.clear()
            self._cleared_at.clear()
            with self._db_lock:
                self._reset()
