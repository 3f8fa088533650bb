"""`SqliteStore`: the durable embedded default — one SQLite database, `kato.db`.

WAL journal with ``synchronous=FULL``: a write returns only after its transaction is on
disk, so an acknowledged learn survives kill -9 and power loss. Each KB's index is
loaded on first use and then kept in memory; reads never touch the database.

Values are stored as JSON text (``ensure_ascii=False``); Python writes floats with
``repr``, so they read back bit-for-bit, and JSON objects keep key order (emotive key
order is meaningful, SPEC.md §5.4).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.model import PatternRecord
from kato_grpc.kb.engines import Index
from kato_grpc.kb.indexed import (
    CLIENT_ORIGIN,
    DEFAULT_REQUEST_WINDOW_SECONDS,
    Change,
    IndexedStore,
    apply_to_index,
)
from kato_grpc.kb.records import dumps, load_rows, record_columns, record_from_columns

__all__ = ["SqliteStore", "SCHEMA_VERSION"]

# Migration i (1-based) takes the schema from version i-1 to i. Append only; never edit.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS patterns (
            kb_id TEXT NOT NULL,
            name TEXT NOT NULL,
            events TEXT NOT NULL,
            frequency INTEGER NOT NULL,
            emotives TEXT NOT NULL,
            metadata TEXT NOT NULL,
            affinity_contrib TEXT NOT NULL,
            PRIMARY KEY (kb_id, name)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS vectors (
            kb_id TEXT NOT NULL,
            name TEXT NOT NULL,
            "values" TEXT NOT NULL,
            PRIMARY KEY (kb_id, name)
        ) WITHOUT ROWID""",
    ],
    [
        # Exactly-once effects of server-held sessions: the newest applied version.
        """CREATE TABLE IF NOT EXISTS applied (
            kb_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (kb_id, session_id)
        ) WITHOUT ROWID""",
    ],
]
_MIGRATIONS.append(
    [
        # When each origin was applied (unix seconds): client-held request ids are pruned
        # after --request-id-window-seconds. Rows from before get the upgrade's time.
        "ALTER TABLE applied ADD COLUMN applied_at REAL NOT NULL DEFAULT 0",
        "UPDATE applied SET applied_at = CAST(strftime('%s', 'now') AS REAL)",
        "CREATE INDEX IF NOT EXISTS applied_by_time ON applied (applied_at)",
    ]
)
SCHEMA_VERSION = len(_MIGRATIONS)
PRUNES_PER_WINDOW = 16  # the ledger holds at most a window and a sixteenth of client-held ids


def _pattern_row(kb_id: str, r: PatternRecord) -> tuple:
    return (kb_id, r.name, *record_columns(r).values())


