"""Load tests with ghz: start the server(s) and Redis on loopback, run every scenario,
write ``loadtest/report.md`` and ``loadtest/report.png``.

    .venv/bin/python loadtest/run.py                 # the full run (make loadtest), ~5 min
    .venv/bin/python loadtest/run.py --smoke         # seconds per scenario, 500 patterns,
                                                     # report into a temporary directory
    .venv/bin/python loadtest/run.py --only baseline,observe-client

What it starts (all on 127.0.0.1, ephemeral ports, in a temporary directory):

- one ``redis-server --save '' --appendonly no`` (server-held sessions);
- stack A: ``kato-grpc serve --workers 1 --max-stm-events 6`` on an embedded (SQLite)
  knowledge base, seeded with ``--patterns`` (10,000) patterns of 5 one-symbol events drawn
  from ``--vocabulary`` (1,000) symbols, i.e. each symbol is in ~50 patterns;
- stack B: the same data directory served by ``--workers 2`` (two processes sharing the
  port with SO_REUSEPORT);
- stack C: ``--workers 1`` with the default ``--max-stm-events`` (1000), for the mixed
  workload (learns clear the STM) and the isolation stress (the STM must keep every
  observation to be counted).

``--max-stm-events 6`` keeps a server-held session's STM at the size a client-held request
reaches (5 events sent + the one observed), so client- and server-held figures compare.

Every scenario runs ghz (``-O json``, ``--duration-stop wait``: in-flight calls finish and
are counted) for ``--seconds`` and records throughput (successful calls / s), p50/p95/p99
of successful calls, error rate, ratio to the baseline (health check) of the same stack
and concurrency, the CPU time of the server process(es), of Redis and of ghz (cores
used), the CPU used by everything else on the machine (other load distorts figures), and
the server's peak RSS (VmHWM, reset before each scenario through /proc/<pid>/clear_refs
when the kernel allows it; else the lifetime peak).

ghz gives unary calls the elements of a JSON data array round-robin by request number
(element ``n % len``), not by worker: a "session per worker" scenario gives ghz an
array whose element ``k`` carries session ``k % sessions``, so consecutive requests go to
consecutive sessions and each session gets 1/sessions of the calls. Two calls of one
session can be in flight at once (a slow call ``k`` and call ``k + sessions``); the
server's compare-and-set handles that and the isolation check verifies it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, json_format  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api  # noqa: E402
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc  # noqa: E402
from kato_grpc._proto.kato.v1 import types_pb2 as pb  # noqa: E402
from kato_grpc.server.state_signing import DEFAULT_KEYS_FILE, StateKeyRing  # noqa: E402

HERE = Path(__file__).resolve().parent
KATO = "kato.v1.KatoService/"
HEALTH = "grpc.health.v1.Health/Check"
KB10K = "kb10k"
KB10K_SPARSE = "kb10k-sparse"
PUBLISHED_KATO_OBS_PER_S = 204  # KATO's published observation throughput
CLK_TCK = os.sysconf("SC_CLK_TCK")
NICE = 0  # niceness of every process started here (--nice); threads and forks inherit it


def _niced() -> None:
    """preexec_fn: with autogroup scheduling (sched_autogroup_enabled) a nice value only
    ranks threads within their session's group, so start a session and nice its group."""
    if NICE:
        os.setsid()
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(NICE))
        os.nice(NICE)


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_ghz() -> str:
    for candidate in (shutil.which("ghz"), str(Path.home() / "go" / "bin" / "ghz")):
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit("ghz not found: go install github.com/bojand/ghz/cmd/ghz@latest (lands in ~/go/bin)")


def ghz_version(binary: str) -> str:
    for go in (shutil.which("go"), "/usr/local/go/bin/go"):
        if go and Path(go).exists():
            out = subprocess.run([go, "version", "-m", binary], capture_output=True, text=True).stdout
            match = re.search(r"mod\s+github.com/bojand/ghz\s+(\S+)", out)
            if match:
                return match.group(1)
    return subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip() or "?"


class Redis:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            sys.exit("redis-server not found (Debian: apt-get install redis-server)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            preexec_fn=_niced,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def pause_during(self, seconds: float, start: float, length: float) -> None:
        """In a thread: SIGSTOP at `start` s, SIGCONT `length` s later (a hung Redis)."""

        def run() -> None:
            time.sleep(start)
            self.process.send_signal(signal.SIGSTOP)
            try:
                time.sleep(length)
            finally:
                self.process.send_signal(signal.SIGCONT)

        threading.Thread(target=run, daemon=True).start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_LISTENING = re.compile(r"listening on ([\d.]+):(\d+) \(pid (\d+)")


class Server:
    """`python -m kato_grpc serve` with `workers` processes; `pids` are the serving processes."""

    def __init__(
        self, name: str, data_dir: Path, redis_url: str, workers: int = 1, extra: tuple[str, ...] = ()
    ) -> None:
        self.name, self.workers, self.data_dir = name, workers, data_dir
        port = 0 if workers == 1 else free_port()  # every worker must bind the same port
        self.output: list[str] = []
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'clients' / 'python'}"}
        self.args = [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--redis-url",
            redis_url,
            "--workers",
            str(workers),
            "--log-level",
            "WARNING",
            *extra,
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kato_grpc", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
            preexec_fn=_niced,
        )
        self.pids: list[int] = []
        targets = set()
        deadline = time.monotonic() + 60
        while len(self.pids) < workers and time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            for match in _LISTENING.finditer(line):  # a worker's line is one write; be lenient anyway
                targets.add(f"{match.group(1)}:{match.group(2)}")
                self.pids.append(int(match.group(3)))
        if len(self.pids) < workers or len(targets) != 1:
            self.stop()
            raise RuntimeError(f"server {name} did not start ({targets}):\n" + "".join(self.output))
        self.target = targets.pop()
        threading.Thread(target=self._drain, daemon=True).start()
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                try:
                    if (
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                        == health_pb2.HealthCheckResponse.SERVING
                    ):
                        break
                except grpc.RpcError:
                    time.sleep(0.1)

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def all_pids(self) -> list[int]:
        """The serving processes and, with several workers, the supervising parent."""
        return sorted({self.process.pid, *self.pids})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                for pid in self.pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()


