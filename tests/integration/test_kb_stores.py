"""The `KnowledgeStore` contract, run against every store; then SqliteStore durability."""

from __future__ import annotations

import sqlite3

import pytest

from kato_grpc.core.errors import NotFoundError, ValidationError
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import ClearKnowledgeBase, IndexVectors, LearnPattern
from kato_grpc.kb import MemoryStore, SqliteStore
from kato_grpc.kb.engines import engine_named
from kato_grpc.kb.sqlite import SCHEMA_VERSION

KB = "kb1"


def learn(events, emotives=(), metadata=(), persistence=5) -> LearnPattern:
    events = tuple(tuple(event) for event in events)
    return LearnPattern(
        name=pattern_name(events),
        events=events,
        emotives=tuple(emotives),
        metadata=tuple(metadata),
        persistence=persistence,
    )


ABC = learn([["a"], ["b"], ["c"]])


@pytest.fixture(params=["memory", "sqlite", "clickhouse", "memory-native", "sqlite-native", "clickhouse-native"])
def store(request, tmp_path):
    """Each store with each engine's index (the Python reference, the native one)."""
    kind, _, engine = request.param.partition("-")
    new_index = engine_named(engine or "python").new_index
    if kind == "clickhouse":  # a real clickhouse-server; skipped when not installed
        from kato_grpc.kb.clickhouse import ClickHouseStore

        s = ClickHouseStore(request.getfixturevalue("clickhouse_url"), new_index=new_index)
    else:
        s = MemoryStore(new_index) if kind == "memory" else SqliteStore(tmp_path / "data", new_index)
    yield s
    s.close()


def stats(store, kb_id=KB):
    return store.symbol_stats(kb_id)


# --- the contract ---------------------------------------------------------------------------


def test_empty_kb(store):
    view = store.view(KB)
    assert view.pattern_count() == 0 and view.candidates(None) == []
    assert view.vector_dimension() is None
    assert store.get_pattern(KB, ABC.name) is None
    assert store.list_patterns(KB, "", 10) == []
    s = stats(store)
    assert (s.symbols, s.total_unique_patterns, s.total_pattern_frequencies) == ([], 0, 0)
    assert s.total_symbols_in_patterns_frequencies == 0
    assert store.symbol_affinity(KB, "a") == {} and store.symbol_affinity(KB, None) == {}
    store.apply(KB, [])


def test_learn_new_pattern(store):
    effect = learn([["a", "b"], ["c"]], [{"joy": 1.0}, {"joy": 3.0, "fear": 0.5}], [{"k": "v", "n": 7.0}])
    store.apply(KB, [effect])
    record = store.get_pattern(KB, effect.name)
    assert record.name == "e9e43f2309079f2843665ab773996d99489306d6"
    assert record.events == (("a", "b"), ("c",)) and record.frequency == 1
    assert record.emotives == ({"joy": 1.0}, {"joy": 3.0, "fear": 0.5})
    assert record.metadata == {"k": ("v",), "n": ("7",)}
    assert record.affinity_contrib == {"joy": 2.0, "fear": 0.5}
    assert store.get_pattern(KB, "PTRN|" + effect.name) == record
    view = store.view(KB)
    assert view.pattern_count() == 1 and view.pmf("a") == 1 and view.freq("c") == 1
    assert view.candidates(["c"]) == [record]


def test_relearn_window_frequency_metadata_affinity(store):
    # SPEC §5.2: learn [[a],[b],[c]] three times with joy = rep on all three events.
    metas = [[{"k": "x"}], [{"k": "a", "n": 7.0}], []]
    for rep, meta in zip(range(3), metas, strict=False):
        store.apply(KB, [learn(ABC.events, [{"joy": float(rep)}] * 3, meta)])
    record = store.get_pattern(KB, ABC.name)
    assert record.frequency == 3
    assert record.emotives == ({"joy": 1.0}, {"joy": 1.0}, {"joy": 2.0}, {"joy": 2.0}, {"joy": 2.0})
    assert record.metadata == {"k": ("a", "x"), "n": ("7",)}
    assert record.affinity_contrib == {"joy": 3.0}
    assert store.view(KB).freq("a") == 3 and store.view(KB).pmf("a") == 1
    assert stats(store).total_symbols_in_patterns_frequencies == 9
    # A re-learn without emotives or metadata keeps them.
    store.apply(KB, [learn(ABC.events)])
    again = store.get_pattern(KB, ABC.name)
    assert (again.frequency, again.emotives, again.metadata) == (4, record.emotives, record.metadata)
    assert again.affinity_contrib == {"joy": 3.0}


