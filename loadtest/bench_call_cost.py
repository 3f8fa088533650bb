"""What the server pays per call, on the serving path: server CPU per call and bytes.

Starts one `kato-grpc serve` process (embedded store, one worker; Redis for the
server-held rows) on loopback, seeds a knowledge base straight into its data directory,
then drives each scenario from a few client threads and reads the server process's own
CPU time (/proc/<pid>/stat, user + system) before and after: CPU per call is what the
server spent divided by the calls it answered, so the client's own decoding cost, on
the same cores, never hides in it. Bytes are the serialized request and response.

    .venv/bin/python loadtest/bench_call_cost.py                 # anchor 10k KB, 3 runs
    .venv/bin/python loadtest/bench_call_cost.py --kb skewed      # Zipf symbols (most patterns match)
    .venv/bin/python loadtest/bench_call_cost.py --patterns 1000 --runs 5

Prints, per scenario, the median over runs of the server CPU per call, its ratio to the
health check's in the same run, the engine's own Predict time measured in-process on the
same knowledge base, and request / response bytes. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api  # noqa: E402
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc  # noqa: E402
from kato_grpc._proto.kato.v1 import types_pb2 as pb  # noqa: E402
from kato_grpc.core.learning import pattern_name  # noqa: E402
from kato_grpc.core.model import LearnPattern  # noqa: E402
from kato_grpc.kb import SqliteStore  # noqa: E402
from kato_grpc.kb.engines import engine_named  # noqa: E402
from tests.support.redis import RedisServer, RedisUnavailable  # noqa: E402
from tests.support.server import ServerProcess, free_service_port  # noqa: E402

KB = "serving"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def anchor_patterns(count: int) -> list[list[list[str]]]:
    """The anchor workload's KB when ../shared/bench is beside the checkout, else its recipe."""
    bench = ROOT.parent / "shared" / "bench"
    if (bench / "anchor_workload.py").exists():
        sys.path.insert(0, str(bench))
        from anchor_workload import patterns  # type: ignore[import-not-found]

        return list(patterns(count))
    rng = random.Random(20240501)
    return [
        [[f"s{i:03d}" for i in rng.sample(range(1000), rng.randint(1, 4))] for _ in range(rng.randint(3, 8))]
        for _ in range(count)
    ]


def skewed_patterns(count: int, vocabulary: int = 3000, exponent: float = 1.1) -> list[list[list[str]]]:
    """Symbols drawn with Zipf weights (rank r has weight r**-exponent): a few symbols occur
    in most patterns, a long tail in few; 4-9 events of 1-4 distinct symbols."""
    rng = random.Random(7)
    weights = [r**-exponent for r in range(1, vocabulary + 1)]
    symbols = [f"w{r:04d}" for r in range(vocabulary)]

    def event() -> list[str]:
        size = rng.randint(1, 4)
        chosen: set[str] = set()
        while len(chosen) < size:
            chosen.update(rng.choices(symbols, weights, k=size - len(chosen)))
        return sorted(chosen)

    return [[event() for _ in range(rng.randint(4, 9))] for _ in range(count)]


def seed(data_dir: Path, patterns: list[list[list[str]]]) -> None:
    store = SqliteStore(data_dir, engine_named("python").new_index)
    learns = []
    for events in patterns:
        frozen = tuple(tuple(sorted(e)) for e in events)
        learns.append(LearnPattern(pattern_name(frozen), frozen, (), (), 5))
    for start in range(0, len(learns), 1000):
        store.apply(KB, learns[start : start + 1000])
    store.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_cpu(server: ServerProcess) -> float:
    """The server and its children (workers), user + system seconds."""
    assert server.process is not None
    pids = [server.process.pid]
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return sum(cpu_seconds(pid) for pid in pids)


