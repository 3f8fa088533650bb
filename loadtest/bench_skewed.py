"""Predict on knowledge bases whose symbol frequencies are skewed (issue 21): a few
symbols occur in most patterns, a long tail in few, as in natural streams. Beside the
anchor workload (bench_engines.py, uniform symbols, the comparison with the original),
this is the case where most patterns pass the default threshold. Prints medians of
several rounds, what each stage of the native search discards, and the index's
memory; asserts nothing.

    python loadtest/bench_skewed.py                          # 10k and 100k patterns
    python loadtest/bench_skewed.py --sizes 1000000          # 1M (~1 min to generate and build)
    python loadtest/bench_skewed.py --thresholds 0.1 0.3 0.6 --engines native python

The workload (`patterns`, `query_stm`), fixed by SEED so each size is a prefix of the next:

- vocabulary: 5,000 symbols "z0000".."z4999"; symbol r (0-based rank) is drawn with
  weight 1/(r+1)^1.0 (Zipf's law, exponent 1.0): "z0000" is in ~11% of all draws and in
  ~85% of the patterns, the top 10 symbols make up a third of all draws;
- pattern 0 (the query's source): 7 events of 2-3 distinct symbols, its first two events
  drawn from the 20 most common symbols only;
- patterns 1..N-1: 4-9 events, each of 1-4 distinct symbols;
- query: pattern 0's first 5 events, so its first symbols are common ones; session
  defaults except the threshold (max_predictions 100, so the ensemble is 300 strong).

Each size runs in a fresh subprocess; "index MiB" is the RSS the KB's index adds.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

from bench_engines import median_ms, rss_mib  # the same measures as the anchor bench

SEED = 20261208
VOCABULARY = 5000
EXPONENT = 1.0

# Targets of issue 21 (native, default threshold).
TARGET_MS = {10_000: 2.0, 100_000: 15.0}


def _symbol(rank: int) -> str:
    return f"z{rank:04d}"


_CUMULATIVE = []
_total = 0.0
for _rank in range(VOCABULARY):
    _total += 1.0 / (_rank + 1) ** EXPONENT
    _CUMULATIVE.append(_total)


def _draw(rng: random.Random, top: int = VOCABULARY) -> int:
    """A symbol rank by Zipf's law, among the `top` most common."""
    return bisect.bisect_right(_CUMULATIVE, rng.random() * _CUMULATIVE[top - 1])


def _event(rng: random.Random, size: int, top: int = VOCABULARY) -> list[str]:
    ranks: list[int] = []
    while len(ranks) < size:
        rank = _draw(rng, top)
        if rank not in ranks:
            ranks.append(rank)
    return [_symbol(r) for r in ranks]


def patterns(count: int, seed: int = SEED) -> Iterator[list[list[str]]]:
    """The first `count` patterns, each a list of events (lists of symbols)."""
    rng = random.Random(seed)
    yield [_event(rng, rng.randint(2, 3), top=20 if e < 2 else VOCABULARY) for e in range(7)]
    for _ in range(count - 1):
        yield [_event(rng, rng.randint(1, 4)) for _ in range(rng.randint(4, 9))]


def query_stm(seed: int = SEED) -> list[list[str]]:
    """The 5 events to observe before predicting (pattern 0's first 5 events)."""
    return next(patterns(1, seed))[:5]