def test_effects_of_one_call_fold(store, tmp_path):
    # The same three learns in ONE call give the same record as three calls.
    effects = [learn(ABC.events, [{"joy": float(rep)}] * 3, [{"r": rep}]) for rep in range(3)]
    store.apply(KB, effects)
    separate = MemoryStore()
    for effect in effects:
        separate.apply(KB, [effect])
    assert store.get_pattern(KB, ABC.name) == separate.get_pattern(KB, ABC.name)
    assert store.get_pattern(KB, ABC.name).frequency == 3
    assert stats(store) == stats(separate)


def test_affinity(store):
    # SPEC §5.5: a = -2, b = 2, c = 2, d = -4.
    store.apply(KB, [learn(ABC.events, [{"joy": 1.0}, {"joy": 3.0}])])
    store.apply(KB, [learn([["a"], ["d"]], [{"joy": -4.0}])])
    assert store.symbol_affinity(KB, "a") == {"joy": -2.0}
    assert store.symbol_affinity(KB, "zz") == {}
    assert store.symbol_affinity(KB, None) == {
        "a": {"joy": -2.0},
        "b": {"joy": 2.0},
        "c": {"joy": 2.0},
        "d": {"joy": -4.0},
    }


def test_get_and_list_paging(store):
    effects = [learn([[f"s{i}"], ["t"]]) for i in range(7)]
    store.apply(KB, effects)
    names = sorted(e.name for e in effects)
    pages, after = [], ""
    while page := store.list_patterns(KB, after, 3):
        pages.append([r.name for r in page])
        after = page[-1].name
    assert pages == [names[0:3], names[3:6], names[6:7]]
    assert store.list_patterns(KB, names[-1], 3) == []
    assert [r.name for r in store.list_patterns(KB, names[2], 2)] == names[3:5]
    assert store.get_pattern(KB, "0" * 40) is None


def test_symbol_stats(store):
    store.apply(KB, [ABC, learn([["a", "a"], ["d"]])])
    store.apply(KB, [ABC])
    s = stats(store)
    # freq(a) = 1×2 (ABC twice) + 2×1; pmf(a) = 2.
    assert s.symbols == [("a", 4, 2), ("b", 2, 1), ("c", 2, 1), ("d", 1, 1)]
    assert (s.total_unique_patterns, s.total_pattern_frequencies) == (2, 2)
    assert s.total_symbols_in_patterns_frequencies == 3 * 2 + 3 * 1


def test_update_pattern(store):
    store.apply(KB, [learn(ABC.events, [{"joy": 2.0}], [{"k": "v"}])])
    updated = store.update_pattern(KB, ABC.name, frequency=4)
    assert updated.frequency == 4 and updated.metadata == {"k": ("v",)}
    assert stats(store).symbols == [("a", 4, 1), ("b", 4, 1), ("c", 4, 1)]
    assert stats(store).total_symbols_in_patterns_frequencies == 12
    assert store.symbol_affinity(KB, "a") == {"joy": 2.0}  # affinity unchanged

    updated = store.update_pattern(
        KB, "PTRN|" + ABC.name, emotives=[{"b": 1.5, "a": -1.0}], metadata={"z": ["b", "a", "b"], "m": []}
    )
    assert updated.frequency == 4
    assert updated.emotives == ({"b": 1.5, "a": -1.0},)
    assert updated.metadata == {"m": (), "z": ("a", "b")}
    assert list(updated.metadata) == ["m", "z"]
    assert updated.affinity_contrib == {"joy": 2.0}
    assert store.get_pattern(KB, ABC.name) == updated
    assert store.view(KB).candidates(["a"]) == [updated]

    with pytest.raises(NotFoundError):
        store.update_pattern(KB, "0" * 40, frequency=2)
    with pytest.raises(ValidationError):
        store.update_pattern(KB, ABC.name, frequency=0)
    assert store.get_pattern(KB, ABC.name) == updated


