"""A serving process on a big embedded knowledge base: time to open it and answer the
first Predict, its RSS, and Predict latency through gRPC (the anchor workload,
../shared/bench/anchor_workload.py). Prints figures; asserts nothing.

    python loadtest/bench_serving.py --patterns 1000000            # builds the KB once, then serves it
    python loadtest/bench_serving.py --patterns 100000 --engine python

The KB is built once into --data-dir (default build/bench-kb-<patterns>) by learning every
pattern through the store, and reused by later runs. Each run starts a fresh
`kato-grpc serve` on it: "ready" is the time from starting the process to the answer of
the first Predict on that KB (process start, loading the KB's index, the Predict).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench"
KB_ID = "anchor"


def build(data_dir: Path, count: int) -> None:
    sys.path.insert(0, str(BENCH))
    from anchor_workload import patterns

    from kato_grpc.core.learning import pattern_name
    from kato_grpc.core.model import LearnPattern
    from kato_grpc.kb.engines import engine_named
    from kato_grpc.kb.sqlite import SqliteStore

    store = SqliteStore(data_dir, new_index=engine_named("native").new_index)
    if store.view(KB_ID).pattern_count():
        print(f"reusing the knowledge base in {data_dir}")
        return
    print(f"building {count:,} anchor patterns into {data_dir} ...", flush=True)
    start = time.perf_counter()
    batch: list[LearnPattern] = []
    for events in patterns(count):
        events = tuple(tuple(sorted(e)) for e in events)
        batch.append(LearnPattern(pattern_name(events), events, (), (), 5))
        if len(batch) == 20_000:
            store.apply(KB_ID, batch)
            batch = []
    store.apply(KB_ID, batch)
    print(f"built in {time.perf_counter() - start:.0f} s: {store.view(KB_ID).pattern_count():,} patterns")
    store.close()


def process_memory(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount = line.split()[:2]
            values[key] = int(amount) / 1024
    return values["VmRSS:"], values["VmHWM:"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patterns", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--engine", default="native")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data_dir = args.data_dir or ROOT / "build" / f"bench-kb-{args.patterns}"
    build(data_dir, args.patterns)

    sys.path.insert(0, str(BENCH))
    from anchor_workload import query_stm

    from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
    from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc

    started = time.perf_counter()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kato_grpc",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--engine",
            args.engine,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        port = None
        for line in server.stdout:
            if "listening on" in line or "port" in line.lower():
                digits = line.rsplit(":", 1)[-1].strip().split()[0]
                if digits.isdigit():
                    port = int(digits)
                    break
        if port is None:
            raise SystemExit("the server did not report its port")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)])
        stub = api_grpc.KatoServiceStub(channel)
        state = api.ObserveResponse().state
        state.kb_id = KB_ID
        for event in query_stm():
            state = stub.Observe(api.ObserveRequest(state=state, observation={"strings": event}), timeout=600).state
        first = stub.Predict(api.PredictRequest(state=state), timeout=600)
        ready = time.perf_counter() - started
        rss, peak = process_memory(server.pid)
        per_round = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.calls):
                stub.Predict(api.PredictRequest(state=state), timeout=60)
            per_round.append((time.perf_counter() - start) / args.calls * 1000)
        print(f"\n{args.patterns:,} anchor patterns, embedded store (SQLite), --engine {args.engine}")
        print(f"  ready to serve (process start to first Predict answered): {ready:.1f} s")
        print(f"  serving process RSS: {rss:.0f} MiB (peak {peak:.0f} MiB; target <= 300 MiB at 1M)")
        print(
            f"  Predict through gRPC, client-held, 100 predictions: median {statistics.median(per_round):.2f} ms"
            f" ({len(first.predictions)} predictions, first {first.predictions[0].name[:8]}"
            f" similarity {first.predictions[0].similarity:.4f})"
        )
        channel.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