# --------------------------------------------------------------------------- /proc
def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pids: list[int]) -> bool:
    """Reset VmHWM to the current RSS (clear_refs 5, Linux >= 4.0); False when not allowed."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def wait_until_quiet(own_pids: list[int], max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to `max_wait` s) for 1 s during which other processes use < `threshold` cores.

    The machine may be shared: other load takes cores from the server and ghz and
    depresses every figure. Returns the other load of the last 1 s window (cores).
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy0, own0, t0 = machine_busy_seconds(), cpu_seconds(own_pids), time.perf_counter()
        time.sleep(1.0)
        other = max(0.0, (machine_busy_seconds() - busy0) - (cpu_seconds(own_pids) - own0)) / (time.perf_counter() - t0)
        if other < threshold or time.monotonic() >= deadline:
            return other


# --------------------------------------------------------------------------- data
@dataclass
class Data:
    """Deterministic workload data, drawn from one seeded RNG."""

    patterns: int
    vocabulary: int
    seed: int = 7
    kb_id: str = KB10K
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.kb_patterns = [[self.word() for _ in range(5)] for _ in range(self.patterns)]

    def word(self) -> str:
        return f"w{self.rng.randrange(self.vocabulary)}"

    @staticmethod
    def events(words: list[str]) -> list[dict]:
        return [{"symbols": [w]} for w in words]

    def observe_client(self, variants: int, predictions: bool) -> list[dict]:
        """STM of 5 events: 2 random, then 3 events of a stored pattern; observe its 4th."""
        out = []
        for _ in range(variants):
            p = self.rng.choice(self.kb_patterns)
            request = {
                "state": {
                    "kb_id": self.kb_id,
                    "stm": self.events([self.word(), self.word(), *p[:3]]),
                    "config": {"process_predictions": predictions},
                },
                "observation": {"strings": [p[3]]},
            }
            if predictions:
                request["return_predictions"] = True
            out.append(request)
        return out

    def stream(self, observations: int) -> list[dict]:
        """One StreamObservations call: open a client-held state, then `observations` events."""
        return [
            {"open": {"state": {"kb_id": self.kb_id, "config": {"process_predictions": False}}}},
            *({"observation": {"strings": [self.word()]}} for _ in range(observations)),
        ]

    def learn_client(self, variants: int, kb_ids: list[str]) -> list[dict]:
        return [
            {
                "state": {
                    "kb_id": kb_ids[k % len(kb_ids)],
                    "stm": self.events([self.word() for _ in range(3)]),
                    "config": {"process_predictions": False},
                }
            }
            for k in range(variants)
        ]

    def by_session(
        self, session_ids: list[str], variants_per_session: int, extra: dict | None = None, observe: bool = True
    ) -> list[dict]:
        """Element k is for session k % len(session_ids) (ghz's round-robin by request number)."""
        out = []
        for k in range(len(session_ids) * variants_per_session):
            request: dict = {"session_id": session_ids[k % len(session_ids)], **(extra or {})}
            if observe:
                request["observation"] = {"strings": [self.word()]}
            out.append(request)
        return out


def signed_states(requests: list[dict] | dict, data_dir: Path) -> list[dict] | dict:
    """`requests` (ghz data: a list of requests, or one request for every call) with each
    hand-made client-held state signed by the server's key ring, as if the server had
    returned it: a state holding more than kb_id and config must be."""
    if isinstance(requests, dict):
        return signed_states([requests], data_dir)[0]
    ring = StateKeyRing.from_file(data_dir / DEFAULT_KEYS_FILE)
    out = []
    for request in requests:
        if "state" in request:
            state = json_format.ParseDict(request["state"], pb.SessionState())
            ring.sign(state)
            request = {**request, "state": json_format.MessageToDict(state, preserving_proto_field_name=True)}
        out.append(request)
    return out


async def _seed_kb(target: str, kb_id: str, patterns: list[list[str]], in_flight: int = 64) -> None:
    """Learn each pattern with one ObserveSequence (learn_at_end) on a fresh client-held state."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        config = pb.SessionConfig(process_predictions=False)
        queue = list(reversed(patterns))

        async def worker() -> None:
            while queue:
                words = queue.pop()
                await stub.ObserveSequence(
                    api.ObserveSequenceRequest(
                        state=pb.SessionState(kb_id=kb_id, config=config),
                        observations=[pb.Observation(strings=[w]) for w in words],
                        learn_at_end=True,
                    ),
                    timeout=60,
                )

        await asyncio.gather(*(worker() for _ in range(in_flight)))


def seed_kb(target: str, kb_id: str, patterns: list[list[str]]) -> float:
    start = time.perf_counter()
    asyncio.run(_seed_kb(target, kb_id, patterns))
    return time.perf_counter() - start


def create_sessions(target: str, kb_ids: list[str], count: int, predictions: bool, warm: Data | None) -> list[str]:
    """`count` server-held sessions (session i on kb_ids[i % len]), warmed with 5 events when `warm`."""
    from kato_client import KatoClient

    ids = []
    with KatoClient(target) as client:
        for i in range(count):
            session = client.server_session(
                kb_ids[i % len(kb_ids)], config={"process_predictions": predictions}, ttl_seconds=6 * 3600
            )
            if warm is not None:
                session.observe_sequence([{"strings": [warm.word()]} for _ in range(5)])
            ids.append(session.session_id)
    return ids


# --------------------------------------------------------------------------- ghz
@dataclass
class Load:
    """One ghz process of a scenario."""

    call: str
    data: object  # JSON-able request or list of requests
    concurrency: int
    label: str = ""
    share: float = 0.0  # of the scenario's calls, for a calibrated mix
    rps: int = 0  # ghz --rps (0: as fast as the workers go)
    per_call: int = 1  # observations per call (a StreamObservations call carries many)

    @property
    def connections(self) -> int:
        return max(1, -(-self.concurrency // 10))  # one connection per 10 workers


@dataclass
class Scenario:
    name: str
    stack: str  # which server stack: A, B or C
    loads: list[Load]
    baseline: str  # the scenario whose figures this one is compared with
    note: str = ""
    group: str = ""
    verify: object = None  # callable(result) -> dict, run after the load
    calibrate: bool = False  # run the loads unthrottled first, then at rps = share x that total
    during: object = None  # callable(seconds) started with the load (e.g. pause Redis for a while)


@dataclass
class Result:
    name: str
    stack: str
    workers: int
    concurrency: int
    ok: int
    errors: int
    seconds: float
    rps: float
    p50: float
    p95: float
    p99: float
    server_cores: float
    redis_cores: float
    ghz_cores: float
    other_cores: float
    peak_rss_mb: float
    rss_reset: bool
    status: dict
    per_load: list[dict]
    baseline: str
    note: str = ""
    ratio: float = float("nan")
    p99_ratio: float = float("nan")
    verify: dict | None = None
    server_cpu_seconds: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / max(1, self.ok + self.errors)

    @property
    def server_ms_per_call(self) -> float:
        """What the server paid per call: its CPU seconds over the run, per call answered."""
        return self.server_cpu_seconds / max(1, self.ok + self.errors) * 1000


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Runner:
    def __init__(
        self, ghz: str, protoset: Path, work: Path, seconds: float, keep_raw: Path | None, quiet_wait: float = 0.0
    ) -> None:
        self.ghz, self.protoset, self.work, self.seconds, self.keep_raw = ghz, protoset, work, seconds, keep_raw
        self.quiet_wait = quiet_wait

    def _ghz_command(self, load: Load, target: str, data_file: Path, out_file: Path, seconds: float = 0.0) -> list[str]:
        return [
            self.ghz,
            "--insecure",
            "--protoset",
            str(self.protoset),
            "--call",
            load.call,
            "--data-file",
            str(data_file),
            "-c",
            str(load.concurrency),
            "--connections",
            str(load.connections),
            "-z",
            f"{seconds or self.seconds}s",
            "--duration-stop",
            "wait",
            "-t",
            "30s",
            *(["--rps", str(load.rps)] if load.rps else []),
            "-O",
            "json",
            "-o",
            str(out_file),
            target,
        ]

    def run(self, scenario: Scenario, server: Server, redis: Redis) -> Result:
        if scenario.calibrate:
            # ghz runs one method per process. Find a total rate the mix sustains: first
            # unthrottled, then offer each method its share of the total (--rps), lowering the
            # total while some method falls short of its rate and raising it while the server
            # has idle CPU (the methods' costs differ, so the unthrottled total of other shares
            # is not what the wanted mix sustains).
            probe_seconds = max(1.0, self.seconds / 4)
            for load in scenario.loads:
                load.rps = 0
            probe = self._run(scenario, server, redis, seconds=probe_seconds)
            total = probe.rps
            steps = [
                f"unthrottled {total:,.0f} ok/s ("
                + ", ".join(f"{p['call']} {p['share']:.0%}" for p in probe.per_load)
                + ")"
            ]
            best = 0.0
            for _ in range(6):
                for load in scenario.loads:
                    load.rps = max(1, round(load.share * total))
                probe = self._run(scenario, server, redis, seconds=probe_seconds)
                reached = min(p["rps"] / load.rps for p, load in zip(probe.per_load, scenario.loads, strict=False))
                busy = probe.server_cores / server.workers  # 1.0: every server process saturated
                steps.append(
                    f"offered {total:,.0f}/s: slowest method at {reached:.0%} of its rate, server {busy:.0%} busy"
                )
                if reached >= 0.95:  # sustained: go up unless the server is nearly saturated
                    best = total
                    if busy >= 0.85:
                        break
                    total *= min(1.5, 0.9 / max(busy, 0.05))
                elif best:  # overshot a total that was sustained: keep that one
                    total = best
                    break
                else:
                    total *= reached * 0.95
            total = best or total
            for load in scenario.loads:
                load.rps = max(1, round(load.share * total))
            result = self._run(scenario, server, redis)
            limits = " / ".join(str(load.rps) for load in scenario.loads)
            result.note += f" Calibration ({probe_seconds:g}s probes): {'; '.join(steps)}; measured at --rps {limits}."
            return result
        return self._run(scenario, server, redis)

    def _run(self, scenario: Scenario, server: Server, redis: Redis, seconds: float = 0.0) -> Result:
        procs = []
        for i, load in enumerate(scenario.loads):
            data_file = self.work / f"{scenario.name}-{i}.data.json"
            data_file.write_text(json.dumps(signed_states(load.data, server.data_dir)))
            out_file = self.work / f"{scenario.name}-{i}.ghz.json"
            procs.append((load, out_file, self._ghz_command(load, server.target, data_file, out_file, seconds)))

        if self.quiet_wait > 0:
            wait_until_quiet(server.all_pids + redis.pids, self.quiet_wait)
        rss_reset = reset_peak_rss(server.pids)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu0, redis_cpu0, busy0 = cpu_seconds(server.all_pids), cpu_seconds(redis.pids), machine_busy_seconds()
        each0 = [cpu_seconds([pid]) for pid in server.pids]
        wall0 = time.perf_counter()
        running = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_niced)
            for _, _, cmd in procs
        ]
        if scenario.during is not None:
            scenario.during(seconds or self.seconds)
        outputs = [p.communicate() for p in running]
        wall = time.perf_counter() - wall0
        server_cpu = cpu_seconds(server.all_pids) - server_cpu0
        each = [(cpu_seconds([pid]) - c0) / wall for pid, c0 in zip(server.pids, each0, strict=False)]
        redis_cpu = cpu_seconds(redis.pids) - redis_cpu0
        busy = machine_busy_seconds() - busy0
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        ghz_cpu = (children_after.ru_utime + children_after.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        peak_kb = sum(status_kb(pid, "VmHWM") for pid in server.pids)

        latencies: list[float] = []
        ok = errors = 0
        rps = 0.0
        status: dict[str, int] = {}
        per_load = []
        span = 0.0
        for (load, out_file, cmd), proc, (stdout, stderr) in zip(procs, running, outputs, strict=False):
            if proc.returncode != 0 and not out_file.exists():
                raise RuntimeError(f"ghz failed ({scenario.name}): {' '.join(cmd)}\n{stdout}\n{stderr}")
            report = json.loads(out_file.read_text())
            details = report.get("details") or []
            lat = sorted(d["latency"] / 1e6 for d in details if not d.get("error"))
            n_ok, n_err = len(lat), len(details) - len(lat)
            seconds = report["total"] / 1e9
            for code, n in (report.get("statusCodeDistribution") or {}).items():
                status[code] = status.get(code, 0) + n
            per_load.append(
                {
                    "call": load.call.split("/")[-1],
                    "label": load.label,
                    "concurrency": load.concurrency,
                    "rps_limit": load.rps,
                    "ok": n_ok,
                    "errors": n_err,
                    "rps": n_ok / seconds,
                    "per_s": n_ok * load.per_call / seconds,
                    "p50": quantile(lat, 0.50),
                    "p95": quantile(lat, 0.95),
                    "p99": quantile(lat, 0.99),
                    "errorDistribution": report.get("errorDistribution") or {},
                }
            )
            latencies.extend(lat)
            ok, errors, rps, span = ok + n_ok, errors + n_err, rps + n_ok / seconds, max(span, seconds)
            if self.keep_raw:
                self.keep_raw.mkdir(parents=True, exist_ok=True)
                shutil.copy(out_file, self.keep_raw / out_file.name)
            out_file.unlink()
        latencies.sort()
        own = server_cpu + redis_cpu + ghz_cpu
        result = Result(
            name=scenario.name,
            stack=scenario.stack,
            workers=server.workers,
            concurrency=sum(load.concurrency for load in scenario.loads),
            ok=ok,
            errors=errors,
            seconds=span,
            rps=rps,
            p50=quantile(latencies, 0.50),
            p95=quantile(latencies, 0.95),
            p99=quantile(latencies, 0.99),
            server_cores=server_cpu / wall,
            server_cpu_seconds=server_cpu,
            redis_cores=redis_cpu / wall,
            ghz_cores=ghz_cpu / wall,
            other_cores=max(0.0, busy - own) / wall,
            peak_rss_mb=peak_kb / 1024,
            rss_reset=rss_reset,
            status=status,
            per_load=per_load,
            baseline=scenario.baseline,
            note=scenario.note,
        )
        if len(each) > 1:
            result.note += f" Server CPU per process: {' / '.join(f'{c:.2f}' for c in each)} cores."
        for p in per_load:
            p["share"] = p["ok"] / max(1, ok)
        if scenario.verify is not None:
            result.verify = scenario.verify(result)
        return result


# --------------------------------------------------------------------------- isolation
def isolation_check(target: str, session_ids: list[str], max_stm_events: int):
    """After the load: each session's STM holds only its own events, each request at most once,
    and (when no STM reached the cap) exactly as many events as successful calls."""
    from kato_client import KatoClient

    def verify(result: Result) -> dict:
        leaks = duplicates = malformed = events = capped = 0
        seen: set[int] = set()
        with KatoClient(target) as client:
            for i, sid in enumerate(session_ids):
                stm = client.stub.GetStm(api.GetStmRequest(session_id=sid), timeout=30).stm
                events += len(stm)
                capped += len(stm) >= max_stm_events
                for event in stm:
                    symbols = list(event.symbols)
                    owners = [s for s in symbols if s.startswith("iso-")]
                    reqs = [s for s in symbols if s.startswith("req-")]
                    if len(symbols) != 2 or len(owners) != 1 or len(reqs) != 1:
                        malformed += 1
                        continue
                    k = int(reqs[0][4:])
                    if owners[0] != f"iso-{i}" or k % len(session_ids) != i:
                        leaks += 1
                    if k in seen:
                        duplicates += 1
                    seen.add(k)
        exact = capped == 0
        return {
            "sessions": len(session_ids),
            "ok_calls": result.ok,
            "failed_calls": result.errors,
            "stm_events": events,
            "leaks": leaks,
            "duplicates": duplicates,
            "malformed": malformed,
            "sessions_at_cap": capped,
            "max_stm_events": max_stm_events,
            "passed": leaks == 0
            and duplicates == 0
            and malformed == 0
            and (events == result.ok if exact else events <= result.ok),
        }

    return verify


def set_ratios(results: list[Result]) -> None:
    """Ratios to the faster run of each baseline (it may have been run twice)."""
    for r in results:
        runs = [b for b in results if b.name in (r.baseline, r.baseline + "-repeat")]
        if runs and r.name not in (r.baseline, r.baseline + "-repeat"):
            base = max(runs, key=lambda b: b.rps)
            r.ratio, r.p99_ratio = r.rps / base.rps, r.p99 / base.p99


# --------------------------------------------------------------------------- report
def fmt(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"


def write_plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r.name} [{r.stack}]" for r in results]
    y = list(range(len(results)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 0.42 * len(results) + 2.2), sharey=True)
    colors = ["#9e9e9e" if r.name.startswith("baseline") else "#1f77b4" for r in results]
    ax1.barh(y, [r.rps for r in results], color=colors)
    for yi, r in zip(y, results, strict=False):
        ax1.text(r.rps, yi, f" {r.rps:,.0f}", va="center", fontsize=8)
    ax1.set_xlabel("successful calls / s")
    ax1.set_title("Throughput (grey: baselines, grpc.health.v1.Health/Check)")
    ax1.set_yticks(y)
    ax1.set_yticklabels(names, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlim(0, max(r.rps for r in results) * 1.18)
    h = 0.27
    for offset, key, color in ((-h, "p50", "#2ca02c"), (0, "p95", "#ff7f0e"), (h, "p99", "#d62728")):
        ax2.barh(
            [yi + offset for yi in y], [max(getattr(r, key), 1e-3) for r in results], height=h, color=color, label=key
        )
    ax2.set_xscale("log")
    ax2.set_xlabel("latency, ms (log scale)")
    ax2.set_title("Latency percentiles of successful calls")
    ax2.legend(loc="lower right", fontsize=8)
    ax2.grid(axis="x", which="both", alpha=0.3)
    ax1.grid(axis="x", alpha=0.3)
    fig.suptitle(
        "KATO gRPC load tests (ghz, loopback; A: 1 worker, B: 2 workers SO_REUSEPORT, C: 1 worker, STM cap 1000)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def target_rows(by_name: dict[str, Result]) -> list[tuple[str, str, str, str]]:
    rows = []

    def add(
        label: str,
        measured: str,
        target: str,
        ok: bool | None,
        value: float = float("nan"),
        limit: float = float("nan"),
        at_least: bool = True,
    ) -> None:
        """`value` and `limit` (both given, same unit) let a miss say by how much: the factor
        the measured value must still gain (at_least) or shed (an upper bound)."""
        verdict = "–" if ok is None else ("**met**" if ok else "**missed**")
        if ok is False and value == value and limit == limit and value > 0:
            verdict += f" by {limit / value if at_least else value / limit:.1f}x"
        rows.append((label, measured, target, verdict))

    for stack in ("A", "B"):
        suffix = "" if stack == "A" else "-w2"
        nopred = by_name.get(f"observe-client-nopred{suffix}")
        pred = by_name.get(f"observe-client-pred{suffix}")
        pred_sparse = by_name.get(f"observe-client-pred-sparse{suffix}")
        where = "1 worker" if stack == "A" else "2 workers"
        if nopred:
            add(
                f"Observe client-held, no predictions / baseline ({where})",
                f"{nopred.ratio:.0%}",
                "≥ 50%",
                nopred.ratio >= 0.5,
                nopred.ratio,
                0.5,
            )
        for r, label in ((pred, "dense"), (pred_sparse, "sparse")):
            if r:
                add(
                    f"Observe client-held, predictions on the {label} 10k KB / baseline ({where})",
                    f"{r.ratio:.0%}",
                    "≥ 25%",
                    r.ratio >= 0.25,
                    r.ratio,
                    0.25,
                )
        for r, label in (
            (nopred, "no predictions"),
            (pred, "predictions, dense KB"),
            (pred_sparse, "predictions, sparse KB"),
        ):
            if r:
                add(
                    f"Observe client-held, {label}, vs KATO's 204 obs/s ({where})",
                    f"{r.rps / PUBLISHED_KATO_OBS_PER_S:.1f}x ({r.rps:,.0f}/s)",
                    "≥ 10x (2,040/s)",
                    r.rps >= 10 * PUBLISHED_KATO_OBS_PER_S,
                    r.rps,
                    10 * PUBLISHED_KATO_OBS_PER_S,
                )
                add(
                    f"Observe client-held, {label}, p99 / baseline p99 ({where})",
                    f"{r.p99_ratio:.2f}x",
                    "≤ 2x",
                    r.p99_ratio <= 2,
                    r.p99_ratio,
                    2,
                    at_least=False,
                )
    mixed, base = by_name.get("mixed-70-20-10"), _faster(by_name, "baseline")
    if mixed and base:
        observe = next(p for p in mixed.per_load if p["call"] == "Observe")
        ratio = observe["p99"] / base.p99
        add(
            "Mixed 70/20/10: Observe p99 / baseline p99 (1 worker)",
            f"{ratio:.2f}x ({observe['p99']:,.1f} / {base.p99:,.1f} ms)",
            "≤ 2x",
            ratio <= 2,
            ratio,
            2,
            at_least=False,
        )
    calm, paused = by_name.get("pause-none"), by_name.get("pause-redis")
    if calm and paused:
        for call, label in (("Check", "health"), ("Observe", "client-held Observe")):
            before = next(p for p in calm.per_load if p["call"] == call)
            during = next(p for p in paused.per_load if p["call"] == call)
            ratio = during["p99"] / before["p99"]
            add(
                f"Redis paused: {label} p99 / its p99 without a pause (1 worker)",
                f"{ratio:.2f}x ({during['p99']:,.1f} / {before['p99']:,.1f} ms)",
                "≤ 2x" if call == "Check" else "–",
                ratio <= 2 if call == "Check" else None,
                ratio,
                2,
                at_least=False,
            )
    one, two = by_name.get("observe-client-nopred"), by_name.get("observe-client-nopred-w2")
    if one and two:
        add(
            "Observe client-held, no predictions: 2 workers / 1 worker",
            f"{two.rps / one.rps:.2f}x ({two.rps:,.0f} / {one.rps:,.0f}/s)",
            "≥ 1.7x",
            two.rps / one.rps >= 1.7,
            two.rps / one.rps,
            1.7,
        )
    threads1, threads2 = by_name.get("observe-client-pred-sparse-t1"), by_name.get("observe-client-pred-sparse")
    if threads1 and threads2:
        add(
            "Observe with predictions (sparse): --cpu-threads 2 / --cpu-threads 1 (1 worker)",
            f"{threads2.rps / threads1.rps:.2f}x ({threads2.rps:,.0f} / {threads1.rps:,.0f}/s)",
            "–",
            None,
        )
    stream = by_name.get("stream-observations")
    if stream:
        streamed = next(p for p in stream.per_load if p["call"] == "StreamObservations")
        unary = next(p for p in stream.per_load if p["call"] == "Observe")
        ratio = streamed["per_s"] / unary["per_s"]
        add(
            "StreamObservations obs/s / unary Observe obs/s (same run, 1 worker)",
            f"{ratio:.2f}x ({streamed['per_s']:,.0f} / {unary['per_s']:,.0f}/s)",
            "≥ 2x",
            ratio >= 2,
            ratio,
            2,
        )
    return rows


def _faster(by_name: dict[str, Result], baseline: str) -> Result | None:
    runs = [r for r in (by_name.get(baseline), by_name.get(baseline + "-repeat")) if r]
    return max(runs, key=lambda r: r.rps) if runs else None


def write_report(results: list[Result], path: Path, meta: dict) -> None:
    by_name = {r.name: r for r in results}
    lines = [
        "# KATO gRPC load tests (ghz)",
        "",
        f"Generated by `make loadtest` (`loadtest/run.py`) on {meta['date']}; commit `{meta['commit']}`.",
        f"Machine: {meta['cpus']} CPU(s) ({meta['cpu_model']}), Linux {meta['kernel']}, Python {meta['python']}, "
        f"grpcio {meta['grpcio']}, ghz {meta['ghz']}, redis-server {meta['redis']}. ",
        f"Client (ghz) and server share the same {meta['cpus']} cores on loopback, so ghz's own CPU is taken from "
        "the server. The machine is also shared with other developers' builds and test suites, which come and go "
        "during a run: the *other CPU* column says how much of the 2 cores they took in each scenario, and figures "
        "taken under outside load are depressed (ratios between scenarios measured under different outside load "
        "are skewed either way). " + meta["duration_note"],
        "",
        f"Knowledge bases: `{KB10K}` (*dense*) holds {meta['patterns']:,} patterns of 5 one-symbol events over "
        f"{meta['vocabulary']:,} symbols (each symbol in ~{5 * meta['patterns'] // meta['vocabulary']:,} patterns, so "
        f"a prediction scores ~{30 * meta['patterns'] // meta['vocabulary']:,} candidates, nearly all above the "
        f"default recall_threshold 0.1), seeded in {meta['seed_seconds']:.1f}s through "
        f"ObserveSequence(learn_at_end); `{KB10K_SPARSE}` (*sparse*) the same count over "
        f"{10 * meta['vocabulary']:,} symbols (~{3 * meta['patterns'] // meta['vocabulary']:,} candidates), the shape "
        "loadtest/bench_kb.py uses. Observe requests carry a client-held STM "
        "of 5 events (2 random symbols, then the first 3 events of a stored pattern) and observe the pattern's 4th "
        "event, drawn from 1,000 variants; with predictions, `return_predictions` is true (the default "
        "`max_predictions` 100 predictions come back, once, in the response).",
        "",
        "Stacks: **A** `--workers 1 --max-stm-events 6`; **B** the same data served by `--workers 2` "
        "(SO_REUSEPORT, two processes; ghz's 10 connections are spread over them by the kernel); **C** `--workers 1` "
        "with the default STM cap (1000) for the mixed workload and the isolation stress, compared with stack A's "
        "baseline (the same single process; the STM cap does not touch a health check). Server-held sessions are "
        "in one redis-server (`--save '' --appendonly no`). ghz opens one connection per 10 workers "
        "(`--connections`, rounded up): 100 workers use 10 connections, 10 workers one.",
        "",
        "Columns: throughput counts successful calls; percentiles are of successful calls; *vs base* is the "
        "throughput ratio to the baseline named in the last column (health check, same stack and concurrency), "
        "*p99 vs base* likewise (a baseline run twice counts its faster run); CPU is in cores (1.00 = one core "
        "busy for the whole run) for the server "
        "process(es), Redis and ghz; *other* is CPU used by unrelated processes on the machine during the run "
        "(a high value means the figures are depressed by outside load); peak RSS is the server's VmHWM "
        + (
            "reset before each scenario."
            if all(r.rss_reset for r in results)
            else "over the server's life so far (the kernel refused a reset)."
        ),
        "",
        "| scenario | stack | workers (ghz) | calls/s | p50 ms | p95 ms | p99 ms | errors | vs base | p99 vs base "
        "| server CPU | server CPU ms / call | redis CPU | ghz CPU | other CPU | server peak RSS MB | baseline |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.stack}{' (2 proc)' if r.workers > 1 else ''} | {r.concurrency} | {r.rps:,.0f} "
            f"| {fmt(r.p50, 2)} | {fmt(r.p95, 2)} | {fmt(r.p99, 2)} | {r.error_rate:.2%} "
            f"| {'–' if r.ratio != r.ratio else f'{r.ratio:.0%}'} "
            f"| {'–' if r.p99_ratio != r.p99_ratio else f'{r.p99_ratio:.2f}x'} "
            f"| {r.server_cores:.2f} | {r.server_ms_per_call:.3f} | {r.redis_cores:.2f} | {r.ghz_cores:.2f} "
            f"| {r.other_cores:.2f} | {r.peak_rss_mb:,.0f} | {r.baseline} |"
        )
    noisy = [r.name for r in results if r.other_cores >= 0.3]
    if noisy:
        lines += [
            "",
            f"**Outside load**: other processes used ≥ 0.3 cores (of {meta['cpus']}) during "
            f"{', '.join(noisy)}; those figures are depressed by it, ratios to a baseline measured under "
            "different outside load are skewed either way.",
        ]
    lines += [
        "",
        "![throughput and latency per scenario](report.png)",
        "",
        "## Targets",
        "",
        "| target | measured | wanted | |",
        "|---|--:|--:|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(by_name)]
    lines += ["", "## Scenarios", ""]
    for r in results:
        lines.append(
            f"- **{r.name}** ({r.ok:,} ok, {r.errors:,} failed in {r.seconds:.1f}s; "
            f"status {', '.join(f'{k} {v:,}' for k, v in sorted(r.status.items()))}): {r.note}"
        )
        if len(r.per_load) > 1:
            for p in r.per_load:
                limit = f", --rps {p['rps_limit']}" if p["rps_limit"] else ""
                per = f" ({p['per_s']:,.0f} observations/s)" if p["per_s"] != p["rps"] else ""
                lines.append(
                    f"  - {p['call']} ({p['concurrency']} workers{limit}): {p['share']:.0%} of calls, "
                    f"{p['rps']:,.0f} ok/s{per}, p50 "
                    f"{fmt(p['p50'], 2)} ms, p99 {fmt(p['p99'], 2)} ms, {p['errors']:,} failed"
                )
        for p in r.per_load:
            for message, n in sorted(p["errorDistribution"].items(), key=lambda kv: -kv[1])[:3]:
                lines.append(f"  - error ×{n:,}: `{message[:160]}`")
        if r.verify:
            v = r.verify
            lines.append(
                f"  - verification with GetStm (Python client): {v['sessions']} sessions, {v['stm_events']:,} STM "
                f"events for {v['ok_calls']:,} successful calls ({v['failed_calls']:,} failed); leaks {v['leaks']}, "
                f"duplicates {v['duplicates']}, malformed {v['malformed']}, sessions at the STM cap "
                f"({v['max_stm_events']}) {v['sessions_at_cap']}: **{'passed' if v['passed'] else 'FAILED'}**"
            )
    lines += [
        "",
        "## How the data reaches ghz",
        "",
        "ghz (this version: " + meta["ghz"] + ") takes each scenario's requests as a JSON array (`--data-file`) "
        "and gives request number *n* element *n* mod length: round-robin over requests, not a fixed element "
        "per worker. Session scenarios therefore put session *k* mod *S* in element *k*, so every session gets "
        "1/*S* of the calls and at most a few are in flight at once per session (two when one call is slow), "
        "which the server's compare-and-set resolves. The isolation stress uses ghz's template "
        "`{{.RequestNumber}}` to put a per-request symbol `req-<n>` next to the session's own `iso-<i>`, so "
        "afterwards every STM event says which call wrote it. The mixed workload is three concurrent ghz "
        "processes (Observe 70 workers, Predict 20, Learn 10, one method each) on the same 100 sessions; its "
        "Learn calls that find an STM emptied by the previous Learn get FAILED_PRECONDITION, an expected "
        "answer counted in the error column (rare once the shares are throttled with --rps).",
        "",
    ]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- main
def build_protoset(path: Path) -> None:
    """kato_v1.binpb (protos/ with imports) plus grpc.health.v1, for ghz --protoset."""
    fds = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "kato_grpc" / "_proto" / "kato_v1.binpb").read_bytes())
    names = {f.name for f in fds.file}
    if health_pb2.DESCRIPTOR.name not in names:
        health = descriptor_pb2.FileDescriptorProto()
        health_pb2.DESCRIPTOR.CopyToProto(health)
        fds.file.append(health)
    path.write_bytes(fds.SerializeToString())


def meta_info(ghz: str, args, seed_seconds: float) -> dict:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return "?"

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    redis_v = re.search(r"v=(\S+)", run([shutil.which("redis-server") or "/usr/bin/redis-server", "--version"]))
    dirty = run(["git", "status", "--porcelain", "--", "kato_grpc"])
    return {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": (run(["git", "rev-parse", "--short", "HEAD"]) or "?") + (" + uncommitted changes" if dirty else ""),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "ghz": ghz_version(ghz),
        "redis": redis_v.group(1) if redis_v else "?",
        "patterns": args.patterns,
        "vocabulary": args.vocabulary,
        "seed_seconds": seed_seconds,
        "duration_note": f"Each scenario runs {args.seconds:g}s"
        + (
            f", after waiting up to {args.quiet_wait:g}s for other processes to go quiet (< 0.3 cores)"
            if args.quiet_wait > 0
            else ""
        )
        + (
            f"; redis-server, the server(s) and ghz ran at niceness {args.nice} (`--nice`) to keep "
            "other processes of this shared machine from taking their cores."
            if args.nice
            else "."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="ghz duration per scenario")
    parser.add_argument("--patterns", type=int, default=10_000, help="patterns in the knowledge base kb10k")
    parser.add_argument("--vocabulary", type=int, default=1_000, help="symbols the patterns draw from")
    parser.add_argument("--out", type=Path, default=HERE, help="directory for report.md and report.png")
    parser.add_argument("--keep-raw", type=Path, default=None, help="copy ghz's JSON reports here")
    parser.add_argument("--only", default="", help="comma-separated scenario name prefixes to run (baselines kept)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=6.0,
        help="before each scenario, wait up to this many seconds for other processes to use < 0.3 "
        "cores (a shared machine depresses every figure); 0 turns it off",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run redis-server, the server(s) and ghz at this niceness (e.g. -10, needs root) so "
        "that other load on a shared machine disturbs the figures less",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="2s per scenario, 500 patterns, report into a temporary directory (CI)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.patterns, args.quiet_wait = min(args.seconds, 2.0), min(args.patterns, 500), 0.0
        if args.out == HERE:
            args.out = Path(tempfile.mkdtemp(prefix="kato-loadtest-smoke-"))
    args.out.mkdir(parents=True, exist_ok=True)
    only = [p for p in args.only.split(",") if p]

    def wanted(name: str) -> bool:
        return not only or name.startswith("baseline") or any(name.startswith(p) for p in only)

    global NICE
    NICE = args.nice
    ghz = find_ghz()
    started = time.perf_counter()
    results: list[Result] = []
    data = Data(args.patterns, args.vocabulary)
    sparse = Data(args.patterns, args.vocabulary * 10, seed=8, kb_id=KB10K_SPARSE)
    with tempfile.TemporaryDirectory(prefix="kato-loadtest-") as tmp:
        work = Path(tmp)
        protoset = work / "kato_and_health.binpb"
        build_protoset(protoset)
        runner = Runner(ghz, protoset, work, args.seconds, args.keep_raw, args.quiet_wait)
        redis = Redis(work / "redis")
        data_dir = work / "data"
        servers: list[Server] = []

        def log(message: str) -> None:
            print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

        def run(scenario: Scenario, server: Server) -> None:
            if not wanted(scenario.name):
                return
            log(f"{scenario.name} ({sum(load.concurrency for load in scenario.loads)} workers, stack {scenario.stack})")
            r = runner.run(scenario, server, redis)
            results.append(r)
            set_ratios(results)
            log(
                f"  {r.rps:,.0f} ok/s  p50 {r.p50:.2f}  p95 {r.p95:.2f}  p99 {r.p99:.2f} ms  errors "
                f"{r.error_rate:.2%}  server {r.server_cores:.2f} cores  other {r.other_cores:.2f}  "
                + (f"vs base {r.ratio:.0%}" if r.ratio == r.ratio else "")
                + (f"  verify {r.verify}" if r.verify else "")
            )

        def health(name: str, c: int, stack: str, repeat: bool = False) -> Scenario:
            note = f"grpc.health.v1.Health/Check, {c} workers: the stack's no-op ceiling."
            if repeat:
                note = (
                    f"{name} again, after the stack's other scenarios; ratios use the faster of the two runs "
                    "(outside load may have depressed one)."
                )
            return Scenario(
                name + ("-repeat" if repeat else ""),
                stack,
                [Load(HEALTH, {}, c)],
                baseline=name,
                group="baseline",
                note=note,
            )

        try:
            # ---------------- stack A: 1 worker, STM cap 6 -----------------------------------
            a = Server("A", data_dir, redis.url, 1, ("--max-stm-events", "6"))
            servers.append(a)
            log(f"stack A at {a.target} (pid {a.pids[0]}); redis {redis.url}; seeding {args.patterns:,} patterns")
            seed_seconds = seed_kb(a.target, KB10K, data.kb_patterns)
            log(f"seeded in {seed_seconds:.1f}s")
            if wanted("observe-client-pred-sparse"):
                log(f"seeded {KB10K_SPARSE} in {seed_kb(a.target, KB10K_SPARSE, sparse.kb_patterns):.1f}s")
            run(health("baseline", 100, "A"), a)
            run(
                Scenario(
                    "observe-client-nopred",
                    "A",
                    [Load(KATO + "Observe", data.observe_client(1000, False), 100)],
                    "baseline",
                    "Observe, client-held STM of 5 events, process_predictions false, 100 workers.",
                ),
                a,
            )
            run(
                Scenario(
                    "observe-client-pred",
                    "A",
                    [Load(KATO + "Observe", data.observe_client(1000, True), 100)],
                    "baseline",
                    f"Observe, client-held STM of 5 events, predictions on the {args.patterns:,}-"
                    "pattern KB (return_predictions true), 100 workers.",
                ),
                a,
            )
            run(
                Scenario(
                    "observe-client-pred-sparse",
                    "A",
                    [Load(KATO + "Observe", sparse.observe_client(1000, True), 100)],
                    "baseline",
                    f"As observe-client-pred on {KB10K_SPARSE}: {args.patterns:,} patterns over "
                    f"{sparse.vocabulary:,} symbols (each symbol in ~{5 * args.patterns // sparse.vocabulary} "
                    "patterns, so ~10x fewer candidates per prediction).",
                ),
                a,
            )

            sessions = (
                create_sessions(a.target, [KB10K], 100, False, data)
                if any(wanted(n) for n in ("observe-sessions-1kb", "scaling"))
                else []
            )
            sessions_pred = (
                create_sessions(a.target, [KB10K], 100, True, data) if wanted("observe-sessions-1kb-pred") else []
            )
            sessions_100kb = (
                create_sessions(a.target, [f"kb-{i:03d}" for i in range(100)], 100, False, data)
                if wanted("observe-sessions-100kb")
                else []
            )
            run(
                Scenario(
                    "observe-sessions-1kb",
                    "A",
                    [Load(KATO + "Observe", data.by_session(sessions, 10), 100)],
                    "baseline",
                    "Observe, server-held sessions in Redis: 100 sessions on kb10k (one per ghz "
                    "worker, round-robin), STM kept at 6 events, process_predictions false.",
                ),
                a,
            )
            run(
                Scenario(
                    "observe-sessions-1kb-pred",
                    "A",
                    [Load(KATO + "Observe", data.by_session(sessions_pred, 10), 100)],
                    "baseline",
                    "As observe-sessions-1kb with process_predictions true (predictions kept in the session, "
                    "not returned).",
                ),
                a,
            )
            run(
                Scenario(
                    "observe-sessions-100kb",
                    "A",
                    [Load(KATO + "Observe", data.by_session(sessions_100kb, 10), 100)],
                    "baseline",
                    "Observe, 100 server-held sessions on 100 different kb ids (empty KBs; predictions off).",
                ),
                a,
            )
            run(
                Scenario(
                    "learn-client-1kb",
                    "A",
                    [Load(KATO + "Learn", data.learn_client(1000, ["learn-1"]), 100)],
                    "baseline",
                    "Learn of a client-held STM of 3 events (random symbols, 1,000 variants) "
                    "into one kb id; each is a durable SQLite commit.",
                ),
                a,
            )
            run(
                Scenario(
                    "learn-client-100kb",
                    "A",
                    [Load(KATO + "Learn", data.learn_client(1000, [f"learn-{i:03d}" for i in range(100)]), 100)],
                    "baseline",
                    "As learn-client-1kb, spread over 100 kb ids.",
                ),
                a,
            )
            if wanted("scaling"):
                for c in (1, 10):
                    run(health(f"baseline-c{c}", c, "A"), a)
                for c in (1, 10, 100):
                    run(
                        Scenario(
                            f"scaling-sessions-{c}",
                            "A",
                            [Load(KATO + "Observe", data.by_session(sessions[:c], max(10, 1000 // c)), c)],
                            "baseline" if c == 100 else f"baseline-c{c}",
                            f"Observe on {c} server-held session(s) (kb10k, predictions off), {c} ghz "
                            "worker(s): one call in flight per session.",
                        ),
                        a,
                    )
            if wanted("pause"):
                pause_sessions = create_sessions(a.target, [KB10K], 10, False, data)

                def pause_loads() -> list[Load]:
                    return [
                        Load(HEALTH, {}, 10, "health"),
                        Load(KATO + "Observe", data.observe_client(1000, False), 50, "client-held"),
                        Load(KATO + "Observe", data.by_session(pause_sessions, 10), 10, "server-held"),
                    ]

                note = (
                    "Three concurrent ghz processes: health checks (10 workers), client-held Observe without "
                    "predictions (50 workers, needs no Redis) and server-held Observe (10 workers, needs Redis)"
                )
                run(Scenario("pause-none", "A", pause_loads(), "baseline", note + "; Redis answers throughout."), a)
                pause_at, pause_for = args.seconds * 0.2, args.seconds * 0.6
                run(
                    Scenario(
                        "pause-redis",
                        "A",
                        pause_loads(),
                        "baseline",
                        note + f"; Redis is paused (SIGSTOP) from {pause_at:g}s for {pause_for:g}s. Server-held "
                        "calls then fail (UNAVAILABLE at --redis-timeout-seconds, default 5s), the others should "
                        "not notice.",
                        during=lambda seconds: redis.pause_during(seconds, pause_at, pause_for),
                    ),
                    a,
                )
            if wanted("stream"):
                run(
                    Scenario(
                        "stream-observations",
                        "A",
                        [
                            Load(KATO + "StreamObservations", data.stream(100), 20, "stream", per_call=100),
                            Load(KATO + "Observe", data.observe_client(1000, False), 50, "unary"),
                        ],
                        "baseline",
                        "Two concurrent ghz processes on one server: StreamObservations (20 workers, each call "
                        "one stream: open a client-held state, 100 observations, predictions off) and unary "
                        "client-held Observe (50 workers, predictions off). Observations/s compare the two "
                        "feeds under the same load.",
                    ),
                    a,
                )
            run(health("baseline", 100, "A", repeat=True), a)
            a.stop()

            # ---------------- stack A1: 1 worker, one engine thread -----------------------------
            if wanted("observe-client-pred-sparse-t1"):
                a1 = Server("A1", data_dir, redis.url, 1, ("--max-stm-events", "6", "--cpu-threads", "1"))
                servers.append(a1)
                log(f"stack A1 at {a1.target} (pid {a1.pids[0]})")
                run(
                    Scenario(
                        "observe-client-pred-sparse-t1",
                        "A1",
                        [Load(KATO + "Observe", sparse.observe_client(1000, True), 100)],
                        "baseline",
                        "observe-client-pred-sparse with --cpu-threads 1 (stack A runs the default, one thread "
                        "per core: 2): the Python engine holds the GIL, so a second thread should not add "
                        "throughput until the native engine releases it.",
                    ),
                    a1,
                )
                a1.stop()

            # ---------------- stack B: 2 workers, SO_REUSEPORT ----------------------------------
            if any(
                wanted(n)
                for n in ("observe-client-nopred-w2", "observe-client-pred-w2", "observe-client-pred-sparse-w2")
            ):
                b = Server("B", data_dir, redis.url, 2, ("--max-stm-events", "6"))
                servers.append(b)
                log(f"stack B at {b.target} (pids {b.pids})")
                run(health("baseline-w2", 100, "B"), b)
                run(
                    Scenario(
                        "observe-client-nopred-w2",
                        "B",
                        [Load(KATO + "Observe", data.observe_client(1000, False), 100)],
                        "baseline-w2",
                        "observe-client-nopred on 2 server processes.",
                    ),
                    b,
                )
                run(
                    Scenario(
                        "observe-client-pred-w2",
                        "B",
                        [Load(KATO + "Observe", data.observe_client(1000, True), 100)],
                        "baseline-w2",
                        "observe-client-pred on 2 server processes.",
                    ),
                    b,
                )
                run(
                    Scenario(
                        "observe-client-pred-sparse-w2",
                        "B",
                        [Load(KATO + "Observe", sparse.observe_client(1000, True), 100)],
                        "baseline-w2",
                        "observe-client-pred-sparse on 2 server processes.",
                    ),
                    b,
                )
                run(health("baseline-w2", 100, "B", repeat=True), b)
                b.stop()

            # ---------------- stack C: 1 worker, default STM cap ---------------------------------
            if wanted("mixed") or wanted("isolation"):
                cap = 1000
                c_srv = Server("C", data_dir, redis.url, 1, ("--max-stm-events", str(cap)))
                servers.append(c_srv)
                log(f"stack C at {c_srv.target} (pid {c_srv.pids[0]})")
                if wanted("mixed"):
                    mixed = create_sessions(c_srv.target, [KB10K], 100, False, data)
                    run(
                        Scenario(
                            "mixed-70-20-10",
                            "C",
                            [
                                Load(KATO + "Observe", data.by_session(mixed, 10), 70, "70%", share=0.7),
                                Load(KATO + "Predict", data.by_session(mixed, 1, observe=False), 20, "20%", share=0.2),
                                Load(KATO + "Learn", data.by_session(mixed, 1, observe=False), 10, "10%", share=0.1),
                            ],
                            "baseline",
                            "Three concurrent ghz processes (one method each) on the same 100 server-held "
                            "sessions of kb10k (predictions off for Observe): Observe 70 workers, Predict 20, "
                            "Learn 10, each offered its share of the calls with ghz --rps.",
                            calibrate=True,
                        ),
                        c_srv,
                    )
                if wanted("isolation"):
                    iso = create_sessions(c_srv.target, ["iso"], 100, False, None)
                    iso_data = [
                        {"session_id": sid, "observation": {"strings": [f"iso-{i}", "req-{{.RequestNumber}}"]}}
                        for i, sid in enumerate(iso)
                    ]
                    run(
                        Scenario(
                            "isolation-100-sessions",
                            "C",
                            [Load(KATO + "Observe", iso_data, 100)],
                            "baseline",
                            "100 server-held sessions on one kb id under load; afterwards GetStm of every session "
                            "is checked.",
                            verify=isolation_check(c_srv.target, iso, cap),
                        ),
                        c_srv,
                    )
                c_srv.stop()
        finally:
            for s in servers:
                s.stop()
            redis.stop()

    meta = meta_info(ghz, args, seed_seconds if "seed_seconds" in locals() else float("nan"))
    set_ratios(results)
    write_report(results, args.out / "report.md", meta)
    write_plot(results, args.out / "report.png")
    print(f"\nwrote {args.out / 'report.md'} and {args.out / 'report.png'} in {time.perf_counter() - started:.0f}s")
    for a_, b_, c_, d_ in target_rows({r.name: r for r in results}):
        print(f"  {a_}: {b_} (wanted {c_}) {d_.strip('*')}")
    failed = [r for r in results if r.verify and not r.verify["passed"]]
    if failed:
        print("isolation check FAILED:", [r.verify for r in failed])
        sys.exit(1)


if __name__ == "__main__":
    main()