def drive(call: Callable[[], object], calls: int, threads: int) -> None:
    work: queue.Queue[int] = queue.Queue()
    for i in range(calls):
        work.put(i)

    def worker() -> None:
        while True:
            try:
                work.get_nowait()
            except queue.Empty:
                return
            call()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def measure(server: ServerProcess, call: Callable[[], object], calls: int, threads: int) -> float:
    """Server CPU milliseconds per call."""
    drive(call, max(20, calls // 10), threads)  # warm up
    before = server_cpu(server)
    drive(call, calls, threads)
    return (server_cpu(server) - before) / calls * 1000


def stream_calls(stub, state: pb.SessionState, observations: int) -> Callable[[], object]:
    """One StreamObservations call of `observations` steps: returns a call that runs it."""

    def requests() -> Iterator[api.StreamObservationsRequest]:
        yield api.StreamObservationsRequest(open=api.StreamOpen(state=state))
        for i in range(observations):
            yield api.StreamObservationsRequest(observation=pb.Observation(strings=[f"s{i % 50:03d}"]))

    def run() -> None:
        for _ in stub.StreamObservations(requests(), timeout=600):
            pass

    return run


def engine_predict_ms(patterns: list[list[list[str]]], stm: list[list[str]], runs: int = 30) -> float:
    from kato_grpc.core.config import SessionConfig as Config

    index = engine_named("native").new_index()
    for events in patterns:
        frozen = tuple(tuple(sorted(e)) for e in events)
        index.apply(LearnPattern(pattern_name(frozen), frozen, (), (), 5))
    predictor = engine_named("native").predictor
    query = tuple(tuple(sorted(e)) for e in stm)
    config = Config()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        predictor(query, config, index)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kb", choices=("anchor", "skewed"), default="anchor")
    parser.add_argument("--patterns", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="server processes (SO_REUSEPORT); CPU is summed")
    args = parser.parse_args()

    patterns = anchor_patterns(args.patterns) if args.kb == "anchor" else skewed_patterns(args.patterns)
    query = patterns[0][:5]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        seed(data_dir, patterns)
        try:
            redis = RedisServer(Path(tmp) / "redis").start()
        except RedisUnavailable:
            redis = None
        flags = ["--data-dir", str(data_dir), "--workers", str(args.workers)]
        if args.workers > 1:  # workers share one port (SO_REUSEPORT): it must be chosen
            flags += ["--port", str(free_service_port())]
        flags += ["--redis-url", redis.url] if redis else []
        server = ServerProcess(flags).start()
        try:
            rows = run_scenarios(server, query, args)
        finally:
            server.stop()
            if redis:
                redis.stop()
    engine_ms = engine_predict_ms(patterns, query)
    print(
        f"\n{args.kb} KB, {args.patterns} patterns; {args.calls} calls x {args.runs} runs, {args.threads} threads, "
        f"{args.workers} worker(s)"
    )
    print(f"engine's own Predict (native, in-process, median): {engine_ms:.2f} ms\n")
    print(f"{'scenario':<52} {'server CPU/call':>16} {'x health':>9} {'bytes in':>9} {'bytes out':>10}")
    health = statistics.median(rows["health check"][0])
    for name, (cpu, sizes) in rows.items():
        ms = statistics.median(cpu)
        ratios = statistics.median([c / h for c, h in zip(cpu, rows["health check"][0], strict=True)])
        print(f"{name:<52} {ms:>13.3f} ms {ratios:>8.1f}x {sizes[0]:>9} {sizes[1]:>10}")
    print(f"\n(health check: {health:.3f} ms of server CPU per call)\n")
    for line in verdicts(rows, engine_ms):
        print(line)


# Issue 20's targets: (scenario, allowed multiple of the health check, plus the engine's Predict?)
TARGETS = (
    ("client-held Observe, process_predictions false", 2.0, False),
    ("client-held Observe, default config (not returned)", 2.0, True),
    ("client-held Observe, return_predictions (FULL)", 3.0, True),
    ("server-held Observe (Redis), no predictions", 3.0, False),
    ("StreamObservations, per observation, no predictions", 1.0, False),
)


def verdicts(rows: dict[str, tuple[list[float], tuple[int, int]]], engine_ms: float) -> list[str]:
    """One line a target: the bound, the median measured, met or by how much it misses."""
    health = statistics.median(rows["health check"][0])
    lines = []
    for name, multiple, plus_engine in TARGETS:
        if name not in rows:
            continue
        bound = multiple * health + (engine_ms if plus_engine else 0.0)
        measured = statistics.median(rows[name][0])
        verdict = "met" if measured <= bound else f"missed by {measured - bound:.3f} ms ({measured / bound:.2f}x)"
        wanted = f"{multiple:g}x health" + (" + engine" if plus_engine else "")
        lines.append(f"target {name}: <= {wanted} = {bound:.3f} ms; measured {measured:.3f} ms: {verdict}")
    return lines


def run_scenarios(
    server: ServerProcess, query: list[list[str]], args
) -> dict[str, tuple[list[float], tuple[int, int]]]:
    channel = grpc.insecure_channel(server.target, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = api_grpc.KatoServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)

    def state_after(config: pb.SessionConfig | None, events: list[list[str]]) -> pb.SessionState:
        state = pb.SessionState(kb_id=KB)
        if config is not None:
            state.config.CopyFrom(config)
        for event in events:
            state = stub.Observe(api.ObserveRequest(state=state, observation=pb.Observation(strings=event))).state
        return state

    quiet = pb.SessionConfig(process_predictions=False)
    quiet_state = state_after(quiet, query)
    default_state = state_after(None, query[:4])
    next_event = pb.Observation(strings=query[4])

    def observe(state: pb.SessionState, **options) -> api.ObserveRequest:
        return api.ObserveRequest(state=state, observation=next_event, **options)

    # One server-held session per client thread: calls on one session would race for its
    # compare-and-set, and a conflict's retries are not what this measures.
    session_ids: list[str] = []
    try:
        for _ in range(args.threads):
            session_id = stub.CreateSession(api.CreateSessionRequest(kb_id=KB, config=quiet)).session.session_id
            for event in query:
                stub.Observe(api.ObserveRequest(session_id=session_id, observation=pb.Observation(strings=event)))
            session_ids.append(session_id)
    except grpc.RpcError:  # no session store (no Redis here)
        session_ids = []
    own_session = threading.local()
    next_session = iter(range(1 << 30))

    def held_observe() -> None:
        if not hasattr(own_session, "request"):
            session_id = session_ids[next(next_session) % len(session_ids)]
            own_session.request = api.ObserveRequest(session_id=session_id, observation=next_event)
        stub.Observe(own_session.request)

    loop_state = [quiet_state]
    loop_lock = threading.Lock()

    def client_loop() -> None:  # one client-held session, each returned state sent back
        with loop_lock:
            state = loop_state[0]
        reply = stub.Observe(api.ObserveRequest(state=state, observation=pb.Observation(strings=["s001"])))
        with loop_lock:
            loop_state[0] = reply.state

    scenarios: dict[str, tuple[Callable[[], object], object, Callable[[], object] | None]] = {
        "health check": (lambda: health.Check(health_pb2.HealthCheckRequest()), health_pb2.HealthCheckRequest(), None),
        "client-held Observe, process_predictions false": (
            lambda: stub.Observe(observe(quiet_state)),
            observe(quiet_state),
            lambda: stub.Observe(observe(quiet_state)),
        ),
        "client-held Observe loop (state sent back), no preds": (
            client_loop,
            observe(quiet_state),
            lambda: stub.Observe(observe(quiet_state)),
        ),
        "client-held Observe, default config (not returned)": (
            lambda: stub.Observe(observe(default_state)),
            observe(default_state),
            lambda: stub.Observe(observe(default_state)),
        ),
        "client-held Observe, return_predictions (FULL)": (
            lambda: stub.Observe(observe(default_state, return_predictions=True)),
            observe(default_state, return_predictions=True),
            lambda: stub.Observe(observe(default_state, return_predictions=True)),
        ),
        "client-held Observe, return_predictions BASIC, max 10": (
            lambda: stub.Observe(
                observe(
                    default_state, return_predictions=True, prediction_view=pb.PREDICTION_VIEW_BASIC, max_predictions=10
                )
            ),
            observe(
                default_state, return_predictions=True, prediction_view=pb.PREDICTION_VIEW_BASIC, max_predictions=10
            ),
            lambda: stub.Observe(
                observe(
                    default_state, return_predictions=True, prediction_view=pb.PREDICTION_VIEW_BASIC, max_predictions=10
                )
            ),
        ),
    }
    if session_ids:
        held = api.ObserveRequest(session_id=session_ids[0], observation=next_event)
        scenarios["server-held Observe (Redis), no predictions"] = (held_observe, held, lambda: stub.Observe(held))
    rows: dict[str, tuple[list[float], tuple[int, int]]] = {}
    for name, (_call, request, reply_of) in scenarios.items():
        reply = reply_of() if reply_of else None
        sizes = (request.ByteSize(), reply.ByteSize() if reply is not None else 0)
        rows[name] = ([], sizes)
    per_stream = 200
    rows["StreamObservations, per observation, no predictions"] = ([], (0, 0))
    for _ in range(args.runs):
        for name, (call, _request, _reply) in scenarios.items():
            rows[name][0].append(measure(server, call, args.calls, args.threads))
        streams = max(4, args.calls // per_stream)
        rows["StreamObservations, per observation, no predictions"][0].append(
            measure(server, stream_calls(stub, quiet_state, per_stream), streams, min(args.threads, streams))
            / per_stream
        )
    channel.close()
    return rows


if __name__ == "__main__":
    main()