class SqliteStore(IndexedStore):
    """Durable knowledge bases in ``<data_dir>/kato.db``."""

    def __init__(
        self,
        data_dir: str | Path,
        new_index: Callable[[], Index] = MemoryKnowledgeBase,
        *,
        request_window_seconds: float = DEFAULT_REQUEST_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(new_index, request_window_seconds=request_window_seconds, clock=clock)
        self._pruned_at = float("-inf")
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "kato.db"
        # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT ourselves.
        # check_same_thread=False: the server may call from executor threads; the lock
        # in IndexedStore serialises writers.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._migrate()
        self._seen_version = self._data_version()

    # --- coherence between processes sharing the file (kato-grpc serve --workers N) ----
    def _data_version(self) -> int:
        """SQLite's counter of commits made by *other* connections."""
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _drop_stale_indexes(self) -> None:
        """Another process committed since we last looked: reload indexes on next use."""
        version = self._data_version()
        if version != self._seen_version:
            self._indexes.clear()
            self._seen_version = version

    def _index(self, kb_id: str) -> Index:
        with self._lock:
            self._drop_stale_indexes()
            return super()._index(kb_id)

    def _write(self, kb_id: str, make_change) -> None:
        """Plan and write inside one IMMEDIATE transaction: no other process can commit
        between the freshness check, the exactly-once check and our write."""
        with self._writers:  # see IndexedStore.guard_index_writes
            with self._lock:
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._drop_stale_indexes()
                    index = super()._index(kb_id)
                    change = make_change(index)
                    self._write_rows(kb_id, change)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                if self._index_writes is None:
                    apply_to_index(index, change)
                    return
            with self._index_writes(kb_id):
                apply_to_index(index, change)

    def _migrate(self) -> None:
        """Run the migrations past the stored `user_version`, all in one transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # hold the write lock while reading the version
            try:
                version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                    for statement in statements:
                        self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {number}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _load(self, kb_id: str) -> Index:
        index = self._new_index()
        rows = self._conn.execute(
            "SELECT name, events, frequency, emotives, metadata, affinity_contrib"
            " FROM patterns WHERE kb_id = ? ORDER BY name",
            (kb_id,),
        )
        load_rows(index, rows)
        rows = self._conn.execute('SELECT name, "values" FROM vectors WHERE kb_id = ? ORDER BY name', (kb_id,))
        index.index_vectors((name, tuple(json.loads(values))) for name, values in rows)
        return index

    # --- streaming reads for export and copy (a connection of their own: no lock held) ----
    def iter_records(self, kb_id: str) -> Iterator[PatternRecord]:
        """Every stored pattern of the KB in name order, read as it streams."""
        reader = sqlite3.connect(self.path)
        try:
            rows = reader.execute(
                "SELECT name, events, frequency, emotives, metadata, affinity_contrib"
                " FROM patterns WHERE kb_id = ? ORDER BY name",
                (kb_id,),
            )
            for row in rows:
                yield record_from_columns(*row)
        finally:
            reader.close()

    def iter_vectors(self, kb_id: str) -> list[tuple[str, tuple[float, ...]]]:
        rows = self._conn.execute('SELECT name, "values" FROM vectors WHERE kb_id = ? ORDER BY name', (kb_id,))
        return [(name, tuple(json.loads(values))) for name, values in rows]

    def pattern_count(self, kb_id: str) -> int:
        return self._conn.execute("SELECT count(*) FROM patterns WHERE kb_id = ?", (kb_id,)).fetchone()[0]

    def knowledge_bases(self, after: str, limit: int) -> list[tuple[str, int]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT kb_id, count(*) FROM patterns WHERE kb_id > ? GROUP BY kb_id ORDER BY kb_id LIMIT ?",
                (after, limit),
            )
            return [(kb_id, n) for kb_id, n in rows]

    def _write_rows(self, kb_id: str, change: Change) -> None:
        """The statements of one change; the caller holds the transaction."""
        patterns = [_pattern_row(kb_id, record) for record in change.records.values()]
        vectors = [(kb_id, name, dumps(list(v))) for name, v in change.vectors.items()]
        conn = self._conn
        if change.cleared:
            conn.execute("DELETE FROM patterns WHERE kb_id = ?", (kb_id,))
            conn.execute("DELETE FROM vectors WHERE kb_id = ?", (kb_id,))
            # Client-held ids go with the KB; sessions' versions stay (see IndexedStore).
            conn.execute("DELETE FROM applied WHERE kb_id = ? AND session_id LIKE ?", (kb_id, CLIENT_ORIGIN + "%"))
        if change.deleted:
            conn.executemany("DELETE FROM patterns WHERE kb_id = ? AND name = ?", [(kb_id, n) for n in change.deleted])
        if patterns:
            conn.executemany("INSERT OR REPLACE INTO patterns VALUES (?, ?, ?, ?, ?, ?, ?)", patterns)
        if vectors:
            conn.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?, ?)", vectors)
        if change.origin is not None:
            now = self._clock()
            conn.execute("INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?)", (kb_id, *change.origin, now))
            if now - self._pruned_at >= self.request_window_seconds / PRUNES_PER_WINDOW:
                conn.execute(
                    "DELETE FROM applied WHERE applied_at < ? AND session_id LIKE ?",
                    (now - self.request_window_seconds, CLIENT_ORIGIN + "%"),
                )
                self._pruned_at = now

    def _last_applied(self, kb_id: str, session_id: str) -> int:
        row = self._conn.execute(
            "SELECT version, applied_at FROM applied WHERE kb_id = ? AND session_id = ?", (kb_id, session_id)
        ).fetchone()
        if row is None:
            return -1
        version, applied_at = row
        if session_id.startswith(CLIENT_ORIGIN) and applied_at < self._clock() - self.request_window_seconds:
            return -1  # past its window, not yet pruned: as if it were
        return version

    def _remember(self, kb_id: str, origin: tuple[str, int]) -> None:
        """The ledger is the `applied` table (pruned as it is written): nothing kept in memory."""

    def _forget_client_ids(self, kb_id: str) -> None:
        """Done by the clear's own transaction (`_write_rows`)."""

    def ledger_size(self) -> int:
        return self._conn.execute("SELECT count(*) FROM applied").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            super().close()
            self._conn.close()
