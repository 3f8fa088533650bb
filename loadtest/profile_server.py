"""Where a scenario's server time goes: cProfile of an in-process server under ghz load.

Starts redis-server and the server *in this process* (``create_server`` from
kato_grpc.server.app, one asyncio loop, so every handler runs on the profiled thread),
seeds the knowledge base like loadtest/run.py, drives one scenario with ghz for
``--seconds`` while cProfile runs, and prints the top functions by own time and by
cumulative time. Profiling slows the server down (figures here are not throughputs).

    .venv/bin/python loadtest/profile_server.py --scenario observe-client-pred
    .venv/bin/python loadtest/profile_server.py --scenario observe-sessions-1kb --top 40
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as lt

from kato_grpc.server.app import build_stores, create_server
from kato_grpc.server.settings import Settings

SCENARIOS = (
    "observe-client-nopred",
    "observe-client-pred",
    "observe-sessions-1kb",
    "observe-sessions-1kb-pred",
    "learn-client-1kb",
    "baseline",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="observe-client-pred")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--patterns", type=int, default=10_000)
    parser.add_argument("--vocabulary", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--save", type=Path, default=None, help="write the raw pstats file here")
    args = parser.parse_args()

    data = lt.Data(args.patterns, args.vocabulary)
    with tempfile.TemporaryDirectory(prefix="kato-profile-") as tmp:
        work = Path(tmp)
        protoset = work / "protoset.binpb"
        lt.build_protoset(protoset)
        redis = lt.Redis(work / "redis")
        settings = Settings(
            host="127.0.0.1", port=0, data_dir=str(work / "data"), redis_url=redis.url, log_level="WARNING"
        )
        settings = replace(settings, limits=replace(settings.limits, max_stm_events=6))
        profiler = cProfile.Profile()
        ready, go, done = threading.Event(), threading.Event(), threading.Event()
        box: dict = {}

        async def serve() -> None:
            stores = build_stores(settings)
            server, port, _ = await create_server(settings, stores)
            await server.start()
            box["target"] = f"127.0.0.1:{port}"
            ready.set()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, go.wait)
            profiler.enable()
            await loop.run_in_executor(None, done.wait)
            profiler.disable()
            await server.stop(1)
            stores.close()

        thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        thread.start()
        ready.wait(30)
        target = box["target"]
        try:
            print(f"server {target}; seeding {args.patterns:,} patterns", flush=True)
            lt.seed_kb(target, lt.KB10K, data.kb_patterns)
            s = args.scenario
            if s == "baseline":
                call, payload = lt.HEALTH, {}
            elif s.startswith("observe-client"):
                call, payload = lt.KATO + "Observe", data.observe_client(1000, s.endswith("-pred"))
            elif s.startswith("observe-sessions"):
                ids = lt.create_sessions(target, [lt.KB10K], 100, s.endswith("-pred"), data)
                call, payload = lt.KATO + "Observe", data.by_session(ids, 10)
            else:
                call, payload = lt.KATO + "Learn", data.learn_client(1000, ["learn-1"])
            data_file = work / "data.json"
            if isinstance(payload, list):
                payload = lt.signed_states(payload, work / "data")
            data_file.write_text(json.dumps(payload))
            go.set()
            out = subprocess.run(
                [
                    lt.find_ghz(),
                    "--insecure",
                    "--protoset",
                    str(protoset),
                    "--call",
                    call,
                    "--data-file",
                    str(data_file),
                    "-c",
                    str(args.concurrency),
                    "--connections",
                    str(max(1, args.concurrency // 10)),
                    "-z",
                    f"{args.seconds}s",
                    "--duration-stop",
                    "wait",
                    "-O",
                    "json",
                    target,
                ],
                capture_output=True,
                text=True,
            )
            done.set()
            thread.join(30)
            report = json.loads(out.stdout)
            print(
                f"{s}: {report['count']:,} calls in {report['total'] / 1e9:.1f}s under cProfile "
                f"({report['rps']:,.0f}/s), status {report['statusCodeDistribution']}"
            )
        finally:
            done.set()
            redis.stop()
    if args.save:
        profiler.dump_stats(str(args.save))
    for key in ("tottime", "cumulative"):
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats(key).print_stats(args.top)
        print(f"\n=== by {key} ===")
        print("\n".join(line for line in stream.getvalue().splitlines()[6:] if line.strip()))


if __name__ == "__main__":
    main()
