"""Memory one client-held call costs: the server's peak RSS for near-limit signed states.

    python loadtest/bench_state_memory.py                        # one Observe of a ~15 MB state
    python loadtest/bench_state_memory.py --concurrent 200       # 200 at once: OK or RESOURCE_EXHAUSTED
    python loadtest/bench_state_memory.py --server-flag=--max-bytes-in-flight=33554432

The state is 1,000 events of 100 symbols (the issue's case); it is signed with the
server's own key ring, so the server runs the whole path (size check, signature,
decoding, the step, encoding, signing). Peak RSS is the server's VmHWM after the calls,
less its VmRSS before them. Health is checked while the calls run. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api  # noqa: E402
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc  # noqa: E402
from kato_grpc._proto.kato.v1 import types_pb2 as pb  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def big_state(server: ServerProcess, kb_id: str, events: int, symbols: int, width: int) -> pb.SessionState:
    state = pb.SessionState(kb_id=kb_id)
    for e in range(events):
        state.stm.add(symbols=[f"{e:05d}-{s:03d}-".ljust(width, "x") for s in range(symbols)])
    return server.sign(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--width", type=int, default=140, help="characters per symbol")
    parser.add_argument("--server-flag", action="append", default=[], help="extra flag for kato-grpc serve")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="kato-state-memory-")
    flags = [part for flag in args.server_flag for part in flag.split("=", 1)]
    server = ServerProcess(["--data-dir", data, "--max-stm-events", str(args.events), *flags]).start()
    try:
        state = big_state(server, "memory", args.events, args.symbols, args.width)
        request = api.ObserveRequest(state=state, observation=pb.Observation(strings=["z"]))
        size = request.ByteSize()
        pid = server.process.pid
        options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        with grpc.insecure_channel(server.target, options=options) as channel:
            stub = api_grpc.KatoServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            stub.Observe(api.ObserveRequest(state=pb.SessionState(kb_id="memory")), timeout=60)  # warm
            before = _kib(pid, "VmRSS")
            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max(args.concurrent, 1) + 1) as pool:
                calls = [pool.submit(stub.Observe, request, timeout=120) for _ in range(args.concurrent)]
                checks = []
                while not all(call.done() for call in calls):
                    t = time.perf_counter()
                    health.Check(health_pb2.HealthCheckRequest(), timeout=30)
                    checks.append(time.perf_counter() - t)
                    time.sleep(0.05)
            took = time.perf_counter() - began
            outcomes = collections.Counter(
                "OK" if call.exception() is None else call.exception().code().name for call in calls
            )
        peak = _kib(pid, "VmHWM")
    finally:
        server.stop()
    growth = (peak - before) / 1024
    print(f"request {size / 1e6:.1f} MB x {args.concurrent} at once, {took:.1f} s")
    print(f"outcomes {dict(outcomes)}")
    print(f"server RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB: +{growth:.0f} MiB")
    if args.concurrent == 1:
        print(f"peak growth / request size: {growth * 1024 * 1024 / size:.1f}x")
    if checks:
        print(f"health checks while serving: {len(checks)}, slowest {max(checks) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