def run_size(size: int, engines: list[str], thresholds: list[float], rounds: int) -> dict:
    """One size, in this process: build each engine's KB, time Predict at each threshold."""
    from kato_grpc.core.config import SessionConfig
    from kato_grpc.core.learning import pattern_name
    from kato_grpc.core.model import PatternRecord
    from kato_grpc.kb.engines import engine_named

    out: dict = {"size": size, "engines": {}}
    frequency: dict[str, int] = {}
    events_of: dict[str, tuple] = {}
    for events in patterns(size):
        events = tuple(tuple(sorted(e)) for e in events)
        name = pattern_name(events)
        frequency[name] = frequency.get(name, 0) + 1
        events_of.setdefault(name, events)
    stm = tuple(tuple(sorted(e)) for e in query_stm())
    out["query_symbols"] = sum(map(len, stm))
    for engine_name in engines:
        engine = engine_named(engine_name)
        gc.collect()
        before = rss_mib()
        kb = engine.new_index()
        start = time.perf_counter()
        kb.put_patterns(PatternRecord(n, events_of[n], frequency[n]) for n in sorted(events_of))
        build_s = time.perf_counter() - start
        gc.collect()
        figures: dict = {"build_s": build_s, "index_mib": rss_mib() - before, "by_threshold": {}}
        predict = engine.predictor
        gc.disable()
        for threshold in thresholds:
            config = replace(SessionConfig(), recall_threshold=threshold)
            result = predict(stm, config, kb)
            calls = max(1, min(100, int(200_000 / size))) if engine_name == "native" else 1
            row = {
                "predict_ms": median_ms(lambda: predict(stm, config, kb), rounds, calls),
                "predictions": len(result.predictions),
                "first_similarity": result.predictions[0].similarity if result.predictions else None,
            }
            stats = getattr(kb, "search_stats", None)
            if stats is not None:
                row["stages"] = stats(stm, config)
            figures["by_threshold"][str(threshold)] = row
        gc.enable()
        out["engines"][engine_name] = figures
        kb = None  # free this engine's index before the next one is built
        gc.collect()
    return out


STAGES = (
    ("candidates", "candidates"),
    ("overlap_threshold", "-overlap<thr"),
    ("bound", "-bound"),
    ("filtered", "-filters"),
    ("matched", "matched"),
    ("threshold", "-lcs<thr"),
    ("block_bound", "-block bound"),
    ("pruned", "-pruned"),
    ("ensemble", "ensemble"),
)


def report(results: list[dict]) -> None:
    print(
        f"\nPredict on Zipf-skewed knowledge bases (exponent {EXPONENT}, {VOCABULARY:,} symbols; medians)."
        "\nStages: candidates (sharing a symbol with the query), those dropped because their symbol"
        " overlap cannot reach the threshold, those never matched because their bound fell below the"
        " ensemble's worst member, by filters; then matched (the LCS, the first block, the rest when"
        " needed), of which below the threshold, dropped by the bound that counts the blocks the first"
        " block implies, and pruned (not in the ensemble)."
    )
    header = f"{'patterns':>9} {'engine':>7} {'thr':>4} {'index MiB':>9} {'Predict ms':>11} {'target':>7}"
    print(header + "".join(f" {label:>14}" for _, label in STAGES))
    for r in results:
        size = r["size"]
        for name, f in r["engines"].items():
            for threshold, row in f["by_threshold"].items():
                target = TARGET_MS.get(size) if name == "native" and float(threshold) == 0.1 else None
                verdict = ("met" if row["predict_ms"] <= target else "missed") if target else ""
                stages = row.get("stages") or {}
                print(
                    f"{size:>9,} {name:>7} {threshold:>4} {f['index_mib']:>9.0f} {row['predict_ms']:>11.3f}"
                    f" {verdict:>7}" + "".join(f" {stages.get(key, '-'):>14}" for key, _ in STAGES)
                )
        print(f"{'':>9} query of {r['query_symbols']} symbols")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--engines", nargs="+", default=["native"])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.3, 0.6])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_size(args.one, args.engines, args.thresholds, args.rounds)))
        return
    results = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", str(size), "--rounds", str(args.rounds)]
        command += ["--engines", *args.engines, "--thresholds", *map(str, args.thresholds)]
        print(f"running {size:,} patterns ({', '.join(args.engines)})...", flush=True)
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            print(done.stderr)
            raise SystemExit(done.returncode)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report(results)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
