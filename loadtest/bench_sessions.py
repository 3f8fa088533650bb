"""Benchmark: Observe with server-held sessions (in Redis) vs client-held state.

Starts a redis-server (unless ``--redis-url`` is given) and one ``kato-grpc serve``
process on loopback, seeds a knowledge base, then for each round drives Observe calls
from ``--sessions`` concurrent sessions on that one kb id for ``--seconds`` in each mode:

- client-held: every request carries the `SessionState`; the response's state is kept.
- server-held: every request carries a `session_id`; the server loads the state from
  Redis and writes it back with a compare-and-set.

Both modes hit the same server, the same KB and the same STM size (the server's
``--max-stm-events`` keeps it at ``--stm`` events; sessions are warmed up to it before
measuring). The client is grpc.aio in ``--client-procs`` processes, each with a few
channels. Prints throughput and p50 / p99 latency per mode and round, and the ratio
server-held / client-held of throughputs (median over rounds). Asserts nothing.

    .venv/bin/python loadtest/bench_sessions.py --seconds 10 --rounds 3
    .venv/bin/python loadtest/bench_sessions.py --seconds 5 --rounds 3 --client-procs 2 --patterns 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

import grpc  # noqa: E402

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api  # noqa: E402
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc  # noqa: E402
from kato_grpc._proto.kato.v1 import types_pb2 as pb  # noqa: E402

MODES = ("client-held", "server-held")


def _words(vocabulary: int) -> list[str]:
    return [f"w{i}" for i in range(vocabulary)]


def _observe_request(word: str, mode: str, handle) -> api.ObserveRequest:
    obs = pb.Observation(strings=[word])
    if mode == "client-held":
        return api.ObserveRequest(state=handle, observation=obs)
    return api.ObserveRequest(session_id=handle, observation=obs)


async def _drive(
    target: str,
    kb_id: str,
    mode: str,
    sessions: int,
    channels: int,
    warmup: int,
    vocabulary: int,
    seconds: float,
    seed: int,
    barrier,
) -> tuple[int, float, list[float]]:
    chans = [grpc.aio.insecure_channel(target) for _ in range(channels)]
    stubs = [api_grpc.KatoServiceStub(c) for c in chans]
    words = _words(vocabulary)
    rng = random.Random(seed)
    handles: list = []
    for i in range(sessions):  # set up and warm every session to its steady STM size
        stub = stubs[i % channels]
        if mode == "client-held":
            handle = pb.SessionState(kb_id=kb_id)
        else:
            handle = (await stub.CreateSession(api.CreateSessionRequest(kb_id=kb_id))).session.session_id
        for _ in range(warmup):
            response = await stub.Observe(_observe_request(rng.choice(words), mode, handle))
            handle = response.state if mode == "client-held" else handle
        handles.append(handle)

    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    latencies: list[float] = []
    start = time.perf_counter()
    stop = start + seconds

    async def session_loop(i: int) -> None:
        stub, handle, local = stubs[i % channels], handles[i], random.Random(seed * 1000 + i)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            response = await stub.Observe(_observe_request(local.choice(words), mode, handle))
            latencies.append(time.perf_counter() - t0)
            if mode == "client-held":
                handle = response.state

    await asyncio.gather(*(session_loop(i) for i in range(sessions)))
    elapsed = time.perf_counter() - start
    for c in chans:
        await c.close()
    return len(latencies), elapsed, latencies


def _worker(args: tuple, barrier, results) -> None:
    try:
        results.put(asyncio.run(_drive(*args, barrier=barrier)))
    except BaseException:
        barrier.abort()
        results.put(traceback.format_exc())


def run_mode(target: str, kb_id: str, mode: str, opts: argparse.Namespace, round_no: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(opts.client_procs + 1), ctx.Queue()
    shares = [
        opts.sessions // opts.client_procs + (1 if p < opts.sessions % opts.client_procs else 0)
        for p in range(opts.client_procs)
    ]
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                (
                    target,
                    kb_id,
                    mode,
                    share,
                    opts.channels,
                    opts.stm,
                    opts.vocabulary,
                    opts.seconds,
                    1 + round_no * 97 + p,
                ),
                barrier,
                results,
            ),
        )
        for p, share in enumerate(shares)
    ]
    for p in procs:
        p.start()
    # A worker that fails during set-up breaks the barrier: its traceback is in `results`.
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=300)
    outs = [results.get(timeout=opts.seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    failed = [o for o in outs if isinstance(o, str)]
    if failed:
        raise SystemExit(f"a client process failed ({mode}):\n{failed[0]}")
    latencies = sorted(lat for _, _, lats in outs for lat in lats)
    count, elapsed = sum(o[0] for o in outs), max(o[1] for o in outs)
    return {
        "mode": mode,
        "calls": count,
        "rps": count / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def seed_kb(target: str, kb_id: str, patterns: int, vocabulary: int) -> None:
    """Learn `patterns` random 5-event patterns (client-held, ObserveSequence + learn)."""
    rng, words = random.Random(7), _words(vocabulary)
    with grpc.insecure_channel(target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        for _ in range(patterns):
            seq = [pb.Observation(strings=[rng.choice(words)]) for _ in range(5)]
            stub.ObserveSequence(
                api.ObserveSequenceRequest(state=pb.SessionState(kb_id=kb_id), observations=seq, learn_at_end=True)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=100, help="concurrent sessions, all on one kb id")
    parser.add_argument("--stm", type=int, default=10, help="STM events per session (server --max-stm-events)")
    parser.add_argument("--patterns", type=int, default=100, help="patterns learned into the kb before measuring")
    parser.add_argument("--vocabulary", type=int, default=200)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--channels", type=int, default=4, help="gRPC channels per client process")
    parser.add_argument("--redis-url", default="", help="use this Redis instead of starting redis-server")
    opts = parser.parse_args()

    from tests.support.redis import RedisServer
    from tests.support.server import ServerProcess

    with tempfile.TemporaryDirectory(prefix="kato-bench-") as tmp:
        redis_server = None
        url = opts.redis_url
        if not url:
            redis_server = RedisServer(Path(tmp) / "redis").start()
            url = redis_server.url
        server = ServerProcess(
            [
                "--data-dir",
                str(Path(tmp) / "data"),
                "--redis-url",
                url,
                "--max-stm-events",
                str(opts.stm),
                "--log-level",
                "WARNING",
            ]
        ).start()
        try:
            kb_id = "bench-sessions"
            seed_kb(server.target, kb_id, opts.patterns, opts.vocabulary)
            print(
                f"server {server.target}, redis {url}; {opts.sessions} sessions on kb {kb_id!r} "
                f"({opts.patterns} patterns), STM {opts.stm} events, {opts.seconds:g}s per mode, "
                f"{opts.client_procs} client process(es) x {opts.channels} channels",
                flush=True,
            )
            print(f"{'round':>5}  {'mode':<12} {'calls':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}", flush=True)
            ratios, by_mode = [], {m: [] for m in MODES}
            for r in range(opts.rounds):
                order = MODES if r % 2 == 0 else MODES[::-1]  # alternate to cancel drift
                got = {}
                for mode in order:
                    got[mode] = run_mode(server.target, kb_id, mode, opts, r)
                    g = got[mode]
                    by_mode[mode].append(g)
                    print(
                        f"{r + 1:>5}  {mode:<12} {g['calls']:>8} {g['rps']:>9.0f} {g['p50_ms']:>8.2f} "
                        f"{g['p99_ms']:>8.2f}",
                        flush=True,
                    )
                ratios.append(got["server-held"]["rps"] / got["client-held"]["rps"])
                print(f"{r + 1:>5}  ratio server-held / client-held: {ratios[-1]:.2f}", flush=True)
            print()
            for mode in MODES:
                runs = by_mode[mode]
                print(
                    f"median {mode:<12} {statistics.median(g['rps'] for g in runs):>9.0f} req/s  "
                    f"p50 {statistics.median(g['p50_ms'] for g in runs):.2f} ms  "
                    f"p99 {statistics.median(g['p99_ms'] for g in runs):.2f} ms"
                )
            print(f"median ratio server-held / client-held: {statistics.median(ratios):.2f} (target >= 0.60)")
        finally:
            server.stop()
            if redis_server is not None:
                redis_server.stop()


if __name__ == "__main__":
    main()
