"""Exact counts under contention: two replicas (two `ClickHouseStore`s on one database)
learning, updating and deleting the same few patterns at once, from many threads.

The write order is the one the store documents (docs/clickhouse.md): every operation
has a (version, seq) key, a pattern is the fold of its operations in that order. These
tests check it against what was acknowledged: every acknowledged learn is stored once,
the frequency counts the acknowledged learns ordered after the pattern's last delete,
the emotive window holds the last `persistence` of their emotives in that order, and
every replica (and a freshly started one) shows exactly that.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from kato_grpc.core.errors import NotFoundError
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import LearnPattern
from kato_grpc.kb.clickhouse import ClickHouseStore

pytestmark = pytest.mark.timeout(300)
KB = "hot"
PERSISTENCE = 5
EVENTS = [((f"p{i}",), ("q",), (f"r{i % 2}",)) for i in range(3)]
NAMES = [pattern_name(events) for events in EVENTS]


def learn(which: int, tag: int) -> LearnPattern:
    """A learn of pattern `which` whose emotive value `tag` identifies it."""
    return LearnPattern(NAMES[which], EVENTS[which], ({"id": float(tag)},), ({"by": f"t{tag}"},), PERSISTENCE)


def snapshot(store):
    return (store.list_patterns(KB, "", 100), store.symbol_stats(KB), store.symbol_affinity(KB, None))


def ops_in_write_order(store) -> dict[str, list[tuple[str, float | None]]]:
    """Per pattern, its stored operations in write order: (kind, the learn's id)."""
    rows = store._execute(
        f"SELECT name, CAST(op AS String), emotives FROM {store._t('pattern_ops')}"
        " WHERE kb_id = %(kb)s ORDER BY name, version, seq",
        {"kb": KB},
    )
    out: dict[str, list] = {name: [] for name in NAMES}
    for name, kind, emotives in rows:
        out[name].append((kind, float(emotives.split(":")[1].rstrip("}]")) if kind == "learn" else None))
    return out


@pytest.fixture
def replicas(clickhouse_url):
    stores = [ClickHouseStore(clickhouse_url), ClickHouseStore(clickhouse_url)]
    yield stores
    for store in stores:
        store.close()


def run_concurrently(replicas, writes_per_thread: int, threads_per_replica: int, write) -> None:
    """`write(store, thread, i)` from `threads_per_replica` threads on each replica at once."""
    barrier = threading.Barrier(len(replicas) * threads_per_replica)

    def worker(store, thread):
        barrier.wait()
        for i in range(writes_per_thread):
            write(store, thread, i)

    with ThreadPoolExecutor(len(replicas) * threads_per_replica) as pool:
        futures = [
            pool.submit(worker, store, r * threads_per_replica + t)
            for r, store in enumerate(replicas)
            for t in range(threads_per_replica)
        ]
        for future in futures:
            future.result()


def test_every_acknowledged_learn_counts_across_replicas(replicas, clickhouse_url):
    acked: dict[str, list[float]] = {name: [] for name in NAMES}
    lock = threading.Lock()

    def write(store, thread, i):
        tag = thread * 1000 + i
        which = (thread + i) % len(NAMES)
        store.apply(KB, [learn(which, tag)])
        with lock:
            acked[NAMES[which]].append(float(tag))

    run_concurrently(replicas, writes_per_thread=40, threads_per_replica=6, write=write)  # 480 learns
    assert sum(len(tags) for tags in acked.values()) == 480
    assert sum(store.commits for store in replicas) < 480  # concurrent learns shared INSERTs
    fresh = ClickHouseStore(clickhouse_url)
    ordered = ops_in_write_order(fresh)
    for name in NAMES:
        learned = [tag for kind, tag in ordered[name]]
        assert sorted(learned) == sorted(acked[name])  # each acknowledged learn stored once
        record = fresh.get_pattern(KB, name)
        assert record.frequency == len(acked[name])
        assert [m["id"] for m in record.emotives] == learned[-PERSISTENCE:]
        assert record.metadata == {"by": tuple(sorted(f"t{int(tag)}" for tag in acked[name]))}
    stats = {symbol: freq for symbol, freq, _ in fresh.symbol_stats(KB).symbols}
    assert stats["q"] == 480
    assert snapshot(replicas[0]) == snapshot(replicas[1]) == snapshot(fresh)
    fresh.close()


def test_deletes_and_updates_racing_learns_follow_the_write_order(replicas, clickhouse_url):
    acked_learns: set[float] = set()
    acked_deletes = 0
    lock = threading.Lock()

    def write(store, thread, i):
        nonlocal acked_deletes
        rng = random.Random(thread * 7919 + i)
        which = rng.randrange(len(NAMES))
        tag = thread * 1000 + i
        action = rng.random()
        try:
            if action < 0.1:
                store.delete_pattern(KB, NAMES[which])
                with lock:
                    acked_deletes += 1
                return
            if action < 0.2:
                store.update_pattern(KB, NAMES[which], metadata={"updated": [f"u{tag}"]})
                return
        except NotFoundError:
            return  # not there at the time: nothing written
        store.apply(KB, [learn(which, tag)])
        with lock:
            acked_learns.add(float(tag))

    run_concurrently(replicas, writes_per_thread=40, threads_per_replica=5, write=write)
    fresh = ClickHouseStore(clickhouse_url)
    ordered = ops_in_write_order(fresh)
    assert {tag for ops in ordered.values() for kind, tag in ops if kind == "learn"} == acked_learns
    assert sum(kind == "delete" for ops in ordered.values() for kind, _ in ops) == acked_deletes > 0
    for name in NAMES:
        ops = ordered[name]
        last_delete = max((i for i, (kind, _) in enumerate(ops) if kind == "delete"), default=-1)
        after = [tag for kind, tag in ops[last_delete + 1 :] if kind == "learn"]
        record = fresh.get_pattern(KB, name)
        if not after:
            assert record is None
            continue
        assert record.frequency == len(after)
        assert [m["id"] for m in record.emotives] == after[-PERSISTENCE:]
    assert snapshot(replicas[0]) == snapshot(replicas[1]) == snapshot(fresh)
    fresh.close()


def test_a_learn_after_an_acknowledged_delete_recreates_the_pattern(replicas):
    a, b = replicas
    a.apply(KB, [learn(0, 1), learn(0, 2)])
    b.delete_pattern(KB, NAMES[0])
    a.apply(KB, [learn(0, 3)])
    for store in replicas:
        record = store.get_pattern(KB, NAMES[0])
        assert (record.frequency, record.emotives, record.metadata) == (1, ({"id": 3.0},), {"by": ("t3",)})
    with pytest.raises(NotFoundError):
        b.update_pattern(KB, NAMES[1], frequency=3)


def test_a_failed_call_in_a_group_commit_fails_alone(replicas):
    a, _ = replicas
    results: dict[str, object] = {}

    def call(label, fn):
        try:
            results[label] = fn()
        except NotFoundError as exc:
            results[label] = exc

    a.apply(KB, [learn(0, 1)])
    calls = [
        ("learn", lambda: a.apply(KB, [learn(1, 2)])),
        ("update-missing", lambda: a.update_pattern(KB, NAMES[2], frequency=2)),
        ("update", lambda: a.update_pattern(KB, NAMES[0], frequency=9)),
    ]
    threads = [threading.Thread(target=call, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results["update-missing"], NotFoundError)
    assert results["update"].frequency == 9 and results["learn"] is None
    assert a.get_pattern(KB, NAMES[1]).frequency == 1 and a.get_pattern(KB, NAMES[2]) is None
