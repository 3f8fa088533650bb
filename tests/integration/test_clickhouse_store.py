"""`ClickHouseStore` against a real clickhouse-server: schema, coherence, failures.

The KnowledgeStore contract itself runs in tests/unit/test_kb_stores.py (the
"clickhouse" parameter). Here: what only a shared, remote store has to get right. Two
`ClickHouseStore` objects on one database stand for two replicas.
"""

from __future__ import annotations

import threading

import pytest

from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import IndexVectors, LearnPattern
from kato_grpc.kb import MemoryStore
from kato_grpc.kb.clickhouse import OVERLAP, SCHEMA_VERSION, ClickHouseStore
from kato_grpc.sessions.base import StoreUnavailable
from tests.support.requirements import missing

pytestmark = pytest.mark.timeout(180)
KB = "kb1"


def learn(events, emotives=()) -> LearnPattern:
    events = tuple(tuple(event) for event in events)
    return LearnPattern(pattern_name(events), events, tuple(emotives), (), 5)


ABC = learn([["a"], ["b"], ["c"]])


def snapshot(store, kb_id=KB):
    return (
        store.list_patterns(kb_id, "", 10_000),
        store.symbol_stats(kb_id),
        store.symbol_affinity(kb_id, None),
        store.view(kb_id).vectors(),
    )


@pytest.fixture
def pair(clickhouse_url):
    """Two replicas of one database."""
    a, b = ClickHouseStore(clickhouse_url), ClickHouseStore(clickhouse_url)
    yield a, b
    a.close()
    b.close()


def test_schema_is_created_once_and_migrations_are_idempotent(clickhouse_url):
    stores = [ClickHouseStore(clickhouse_url) for _ in range(3)]
    stores[0].apply(KB, [ABC])
    rows = stores[1]._execute(f"SELECT version FROM {stores[1]._t('schema_migrations')} FINAL ORDER BY version")
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    tables = {
        name
        for (name,) in stores[2]._execute(
            "SELECT name FROM system.tables WHERE database = %(db)s", {"db": stores[2].database}
        )
    }
    assert {
        "schema_migrations",
        "kb_writes_v2",
        "pattern_ops",
        "vectors",
        "applied",
        "kb_clears",
        "kb_log",
        "kb_log_floor",
    } <= tables
    assert all(s.schema_version() == SCHEMA_VERSION for s in stores)
    assert stores[2].get_pattern(KB, ABC.name).frequency == 1
    for s in stores:
        s.close()


def test_a_replica_catches_up_from_the_log_alone(pair, monkeypatch):
    a, b = pair
    a.apply(KB, [learn([[f"s{i}"], ["t"]]) for i in range(50)])
    assert b.view(KB).pattern_count() == 50  # loaded whole, once
    reads: list[str] = []
    for method in ("_read_patterns", "_load"):
        real = getattr(b, method)
        monkeypatch.setattr(b, method, lambda *args, real=real, method=method: reads.append(method) or real(*args))
    a.apply(KB, [ABC])
    a.apply(KB, [learn(ABC.events, [{"joy": 1.0}])])
    record = b.get_pattern(KB, ABC.name)
    assert (record.frequency, record.emotives) == (2, ({"joy": 1.0},))
    assert reads == []  # the log rows carry the operations: folded on top, nothing re-read
    assert snapshot(a) == snapshot(b)


def test_every_kind_of_write_reaches_the_other_replica(pair):
    a, b = pair
    a.apply(KB, [learn(ABC.events, [{"joy": 1.0}]), IndexVectors((("VCTR|v", (1.0, 2.0)),))])
    b.apply(KB, [ABC])
    b.update_pattern(KB, ABC.name, metadata={"k": ["v"]})
    xy = learn([["x"], ["y"]])
    a.apply(KB, [xy])
    b.delete_pattern(KB, xy.name)
    assert snapshot(a) == snapshot(b)
    assert a.get_pattern(KB, ABC.name).frequency == 2 and a.get_pattern(KB, xy.name) is None
    a.clear(KB)
    assert snapshot(b) == ([], a.symbol_stats(KB), {}, {})
    b.apply(KB, [ABC])
    assert a.get_pattern(KB, ABC.name).frequency == 1


