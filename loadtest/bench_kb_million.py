"""A million-pattern knowledge base on ClickHouse: how long a replica takes to open it and
serve its first Predict, its RSS, and Predict latency once loaded.

The KB is the anchor workload (../shared/bench/anchor_workload.py, 1M patterns by
default), each pattern learnt once (a `learn` operation per pattern, written straight
into the store's tables in INSERTs of `--chunk` rows, the way a million Learn calls
would have left them). Then, in a fresh child process per measurement (so RSS is the
replica's own):

- open: a new `ClickHouseStore` streams the KB's operations into its in-process index
  (whatever index class `kato_grpc.kb.clickhouse` builds), seconds and RSS after;
- first Predict: the anchor query (pattern 0's first 5 events) right after opening;
- Predict, loaded: the median and p90 of `--predicts` more, each through `store.view()`
  (so including the per-call catch-up query to ClickHouse), and of Predict alone on the
  same index (what the embedded store costs: it has no per-call query).

`--engine python` (default) or `native` picks the index class and Predict, as
`kato-grpc serve --engine` does.

Asserts nothing; prints one table. With the pure-Python index the figures are the
Python engine's; the native index changes load time, RSS and Predict alike.

    .venv/bin/python loadtest/bench_kb_million.py                   # 1M patterns
    .venv/bin/python loadtest/bench_kb_million.py --patterns 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT.parent.parent / "shared" / "bench"), "/work/shared/bench"]

KB = "anchor"


def anchor_events(count: int):
    """The anchor patterns as a session would store them (symbols sorted in each event)."""
    from anchor_workload import patterns

    for events in patterns(count):
        yield tuple(tuple(sorted(event)) for event in events)


def fill(url: str, count: int, chunk: int) -> float:
    """Write `count` anchor patterns as `learn` operations; seconds taken."""
    from kato_grpc.core.learning import pattern_name
    from kato_grpc.core.model import LearnPattern
    from kato_grpc.kb.clickhouse import ClickHouseStore
    from kato_grpc.kb.clickhouse_log import ROWS_PER_VERSION, WriteRow, make_version
    from kato_grpc.kb.ops import PatternOp

    store = ClickHouseStore(url)
    start = time.perf_counter()
    rows = []
    for i, events in enumerate(anchor_events(count)):
        op = PatternOp.learn(LearnPattern(pattern_name(events), events, (), (), 5), {})
        version = make_version(i // ROWS_PER_VERSION + 1, 0)  # as the store spreads a big INSERT
        rows.append(WriteRow(KB, "pattern", op.name, version, i % ROWS_PER_VERSION, op="learn", **op.columns()))
        if len(rows) == chunk:
            store._insert(rows)
            rows = []
    if rows:
        store._insert(rows)
    store.close()
    return time.perf_counter() - start


CHILD = """
import gc, json, statistics, sys, time
sys.path[:0] = {paths!r}
def rss():
    with open("/proc/self/statm") as f:
        import os
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
import dataclasses
from kato_grpc.core import engine
from kato_grpc.kb.clickhouse import ClickHouseStore
from kato_grpc.kb.engines import engine_named
from bench_kb_million import KB, anchor_events
chosen = engine_named({engine!r})
stm = next(anchor_events(1))[:5]
state = dataclasses.replace(engine.new_session(KB), stm=stm)
gc.collect(); before = rss(); start = time.perf_counter()
store = ClickHouseStore({url!r}, new_index=chosen.new_index)
index = store.view(KB)
opened = time.perf_counter() - start
result = engine.predict(state, store.view(KB), chosen.predictor)
first = time.perf_counter() - start
gc.collect()
def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.9)]
served = timed(lambda: engine.predict(state, store.view(KB), chosen.predictor), {predicts})
core = timed(lambda: engine.predict(state, index, chosen.predictor), {predicts})
print(json.dumps({{"patterns": index.pattern_count(), "index": type(index).__module__ + "." + type(index).__name__,
    "open_s": opened, "first_predict_s": first, "rss_mb": rss() / 2**20, "rss_added_mb": (rss() - before) / 2**20,
    "top": result.predictions[0].name if result.predictions else None, "predictions": len(result.predictions),
    "served_ms": [x * 1e3 for x in served], "core_ms": [x * 1e3 for x in core]}}))
"""


def measure(url: str, predicts: int, engine: str) -> dict:
    code = CHILD.format(
        paths=[str(ROOT), str(ROOT / "loadtest"), *sys.path[2:4]], url=url, predicts=predicts, engine=engine
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patterns", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=20_000, help="operations per INSERT when filling")
    parser.add_argument("--predicts", type=int, default=20)
    parser.add_argument("--opens", type=int, default=2, help="replicas opened one after the other")
    parser.add_argument(
        "--engine",
        default="python",
        choices=["python", "native"],
        help="the index and Predict the replica uses (kato_grpc/kb/engines.py)",
    )
    parser.add_argument("--clickhouse-url", default="", help="an existing server (default: start one on loopback)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-million-"))
    server = None
    try:
        if not args.clickhouse_url:
            from tests.support.clickhouse import ClickHouseServer

            server = ClickHouseServer(work / "clickhouse").start()
            args.clickhouse_url = server.url
        url = args.clickhouse_url.rsplit("/", 1)[0] + f"/million_{args.patterns}"
        seconds = fill(url, args.patterns, args.chunk)
        print(
            f"filled {args.patterns} patterns in {seconds:.0f} s ({args.patterns / seconds:.0f} patterns/s)", flush=True
        )
        runs = [measure(url, args.predicts, args.engine) for _ in range(args.opens)]
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{args.patterns} anchor patterns on ClickHouse, index {runs[0]['index']},"
        f" {runs[0]['predictions']} predictions (top {runs[0]['top'][:12]}…)"
    )
    print(
        f"{'replica':>8} {'open s':>8} {'1st predict s':>14} {'RSS MB':>8} {'index MB':>9}"
        f" {'predict ms p50/p90':>19} {'core ms p50/p90':>16}"
    )
    for i, r in enumerate(runs, start=1):
        print(
            f"{i:>8} {r['open_s']:>8.1f} {r['first_predict_s']:>14.1f} {r['rss_mb']:>8.0f} {r['rss_added_mb']:>9.0f}"
            f" {r['served_ms'][0]:>9.1f}/{r['served_ms'][1]:<9.1f} {r['core_ms'][0]:>7.1f}/{r['core_ms'][1]:<8.1f}"
        )


if __name__ == "__main__":
    main()