def test_delete_pattern(store):
    other = learn([["a"], ["x"]], [{"joy": 5.0}])
    store.apply(KB, [learn(ABC.events, [{"joy": 1.0}]), other, ABC])
    store.delete_pattern(KB, ABC.name)
    assert store.get_pattern(KB, ABC.name) is None
    # Every statistic equals its definition over what is left: just `other`.
    only_other = MemoryStore()
    only_other.apply(KB, [other])
    assert stats(store) == stats(only_other)
    assert stats(store).symbols == [("a", 1, 1), ("x", 1, 1)]
    assert store.symbol_affinity(KB, None) == {"a": {"joy": 5.0}, "x": {"joy": 5.0}}
    assert store.view(KB).candidates(None) == [store.get_pattern(KB, other.name)]
    with pytest.raises(NotFoundError):
        store.delete_pattern(KB, ABC.name)
    store.delete_pattern(KB, "PTRN|" + other.name)
    assert stats(store).total_unique_patterns == 0 and store.symbol_affinity(KB, None) == {}


def test_clear(store):
    store.apply(KB, [ABC, IndexVectors((("VCTR|v", (1.0, 2.0)),))])
    store.clear(KB)
    assert store.list_patterns(KB, "", 10) == [] and stats(store).symbols == []
    assert store.view(KB).vector_dimension() is None
    # A clear effect inside a call drops what came before it in that call too.
    xy = learn([["x"], ["y"]])
    store.apply(KB, [ABC, IndexVectors((("VCTR|v", (1.0, 2.0)),))])
    store.apply(KB, [ABC, ClearKnowledgeBase(), xy, IndexVectors((("VCTR|w", (1.0, 2.0, 3.0)),))])
    assert [r.name for r in store.list_patterns(KB, "", 10)] == [xy.name]
    assert store.get_pattern(KB, xy.name).frequency == 1
    assert store.view(KB).vectors() == {"VCTR|w": (1.0, 2.0, 3.0)}


def test_kb_isolation(store):
    store.apply("one", [learn(ABC.events, [{"joy": 1.0}]), IndexVectors((("VCTR|v", (1.0,)),))])
    store.apply("two", [learn([["x"], ["y"]])])
    assert store.get_pattern("two", ABC.name) is None
    assert [s for s, _, _ in stats(store, "two").symbols] == ["x", "y"]
    assert store.symbol_affinity("two", "a") == {}
    assert store.view("two").vector_dimension() is None
    with pytest.raises(NotFoundError):
        store.delete_pattern("two", ABC.name)
    store.clear("two")
    assert store.get_pattern("one", ABC.name).frequency == 1
    assert store.view("one").vectors() == {"VCTR|v": (1.0,)}


def test_vectors_indexed_once_and_dimension_rule(store):
    store.apply(KB, [IndexVectors((("VCTR|a", (0.1, 0.2)), ("VCTR|b", (1.0, 2.0, 3.0)), ("VCTR|a", (5.0, 5.0))))])
    assert store.view(KB).vectors() == {"VCTR|a": (0.1, 0.2)}
    assert store.view(KB).vector_dimension() == 2
    store.apply(KB, [IndexVectors((("VCTR|a", (9.0, 9.0)), ("VCTR|c", (1 / 3, 0.1 + 0.2)), ("VCTR|d", (1.0,))))])
    assert store.view(KB).vectors() == {"VCTR|a": (0.1, 0.2), "VCTR|c": (1 / 3, 0.1 + 0.2)}
    assert store.view(KB).nearest_vectors((0.0, 0.0), 1)[0][1] == "VCTR|a"