def _stale_write(store, effects):
    """`store` writes without catching up first: its version is planned on an old head,
    as when its INSERT races others that land first."""
    original = store._catch_up
    store._catch_up = lambda kb_id, index: index
    try:
        store.apply(KB, effects)
    finally:
        store._catch_up = original


def _notices(store) -> int:
    return store._scalar(
        f"SELECT count() FROM {store._t('kb_log')} WHERE kb_id = %(kb)s AND kind = 'notice'", {"kb": KB}
    )


def test_a_write_landing_just_behind_a_readers_head_is_found_by_the_re_read_window(pair, clickhouse_url):
    a, b = pair
    c = ClickHouseStore(clickhouse_url)
    a.tag, c.tag = 1, 2  # same counter, A's version lower
    a.view(KB), b.view(KB)
    c.apply(KB, [ABC])
    assert b.get_pattern(KB, ABC.name) is not None  # B's head is now C's version
    xy = learn([["x"], ["y"]])
    _stale_write(a, [xy])
    assert _notices(b) == 0
    assert b.get_pattern(KB, xy.name) is not None
    assert snapshot(a) == snapshot(b) == snapshot(c)
    c.close()


def test_a_write_overtaken_by_many_is_re_announced_above_the_head(pair, clickhouse_url):
    a, b = pair
    c = ClickHouseStore(clickhouse_url)
    a.view(KB), b.view(KB)
    for i in range(OVERLAP):  # C moves the head OVERLAP counters on; B follows
        c.apply(KB, [learn(ABC.events, [{"joy": float(i)}])])
    assert b.get_pattern(KB, ABC.name).frequency == OVERLAP
    _stale_write(a, [ABC])  # sorts before all of C's learns: A's is the oldest
    assert _notices(b) == 1
    record = b.get_pattern(KB, ABC.name)
    assert record.frequency == OVERLAP + 1 and record.emotives[-1] == {"joy": float(OVERLAP - 1)}
    assert snapshot(a) == snapshot(b) == snapshot(c) == snapshot(ClickHouseStore(clickhouse_url))
    c.close()


