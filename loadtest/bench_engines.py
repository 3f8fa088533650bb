"""Predict on the anchor workload: the native engine against the Python core and the
original KATO's figures (../shared/bench/README.md). Prints medians of several rounds,
process RSS and ratios; asserts nothing.

    python loadtest/bench_engines.py                      # 1k, 10k, 100k patterns
    python loadtest/bench_engines.py --sizes 1000000      # 1M (native only; ~1 min to build)
    python loadtest/bench_engines.py --threads 2          # also: two threads predicting at once

Each size runs in a fresh subprocess; "index MiB" is the RSS the KB's index adds to it
(loadtest/bench_serving.py measures a whole serving process). "Predict" is the
engine's call as the server makes it (`native_predict` returns the predictions as a
native sequence; "+ objects" also builds the 100 Python `Prediction` objects, and
"+ protobuf" the PredictResponse the servicer would send).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"

# The original KATO (v3.10.1), lean transcription, Predict only with GC off, and its
# RSS after building the KB; this project's Python core before the native engine.
ORIGINAL_PREDICT_MS = {1_000: 2.8, 10_000: 36.0, 100_000: 374.0}
ORIGINAL_RSS_MIB = {1_000: 89, 10_000: 109, 100_000: 306}
TARGET_MS = {10_000: 0.5, 100_000: 3.7, 1_000_000: 10.0}


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median_ms(call, rounds: int, calls: int) -> float:
    """Median over `rounds` of the per-call mean of `calls` calls, in ms."""
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        per_round.append((time.perf_counter() - start) / calls * 1000)
    return statistics.median(per_round)


def run_size(size: int, engines: list[str], rounds: int, threads: int) -> dict:
    """One size, in this process: build each engine's KB, time Predict."""
    sys.path.insert(0, str(BENCH))
    from anchor_workload import patterns, query_stm

    from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
    from kato_grpc.core.config import SessionConfig
    from kato_grpc.core.learning import pattern_name
    from kato_grpc.core.model import PatternRecord
    from kato_grpc.kb.engines import engine_named
    from kato_grpc.server import convert

    out: dict = {"size": size}
    frequency: dict[str, int] = {}
    events_of: dict[str, tuple] = {}
    for events in patterns(size):
        events = tuple(tuple(sorted(e)) for e in events)
        name = pattern_name(events)
        frequency[name] = frequency.get(name, 0) + 1
        events_of.setdefault(name, events)
    stm = tuple(tuple(sorted(e)) for e in query_stm())
    config = SessionConfig()
    for name in engines:
        engine = engine_named(name)
        gc.collect()
        before = rss_mib()
        kb = engine.new_index()
        start = time.perf_counter()
        kb.put_patterns(PatternRecord(n, events_of[n], frequency[n]) for n in sorted(events_of))
        build_s = time.perf_counter() - start
        gc.collect()
        index_mib = rss_mib() - before
        predict = engine.predictor
        gc.disable()
        calls = max(1, min(200, int(20_000 / max(size, 1) * 10)))
        result = predict(stm, config, kb)

        def with_objects():
            tuple(predict(stm, config, kb).predictions)

        def with_protobuf():
            response = api.PredictResponse()
            r = predict(stm, config, kb)
            convert.predictions_to_proto(r.predictions, response, "predictions")
            convert.future_potentials_to_proto(r.future_potentials, response, "future_potentials")
            response.SerializeToString()

        figures = {
            "build_s": build_s,
            "index_mib": index_mib,
            "predictions": len(result.predictions),
            "first_similarity": result.predictions[0].similarity if result.predictions else None,
            "predict_ms": median_ms(lambda: predict(stm, config, kb), rounds, calls),
            "objects_ms": median_ms(with_objects, rounds, max(1, calls // 2)),
            "protobuf_ms": median_ms(with_protobuf, rounds, max(1, calls // 2)),
        }
        if threads > 1:
            # Throughput of `threads` threads predicting at once vs one thread.
            def loop(n):
                for _ in range(n):
                    predict(stm, config, kb)

            n = calls * 4
            start = time.perf_counter()
            loop(n)
            one = n / (time.perf_counter() - start)
            workers = [threading.Thread(target=loop, args=(n,)) for _ in range(threads)]
            start = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            many = threads * n / (time.perf_counter() - start)
            figures["threads"] = {"one_per_s": one, "many_per_s": many, "speedup": many / one}
        gc.enable()
        out[name] = figures
        kb = None  # free this engine's index before the next one is built
        gc.collect()
    return out


def report(results: list[dict]) -> None:
    print("\nPredict on the anchor workload (medians; ratios against the lean original's Predict, GC off)")
    print(
        f"{'patterns':>9} {'engine':>7} {'build s':>8} {'index MiB':>9} {'Predict ms':>11} {'+objects':>9}"
        f" {'+protobuf':>10} {'x original':>11} {'target':>8}"
    )
    for r in results:
        size = r["size"]
        for name in ("native", "python"):
            f = r.get(name)
            if not f:
                continue
            original = ORIGINAL_PREDICT_MS.get(size)
            ratio = f"{original / f['predict_ms']:.0f}x" if original else "-"
            target = TARGET_MS.get(size)
            verdict = ("met" if f["predict_ms"] <= target else "missed") if target and name == "native" else ""
            print(
                f"{size:>9,} {name:>7} {f['build_s']:>8.1f} {f['index_mib']:>9.0f} {f['predict_ms']:>11.3f}"
                f" {f['objects_ms']:>9.3f} {f['protobuf_ms']:>10.3f} {ratio:>11} {verdict:>8}"
            )
            if "threads" in f:
                t = f["threads"]
                print(
                    f"{'':>9} {'':>7} threads: {t['one_per_s']:.0f}/s on one, {t['many_per_s']:.0f}/s on several"
                    f" ({t['speedup']:.2f}x)"
                )
        if size in ORIGINAL_RSS_MIB:
            print(f"{'':>9} original's RSS after building: {ORIGINAL_RSS_MIB[size]} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--engines", nargs="+", default=None, help="default: native, plus python up to 100k")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_size(args.one, args.engines, args.rounds, args.threads)))
        return
    results = []
    for size in args.sizes:
        engines = args.engines or (["native", "python"] if size <= 100_000 else ["native"])
        command = [
            sys.executable,
            __file__,
            "--one",
            str(size),
            "--rounds",
            str(args.rounds),
            "--threads",
            str(args.threads),
            "--engines",
            *engines,
        ]
        print(f"running {size:,} patterns ({', '.join(engines)})...", flush=True)
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            print(done.stderr)
            raise SystemExit(done.returncode)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report(results)


if __name__ == "__main__":
    main()