def test_apply_is_all_or_none(store):
    store.apply(KB, [ABC])
    before = (store.list_patterns(KB, "", 10), stats(store))
    with pytest.raises(TypeError):
        store.apply(KB, [ABC, learn([["x"], ["y"]]), IndexVectors((("VCTR|v", (1.0,)),)), object()])
    assert (store.list_patterns(KB, "", 10), stats(store)) == before
    assert store.view(KB).vector_dimension() is None


# --- SqliteStore only --------------------------------------------------------------------------


def _populate(store) -> None:
    store.apply(
        KB,
        [
            learn([["é", "a b"], ["\u200b"]], [{"joy": 0.1, "fear": 1 / 3}], [{"k": "v", "n": 2.5}]),
            learn([["a b"], ["c"]], [{"joy": -1e-300}]),
            IndexVectors((("VCTR|x", (0.1 + 0.2, -0.0, 1e308)), ("VCTR|y", (1.0, 2.0, 3.0)))),
        ],
    )
    store.apply(KB, [learn([["a b"], ["c"]], [{"joy": 2.0, "z": 0.7}], [{"m": [1, "x"]}])])
    store.apply("other", [ABC])


def _snapshot(store, kb_id=KB):
    return (
        store.list_patterns(kb_id, "", 100),
        stats(store, kb_id),
        store.symbol_affinity(kb_id, None),
        store.view(kb_id).vectors(),
        store.view(kb_id).vector_dimension(),
    )


def test_sqlite_survives_reopen(tmp_path):
    first = SqliteStore(tmp_path / "nested" / "dir")
    _populate(first)
    expected, other = _snapshot(first), _snapshot(first, "other")
    first.close()
    assert (tmp_path / "nested" / "dir" / "kato.db").exists()
    second = SqliteStore(tmp_path / "nested" / "dir")
    assert _snapshot(second) == expected and _snapshot(second, "other") == other
    # Key order survives too (emotive key order is meaningful).
    record = second.get_pattern(KB, pattern_name([["a b"], ["c"]]))
    assert [list(m) for m in record.emotives] == [["joy"], ["joy", "z"]]
    assert record.emotives[0]["joy"] == -1e-300
    second.close()


def test_sqlite_rows_equal_the_index(tmp_path):
    # The rows written are exactly what the index shows: vectors skipped by the
    # dimension rule or a clear effect must not reach the database either.
    store = SqliteStore(tmp_path)
    _populate(store)
    store.apply(KB, [IndexVectors((("VCTR|a", (1.0,)), ("VCTR|x", (9.0, 9.0, 9.0))))])
    store.apply("other", [IndexVectors((("VCTR|o", (1.0,)),)), ClearKnowledgeBase(), learn([["p"], ["q"]])])
    store.clear("gone")
    store.apply("gone", [ABC, IndexVectors((("VCTR|g", (1.0,)),))])
    store.clear("gone")
    expected = {kb_id: _snapshot(store, kb_id) for kb_id in (KB, "other", "gone")}
    rows = store._conn.execute('SELECT kb_id, name, "values" FROM vectors ORDER BY kb_id, name').fetchall()
    assert [(k, n) for k, n, _ in rows] == [(KB, "VCTR|x"), (KB, "VCTR|y")]
    store.close()
    reopened = SqliteStore(tmp_path)
    assert {kb_id: _snapshot(reopened, kb_id) for kb_id in expected} == expected
    assert [r.name for r in reopened.list_patterns("other", "", 10)] == [pattern_name([["p"], ["q"]])]
    reopened.close()


def test_sqlite_migration_idempotent(tmp_path):
    for _ in range(3):
        store = SqliteStore(tmp_path)
        store.apply(KB, [ABC])
        store.close()
    conn = sqlite3.connect(tmp_path / "kato.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT frequency FROM patterns").fetchall() == [(3,)]
    conn.close()


