"""The ledger of applied client-held request ids is kept for a window, then forgotten
(kb/indexed.py, kb/sqlite.py), with an injected clock: no sleeps, no timing."""

from __future__ import annotations

import sqlite3

import pytest

from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import LearnPattern
from kato_grpc.kb import MemoryStore, SqliteStore

KB = "kb1"
WINDOW = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def learn(symbol: str) -> LearnPattern:
    events = ((symbol,),)
    return LearnPattern(name=pattern_name(events), events=events, emotives=(), metadata=(), persistence=5)


@pytest.fixture(params=["memory", "sqlite"])
def kb(request, tmp_path):
    clock = Clock()
    if request.param == "memory":
        store = MemoryStore(request_window_seconds=WINDOW, clock=clock)
    else:
        store = SqliteStore(tmp_path, request_window_seconds=WINDOW, clock=clock)
    store.clock = clock
    yield store
    store.close()


def frequency(store, symbol: str) -> int:
    record = store.get_pattern(KB, pattern_name(((symbol,),)))
    return record.frequency if record else 0


def test_a_retry_within_the_window_counts_once(kb):
    kb.apply(KB, [learn("a")], ("request:1", 1))
    kb.clock.now += WINDOW - 1
    kb.apply(KB, [learn("a")], ("request:1", 1))
    assert frequency(kb, "a") == 1


def test_after_the_window_the_ledger_stays_bounded_however_many_ids_passed(kb):
    for i in range(1000):
        kb.apply(KB, [learn("a")], (f"request:{i}", 1))
        kb.clock.now += 1.0  # 1000 ids over ten windows
    # Ids of one window (and the slack between prunes) are remembered, not the thousand.
    assert kb.ledger_size() <= WINDOW * (1 + 1 / 16) + 1
    kb.clock.now += 2 * WINDOW
    kb.apply(KB, [learn("b")], ("request:last", 1))
    assert kb.ledger_size() == 1


def test_an_id_past_its_window_is_applied_again(kb):
    kb.apply(KB, [learn("a")], ("request:1", 1))
    kb.clock.now += WINDOW + 1
    kb.apply(KB, [learn("a")], ("request:1", 1))
    assert frequency(kb, "a") == 2


def test_a_server_held_sessions_version_is_kept_past_the_window(kb):
    kb.apply(KB, [learn("a")], ("session-1", 3))
    kb.clock.now += 10 * WINDOW
    kb.apply(KB, [learn("b")], ("request:x", 1))  # prunes
    kb.apply(KB, [learn("a")], ("session-1", 3))  # an outbox repair: still skipped
    assert frequency(kb, "a") == 1


def test_clearing_a_kb_forgets_its_client_held_ids_only(kb):
    kb.apply(KB, [learn("a")], ("request:1", 1))
    kb.apply("other", [learn("a")], ("request:1", 1))
    kb.apply(KB, [learn("s")], ("session-1", 1))
    kb.clear(KB)
    assert kb.ledger_size() == 2  # the other KB's id and the session's version
    kb.apply(KB, [learn("s")], ("session-1", 1))
    assert frequency(kb, "s") == 0  # the session's repair of a pre-clear learn stays skipped


def test_the_upgrade_keeps_existing_ids_for_a_window(tmp_path):
    conn = sqlite3.connect(tmp_path / "kato.db")
    conn.executescript(
        """CREATE TABLE applied (kb_id TEXT NOT NULL, session_id TEXT NOT NULL, version INTEGER NOT NULL,
           PRIMARY KEY (kb_id, session_id)) WITHOUT ROWID;
           CREATE TABLE patterns (kb_id TEXT NOT NULL, name TEXT NOT NULL, events TEXT NOT NULL,
           frequency INTEGER NOT NULL, emotives TEXT NOT NULL, metadata TEXT NOT NULL,
           affinity_contrib TEXT NOT NULL, PRIMARY KEY (kb_id, name)) WITHOUT ROWID;
           CREATE TABLE vectors (kb_id TEXT NOT NULL, name TEXT NOT NULL, "values" TEXT NOT NULL,
           PRIMARY KEY (kb_id, name)) WITHOUT ROWID;
           INSERT INTO applied VALUES ('kb1', 'request:old', 1);
           PRAGMA user_version = 2;"""
    )
    conn.close()
    store = SqliteStore(tmp_path)
    store.apply(KB, [learn("a")], ("request:old", 1))
    assert frequency(store, "a") == 0  # still remembered after the upgrade
    store.close()
