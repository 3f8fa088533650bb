"""Benchmark of the knowledge-base stores: embedded SQLite vs ClickHouse.

For each size (patterns in ONE knowledge base) and each back end:

- learn, one call at a time: ``--learns`` single-pattern `apply` calls, each its own
  durable commit (what a Learn RPC costs the store), as patterns/s and median latency;
- learn, concurrent (ClickHouse only): ``--writers`` stores (replicas) learning into the
  same KB at once, one pattern per call, aggregate patterns/s;
- learn, bulk: the KB is filled with batches of ``--batch`` patterns per `apply` (one
  commit each; what ObserveSequence with learn_after_each or a migration costs), patterns/s;
- cold load: a fresh store (a replica starting) loads the KB into its in-process index,
  in a child process, with the RSS it adds (the memory one replica's index takes);
- Predict: ``--predicts`` calls of `engine.predict` on an STM of 5 events, through
  `store.view()` (for ClickHouse: including the per-call version check against the
  server), median and p99; plus the same core call on the index alone, and the number of
  candidates the core scored.

Patterns are 5 events of one symbol each, drawn from ``--vocabulary`` symbols; the STM is
a stored pattern's 5 events (so the best prediction exists). ClickHouse is started on
loopback by tests/support/clickhouse.py unless ``--clickhouse-url`` is given. Prints one
table; asserts nothing (DESIGN.md: tests never assert on wall-clock time).

    .venv/bin/python loadtest/bench_kb.py                       # 10k and 100k
    .venv/bin/python loadtest/bench_kb.py --million             # and 1M
    .venv/bin/python loadtest/bench_kb.py --sizes 10000 --backends clickhouse --profile
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from kato_grpc.core import engine  # noqa: E402
from kato_grpc.core.learning import pattern_name  # noqa: E402
from kato_grpc.core.model import LearnPattern  # noqa: E402

KB = "bench"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_learn(rng: random.Random, vocabulary: int) -> LearnPattern:
    events = tuple((f"w{rng.randrange(vocabulary)}",) for _ in range(5))
    return LearnPattern(pattern_name(events), events, ({"joy": rng.random()},), (), 5)


def open_store(backend: str, where: str):
    if backend == "sqlite":
        from kato_grpc.kb.sqlite import SqliteStore

        return SqliteStore(where)
    from kato_grpc.kb.clickhouse import ClickHouseStore

    return ClickHouseStore(where)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def cold_load(backend: str, where: str) -> dict:
    """In a child process: load the KB into a fresh store's index; seconds and RSS added."""
    child = f"""
import gc, json, sys, time
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "loadtest")!r}]
from bench_kb import open_store, rss_bytes
import clickhouse_driver, kato_grpc.kb.clickhouse, kato_grpc.kb.sqlite  # imports are not the index
gc.collect(); before = rss_bytes(); start = time.perf_counter()
store = open_store({backend!r}, {where!r})
count = store.view({KB!r}).pattern_count()
seconds = time.perf_counter() - start
gc.collect()
print(json.dumps({{"seconds": seconds, "rss": rss_bytes() - before, "patterns": count}}))
"""
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def concurrent_learns(where: str, args, rng: random.Random) -> float:
    """Patterns/s of `--writers` ClickHouse stores (replicas) learning into one KB at once."""
    stores = [open_store("clickhouse", where) for _ in range(args.writers)]
    for store in stores:
        store.view(KB)
    per_writer = max(1, args.learns // args.writers)
    work = [[make_learn(rng, args.vocabulary) for _ in range(per_writer)] for _ in stores]
    barrier = threading.Barrier(len(stores) + 1)

    def run(store, learns):
        barrier.wait()
        for effect in learns:
            store.apply(KB, [effect])

    threads = [threading.Thread(target=run, args=(s, w)) for s, w in zip(stores, work, strict=False)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    for store in stores:
        store.close()
    return per_writer * len(stores) / elapsed


@dataclasses.dataclass
class Row:
    backend: str
    size: int
    learn_per_s: float
    learn_ms: float
    concurrent_per_s: float
    bulk_per_s: float
    load_s: float
    index_mb: float
    predict_ms: float
    predict_p99_ms: float
    core_ms: float
    candidates: int
    predictions: int


def bench(backend: str, where: str, size: int, args, profile: bool) -> Row:
    rng = random.Random(size)
    store = open_store(backend, where)
    # Bulk fill up to size - learns, then the one-at-a-time learns on top.
    bulk = size - args.learns
    start = time.perf_counter()
    for first in range(0, bulk, args.batch):
        store.apply(KB, [make_learn(rng, args.vocabulary) for _ in range(min(args.batch, bulk - first))])
    bulk_s = time.perf_counter() - start
    singles = [make_learn(rng, args.vocabulary) for _ in range(args.learns)]
    learn_times = timed(lambda i: store.apply(KB, [singles[i]]), args.learns)
    # Predict on an STM equal to a stored pattern.
    target = store.list_patterns(KB, "", 1)[0] if not singles else store.get_pattern(KB, singles[-1].name)
    state = dataclasses.replace(engine.new_session(KB), stm=target.events)
    index = store.view(KB)
    core_times = timed(lambda i: engine.predict(state, index), args.predicts)
    predict_times = timed(lambda i: engine.predict(state, store.view(KB)), args.predicts)
    result = engine.predict(state, store.view(KB))
    candidates = len(index.candidates([s for e in target.events for s in e]))
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(max(5, args.predicts // 10)):
            engine.predict(state, store.view(KB))
        profiler.disable()
        print(f"\n--- profile: {backend}, {size} patterns, predict ---")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)
    store.close()
    store = index = None  # free them before the next size
    gc.collect()
    loaded = cold_load(backend, where)
    # Last, as it adds patterns: several replicas learning into the KB at once.
    concurrent = concurrent_learns(where, args, rng) if backend == "clickhouse" and args.writers > 1 else 0.0
    return Row(
        backend=backend,
        size=loaded["patterns"],  # = size
        learn_per_s=args.learns / sum(learn_times),
        learn_ms=statistics.median(learn_times) * 1e3,
        concurrent_per_s=concurrent,
        bulk_per_s=bulk / bulk_s if bulk else 0.0,
        load_s=loaded["seconds"],
        index_mb=loaded["rss"] / 2**20,
        predict_ms=statistics.median(predict_times) * 1e3,
        predict_p99_ms=quantile(predict_times, 0.99) * 1e3,
        core_ms=statistics.median(core_times) * 1e3,
        candidates=candidates,
        predictions=len(result.predictions),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--million", action="store_true", help="add 1,000,000 patterns to --sizes")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "clickhouse"], choices=["sqlite", "clickhouse"])
    parser.add_argument("--clickhouse-url", default="", help="an existing server (default: start one on loopback)")
    parser.add_argument("--vocabulary", type=int, default=10_000, help="distinct symbols patterns draw from")
    parser.add_argument("--learns", type=int, default=500, help="one-pattern learns timed one by one")
    parser.add_argument("--writers", type=int, default=4, help="ClickHouse replicas learning concurrently")
    parser.add_argument("--batch", type=int, default=10_000, help="patterns per apply when filling the KB")
    parser.add_argument("--predicts", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="cProfile Predict at each size")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes + ([1_000_000] if args.million else [])))

    server = None
    work = Path(tempfile.mkdtemp(prefix="bench-kb-"))
    if "clickhouse" in args.backends and not args.clickhouse_url:
        from tests.support.clickhouse import ClickHouseServer

        server = ClickHouseServer(work / "clickhouse").start()
        args.clickhouse_url = server.url
    rows = []
    try:
        for size in sizes:
            for backend in args.backends:
                if backend == "sqlite":
                    where = str(work / f"sqlite-{size}")
                else:
                    where = args.clickhouse_url.rsplit("/", 1)[0] + f"/bench_{size}_{uuid.uuid4().hex[:6]}"
                rows.append(bench(backend, where, size, args, args.profile))
                r = rows[-1]
                print(
                    f"[{r.backend} {r.size}] learn {r.learn_per_s:.0f}/s, bulk {r.bulk_per_s:.0f}/s,"
                    f" predict {r.predict_ms:.2f} ms",
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)  # SQLite files and ClickHouse data: GBs at 1M

    print(
        f"\nvocabulary {args.vocabulary}, STM 5 events, {args.learns} timed learns ({args.writers} concurrent"
        f" writers for conc/s), {args.predicts} predicts"
    )
    header = (
        f"{'backend':<10} {'patterns':>9} {'learn/s':>8} {'learn ms':>9} {'conc/s':>7} {'bulk/s':>8} {'load s':>7}"
        f" {'index MB':>9} {'predict ms':>11} {'p99 ms':>8} {'core ms':>8} {'cands':>7} {'preds':>6}"
    )
    print(header)
    for r in rows:
        print(
            f"{r.backend:<10} {r.size:>9} {r.learn_per_s:>8.0f} {r.learn_ms:>9.2f} {r.concurrent_per_s:>7.0f}"
            f" {r.bulk_per_s:>8.0f}"
            f" {r.load_s:>7.1f} {r.index_mb:>9.0f} {r.predict_ms:>11.2f} {r.predict_p99_ms:>8.2f}"
            f" {r.core_ms:>8.2f} {r.candidates:>7} {r.predictions:>6}"
        )
    by = {(r.backend, r.size): r for r in rows}
    for size in sizes:
        s, c = by.get(("sqlite", size)), by.get(("clickhouse", size))
        if s and c:
            print(
                f"{size:>9} patterns: ClickHouse/SQLite learn throughput {c.learn_per_s / s.learn_per_s:.2f}x,"
                f" predict median {c.predict_ms / s.predict_ms:.2f}x"
            )


if __name__ == "__main__":
    main()