def test_concurrent_writers_converge(pair, clickhouse_url):
    a, b = pair
    barrier = threading.Barrier(2)

    def write(store, prefix):
        barrier.wait()
        for i in range(40):
            store.apply(KB, [learn([[f"{prefix}{i}"], ["t"]]), learn(ABC.events, [{"joy": float(i)}])])

    threads = [threading.Thread(target=write, args=(s, p)) for s, p in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = ClickHouseStore(clickhouse_url)
    assert snapshot(a) == snapshot(b) == snapshot(fresh)
    names = {r.name for r in fresh.list_patterns(KB, "", 1000)}
    assert names >= {learn([[f"{p}{i}"], ["t"]]).name for p in "ab" for i in range(40)}
    # The shared pattern: every acknowledged re-learn counts, on every replica.
    assert fresh.get_pattern(KB, ABC.name).frequency == 80
    fresh.close()


def test_effects_of_a_session_version_apply_once_across_replicas(pair):
    a, b = pair
    a.apply(KB, [ABC], origin=("session-1", 3))
    b.apply(KB, [ABC], origin=("session-1", 3))  # the outbox repaired by another replica
    b.apply(KB, [ABC], origin=("session-1", 2))
    assert a.get_pattern(KB, ABC.name).frequency == 1
    b.apply(KB, [ABC], origin=("session-1", 4))
    assert a.get_pattern(KB, ABC.name).frequency == 2


def test_many_changes_at_once_are_read_in_chunks(pair):
    a, b = pair
    b.view(KB)
    a.apply(KB, [learn([[f"s{i}"], ["t"]]) for i in range(2500)])
    assert b.view(KB).pattern_count() == 2500
    assert snapshot(a) == snapshot(b)


def test_clickhouse_down_raises_store_unavailable_and_recovers(clickhouse_server):
    store = ClickHouseStore(clickhouse_server.url)
    store.apply(KB, [ABC])
    clickhouse_server.kill()
    for call in (lambda: store.view(KB), lambda: store.apply(KB, [ABC]), lambda: store.symbol_stats("other")):
        with pytest.raises(StoreUnavailable, match=f"ClickHouse at 127.0.0.1:{clickhouse_server.tcp_port}"):
            call()
    clickhouse_server.start()
    assert store.get_pattern(KB, ABC.name).frequency == 1  # the failed learn did not land
    store.apply(KB, [ABC])
    assert ClickHouseStore(clickhouse_server.url).get_pattern(KB, ABC.name).frequency == 2
    store.close()


def test_store_created_while_clickhouse_is_down_migrates_when_it_is_up(clickhouse_server):
    clickhouse_server.kill()
    store = ClickHouseStore(clickhouse_server.url)  # does not raise: the service starts anyway
    with pytest.raises(StoreUnavailable, match="unavailable"):
        store.view(KB)
    clickhouse_server.start()
    store.apply(KB, [ABC])
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_acked_learns_survive_sigkill_of_the_writer(clickhouse_url):
    from tests.support.crash import acked_before_sigkill

    acked = acked_before_sigkill("kato_grpc.kb.clickhouse", "ClickHouseStore", clickhouse_url, 60)
    store = ClickHouseStore(clickhouse_url)
    names = {r.name for r in store.list_patterns("crash", "", 100_000)}
    assert set(acked) <= names and len(names) <= len(acked) + 1
    expected = MemoryStore()
    for i, name in enumerate(acked):
        expected.apply("crash", [LearnPattern(name, ((f"s{i}",), ("t",)), ({"joy": i / 7},), (), 5)])
    assert [store.get_pattern("crash", n) for n in acked] == [expected.get_pattern("crash", n) for n in acked]
    store.close()


_TWO_SHARDS = """
    <remote_servers>
        <kato_test>
            <shard><replica><host>127.0.0.1</host><port>{tcp_port}</port>
                <default_database>kato_shard1</default_database></replica></shard>
            <shard><replica><host>127.0.0.1</host><port>{tcp_port}</port>
                <default_database>kato_shard2</default_database></replica></shard>
        </kato_test>
    </remote_servers>
"""


@pytest.fixture
def sharded_url(tmp_path):
    """docs/clickhouse.md's sharding recipe on one server: two "shards" are two databases
    (each replica of the cluster names its own default_database), and database `kato`
    holds Distributed tables over them, sharded by cityHash64(kb_id)."""
    from kato_grpc.kb.clickhouse import MIGRATIONS
    from tests.support.clickhouse import ClickHouseServer, ClickHouseUnavailable

    try:
        server = ClickHouseServer(tmp_path / "ch", extra_config=_TWO_SHARDS).start()
    except ClickHouseUnavailable as exc:
        missing(f"a real ClickHouse ({exc})")
    admin = ClickHouseStore(server.url_for("default"))
    tables = ("pattern_ops", "vectors", "applied", "kb_clears", "kb_log", "kb_log_floor")
    for shard in ("kato_shard1", "kato_shard2"):
        admin._execute(f"CREATE DATABASE {shard}")
        for statement in MIGRATIONS[0][1] + MIGRATIONS[1][1]:
            if any(f"CREATE TABLE IF NOT EXISTS {{db}}.{table} (" in statement for table in tables):
                admin._execute(statement.format(db=shard))
    admin._execute("CREATE DATABASE kato")
    for table in tables:
        admin._execute(
            f"CREATE TABLE kato.{table} AS kato_shard1.{table}"
            f" ENGINE = Distributed(kato_test, '', {table}, cityHash64(kb_id))"
        )
    yield server.url, admin
    admin.close()
    server.stop()


def test_sharded_by_distributed_tables(sharded_url):
    url, admin = sharded_url
    a, b = ClickHouseStore(url), ClickHouseStore(url)  # they add kb_writes and its views themselves
    kbs = [f"kb{i}" for i in range(12)]
    for kb in kbs:
        a.apply(kb, [ABC, learn([[kb], ["t"]])])
    b.apply("kb3", [ABC])
    b.delete_pattern("kb5", ABC.name)
    a.clear("kb7")
    assert a.get_pattern("kb3", ABC.name).frequency == 2 and a.get_pattern("kb5", ABC.name) is None
    assert b.list_patterns("kb7", "", 10) == []
    fresh = ClickHouseStore(url)
    assert [snapshot(fresh, kb) for kb in kbs] == [snapshot(a, kb) for kb in kbs] == [snapshot(b, kb) for kb in kbs]
    # Each KB lives on exactly one shard, and both shards got some.
    placed = {}
    for shard in ("kato_shard1", "kato_shard2"):
        for (kb,) in admin._execute(f"SELECT DISTINCT kb_id FROM {shard}.pattern_ops"):
            placed.setdefault(kb, []).append(shard)
    assert all(len(shards) == 1 for shards in placed.values())
    assert {shards[0] for shards in placed.values()} == {"kato_shard1", "kato_shard2"}
    for store in (a, b, fresh):
        store.close()


def test_a_replica_away_longer_than_the_trimmed_log_reloads(pair, monkeypatch):
    a, b = pair
    a.apply(KB, [ABC])
    assert b.get_pattern(KB, ABC.name).frequency == 1  # B is up to date, then goes quiet
    xy = learn([["x"], ["y"]])
    for _ in range(3):
        a.apply(KB, [xy])
    a.delete_pattern(KB, ABC.name)
    # Everything older than "two hours from now": every partition of the log goes.
    assert a.trim_change_log(retention=-7200, grace=0) >= 1
    assert a.log_rows() == 0
    loads: list[str] = []
    for store in (a, b):
        real = store._load
        monkeypatch.setattr(store, "_load", lambda kb, real=real, store=store: loads.append(store) or real(kb))
    assert b.get_pattern(KB, ABC.name) is None and b.get_pattern(KB, xy.name).frequency == 3
    assert loads == [b]  # B reloaded: the log no longer held what it missed
    assert a.get_pattern(KB, xy.name).frequency == 3 and loads == [b]  # A had read it all: no reload
    b.apply(KB, [xy])  # versions keep growing past the trimmed log
    assert a.get_pattern(KB, xy.name).frequency == 4
    fresh = ClickHouseStore(a.url)
    assert snapshot(fresh) == snapshot(a) == snapshot(b)
    fresh.close()


def test_schema_1_knowledge_bases_survive_the_migration_to_operations(clickhouse_url):
    """A database written by schema 1 (whole-record versions): migration 2 turns its rows
    into `put` / `delete` operations, and new writes sort after them."""
    from kato_grpc.kb.clickhouse import MIGRATIONS
    from kato_grpc.kb.records import record_columns

    old = ClickHouseStore(clickhouse_url)  # for its connection; the schema-1 database is another
    db = f"`{old.database}_v1`"
    old._execute(f"CREATE DATABASE {db}")
    for statement in MIGRATIONS[0][1]:
        old._execute(statement.format(db=db))
    old._execute(
        f"CREATE TABLE {db}.schema_migrations (version UInt32, description String, applied_at DateTime)"
        " ENGINE = ReplacingMergeTree ORDER BY version"
    )
    old._execute(f"INSERT INTO {db}.schema_migrations (version, description, applied_at) SELECT 1, 'v1', now()")
    abc = learn(ABC.events, [{"joy": 0.1 + 0.2}])
    kept = MemoryStore()
    kept.apply(KB, [abc, abc, abc])
    record = kept.get_pattern(KB, ABC.name)
    xy = learn([["x"], ["y"]])

    def row(key, version, deleted=0, **cols):
        return (
            KB,
            "pattern",
            key,
            version,
            deleted,
            cols.get("events", ""),
            cols.get("frequency", 0),
            cols.get("emotives", ""),
            cols.get("metadata", ""),
            cols.get("affinity_contrib", ""),
            [],
            0,
            0,
        )

    old._execute(
        f"INSERT INTO {db}.kb_writes VALUES",
        [
            row(ABC.name, (7 << 20) | 3, **record_columns(record)),
            row(
                xy.name,
                (5 << 20) | 3,
                events='[["x"],["y"]]',
                frequency=1,
                emotives="[]",
                metadata="{}",
                affinity_contrib="{}",
            ),
            row(xy.name, (6 << 20) | 3, deleted=1),
        ],
    )
    url = clickhouse_url.rsplit("/", 1)[0] + f"/{old.database}_v1"
    store = ClickHouseStore(url)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.get_pattern(KB, ABC.name) == record and store.get_pattern(KB, xy.name) is None
    store.apply(KB, [abc])
    kept.apply(KB, [abc])
    assert ClickHouseStore(url).get_pattern(KB, ABC.name) == kept.get_pattern(KB, ABC.name)  # frequency 4
    for s in (old, store):
        s.close()
