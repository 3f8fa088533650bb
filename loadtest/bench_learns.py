"""Acknowledged learns per second: ClickHouse (group commit) against the embedded SQLite store.

`--threads` threads call `store.apply(kb, [one learn])` at once, each call returning only
once the store has the learn (SQLite: committed with synchronous=FULL; ClickHouse: its
INSERT returned), as the servicer's executor threads do for concurrent Learn RPCs. Every
pattern is new (5 events of one symbol). Each configuration runs `--runs` times on a
fresh KB; the medians are printed, with the ClickHouse / SQLite ratio:

- sqlite: one store (one process's embedded KB);
- clickhouse, 1 replica: one `ClickHouseStore`;
- clickhouse, 2 replicas: two processes with a store each on one database, `--threads`
  threads each, learning into the same KB at once; the figure is per replica
  (all learns / the slower one's time / 2).

ClickHouse is started on loopback by tests/support/clickhouse.py unless --clickhouse-url
is given. Asserts nothing (DESIGN.md: tests never assert on wall-clock time).

    .venv/bin/python loadtest/bench_learns.py
    .venv/bin/python loadtest/bench_learns.py --threads 64 --learns 4000 --runs 5
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from kato_grpc.core.learning import pattern_name  # noqa: E402
from kato_grpc.core.model import LearnPattern  # noqa: E402


def make_learns(count: int, seed: int) -> list[LearnPattern]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        events = tuple((f"w{rng.randrange(100_000)}",) for _ in range(5))
        out.append(LearnPattern(pattern_name(events), events, ({"joy": rng.random()},), (), 5))
    return out


def learns_per_second(stores: list, kb_id: str, learns: list[LearnPattern], threads: int) -> float:
    """All `learns` through `threads` threads spread over `stores`; acknowledged learns/s."""
    for store in stores:
        store.view(kb_id)  # loaded before the clock starts
    shares = [learns[t::threads] for t in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def run(store, share):
        barrier.wait()
        for effect in share:
            store.apply(kb_id, [effect])

    workers = [threading.Thread(target=run, args=(stores[t % len(stores)], shares[t])) for t in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return len(learns) / (time.perf_counter() - start)


def _replica(url: str, learns: list[LearnPattern], threads: int, barrier, results) -> None:
    """One replica process of the 2-replica run: its figure and INSERT count."""
    from kato_grpc.kb.clickhouse import ClickHouseStore

    store = ClickHouseStore(url)
    store.view("bench")
    barrier.wait()
    start = time.perf_counter()
    learns_per_second([store], "bench", learns, threads)
    results.put((time.perf_counter() - start, store.commits))
    store.close()


def two_replicas(url: str, learns: list[LearnPattern], threads: int) -> tuple[float, float]:
    """(acked learns/s per replica, learns per INSERT) of two replica processes at once."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_replica, args=(url, learns[i::2], threads, barrier, results)) for i in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    elapsed = max(seconds for seconds, _ in outcomes)
    return len(learns) / elapsed / 2, len(learns) / sum(commits for _, commits in outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=64, help="concurrent callers (per replica)")
    parser.add_argument("--learns", type=int, default=3000, help="learns per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clickhouse-url", default="", help="an existing server (default: start one on loopback)")
    args = parser.parse_args()

    from kato_grpc.kb.clickhouse import ClickHouseStore
    from kato_grpc.kb.sqlite import SqliteStore

    work = Path(tempfile.mkdtemp(prefix="bench-learns-"))
    server = None
    if not args.clickhouse_url:
        from tests.support.clickhouse import ClickHouseServer

        server = ClickHouseServer(work / "clickhouse").start()
        args.clickhouse_url = server.url
    base = args.clickhouse_url.rsplit("/", 1)[0]
    figures: dict[str, list[float]] = {"sqlite": [], "clickhouse": [], "clickhouse x2": []}
    commits: dict[str, list[float]] = {"clickhouse": [], "clickhouse x2": []}
    try:
        for run in range(args.runs):
            learns = make_learns(args.learns, run)
            sqlite = SqliteStore(work / f"sqlite-{run}")
            figures["sqlite"].append(learns_per_second([sqlite], "bench", learns, args.threads))
            sqlite.close()
            url = f"{base}/bench_{uuid.uuid4().hex[:8]}"
            store = ClickHouseStore(url)
            figures["clickhouse"].append(learns_per_second([store], "bench", learns, args.threads))
            commits["clickhouse"].append(args.learns / store.commits)
            store.close()
            rate, per_insert = two_replicas(f"{base}/bench_{uuid.uuid4().hex[:8]}", learns, args.threads)
            figures["clickhouse x2"].append(rate)
            commits["clickhouse x2"].append(per_insert)
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in figures.items()), flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    median = {k: statistics.median(v) for k, v in figures.items()}
    print(f"\n{args.learns} learns per run, {args.threads} concurrent callers, median of {args.runs} runs")
    print(f"{'store':<28} {'acked learns/s':>15} {'learns/INSERT':>14} {'vs SQLite':>10}")
    print(f"{'sqlite (embedded)':<28} {median['sqlite']:>15.0f} {'':>14} {1:>10.2f}")
    print(
        f"{'clickhouse, 1 replica':<28} {median['clickhouse']:>15.0f} {statistics.median(commits['clickhouse']):>14.1f}"
        f" {median['clickhouse'] / median['sqlite']:>10.2f}"
    )
    print(
        f"{'clickhouse, 2 replicas (each)':<28} {median['clickhouse x2']:>15.0f}"
        f" {statistics.median(commits['clickhouse x2']):>14.1f} {median['clickhouse x2'] / median['sqlite']:>10.2f}"
    )


if __name__ == "__main__":
    main()