class _FailingConnection:
    """Delegates to a real connection but fails the first statement matching `trigger`."""

    def __init__(self, conn: sqlite3.Connection, trigger: str) -> None:
        self._conn, self._trigger = conn, trigger

    def _check(self, sql: str) -> None:
        if self._trigger in sql:
            raise sqlite3.OperationalError("disk I/O error (simulated)")

    def execute(self, sql, *args):
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.mark.parametrize("trigger", ["INSERT OR IGNORE INTO vectors", "COMMIT"])
def test_sqlite_failed_transaction_changes_nothing(tmp_path, monkeypatch, trigger):
    store = SqliteStore(tmp_path)
    _populate(store)
    expected = _snapshot(store)
    real = store._conn
    monkeypatch.setattr(store, "_conn", _FailingConnection(real, trigger))
    # The pattern rows are written before the failing statement: they must roll back.
    with pytest.raises(sqlite3.OperationalError):
        store.apply(KB, [ABC, learn([["a b"], ["c"]]), IndexVectors((("VCTR|new", (1.0, 1.0, 1.0)),))])
    with pytest.raises(sqlite3.OperationalError):
        store.apply(KB, [ClearKnowledgeBase(), IndexVectors((("VCTR|new", (1.0,)),))])
    assert _snapshot(store) == expected  # the index is unchanged
    assert not real.in_transaction

    # The store still works afterwards, and the database holds only committed data.
    monkeypatch.setattr(store, "_conn", real)
    store.apply(KB, [ABC])
    store.close()
    reopened = SqliteStore(tmp_path)
    patterns = reopened.list_patterns(KB, "", 100)
    assert [r for r in patterns if r.name != ABC.name] == expected[0]
    assert reopened.get_pattern(KB, ABC.name).frequency == 1
    assert reopened.view(KB).vectors() == expected[3]
    reopened.close()


def test_sqlite_failed_update_and_delete_change_nothing(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path)
    _populate(store)
    expected = _snapshot(store)
    name = pattern_name([["a b"], ["c"]])
    monkeypatch.setattr(store, "_conn", _FailingConnection(store._conn, "COMMIT"))
    with pytest.raises(sqlite3.OperationalError):
        store.update_pattern(KB, name, frequency=9)
    with pytest.raises(sqlite3.OperationalError):
        store.delete_pattern(KB, name)
    with pytest.raises(sqlite3.OperationalError):
        store.clear(KB)
    assert _snapshot(store) == expected
    monkeypatch.undo()
    store.close()
    reopened = SqliteStore(tmp_path)
    assert _snapshot(reopened) == expected
    reopened.close()


def test_sqlite_acked_learns_survive_sigkill(tmp_path):
    from tests.support.crash import acked_before_sigkill

    acked = acked_before_sigkill("kato_grpc.kb.sqlite", "SqliteStore", str(tmp_path), 50)

    store = SqliteStore(tmp_path)
    for i, name in enumerate(acked):
        record = store.get_pattern("crash", name)
        assert record is not None, f"acked learn {i} lost"
        assert record.emotives == ({"joy": i / 7},)
    assert store.symbol_stats("crash").total_unique_patterns >= len(acked)
    store.close()


def test_sqlite_stores_sharing_a_file_stay_coherent(tmp_path):
    """Two processes (here: two connections) on one data dir see each other's writes,
    and a transition applied through one is not applied again through the other."""
    from kato_grpc.core.learning import pattern_name
    from kato_grpc.core.model import LearnPattern
    from kato_grpc.kb.sqlite import SqliteStore

    first, second = SqliteStore(tmp_path), SqliteStore(tmp_path)
    events = (("a",), ("b",))
    effect = LearnPattern(pattern_name(events), events, (), (), 5)
    assert second.view("kb").pattern_count() == 0  # loads second's index before the write
    first.apply("kb", [effect], origin=("s1", 1))
    assert second.view("kb").pattern_count() == 1
    second.apply("kb", [effect], origin=("s1", 1))  # the same transition, repaired elsewhere
    second.apply("kb", [effect])
    assert first.get_pattern("kb", effect.name).frequency == 2
    assert second.symbol_stats("kb").symbols == [("a", 2, 1), ("b", 2, 1)]
    first.close()
    second.close()
