"""HTTP/JSON through the gateway next to gRPC, and the cost of tracing: loadtest/http-report.md.

    .venv/bin/python loadtest/http_gateway.py                # ~2 min
    .venv/bin/python loadtest/http_gateway.py --seconds 3    # a quick look, report in a temp dir

One client-held Observe (a signed state of 5 one-symbol events, one symbol observed, no
predictions, an empty knowledge base: the serving path, not the engine) is sent at
concurrency `--concurrency` for `--seconds`, on 127.0.0.1:

- gRPC: ghz straight to `kato-grpc serve --workers 1`;
- HTTP/JSON: hey (`go install github.com/rakyll/hey@v0.1.4`) to `kato-gateway`
  (`POST /v1/sessions:observe`), which calls the same server;
- gRPC with tracing on: the server exporting every span over OTLP/gRPC to a collector in
  this process (`OTEL_EXPORTER_OTLP_ENDPOINT`), and with tracing configured but sampled
  off (`OTEL_TRACES_SAMPLER=always_off`: the interceptor and hooks run, no span is kept).

For each: throughput (successful calls / s), p50 and p99 as the load tool reports them,
and the CPU time per call of the server and of the gateway (/proc/<pid>/stat). The
machine's other load is reported too: figures taken on a busy machine are rough.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grpc  # noqa: E402
import run  # noqa: E402  (loadtest/run.py: the ghz and /proc helpers)

ROOT = run.ROOT
OBSERVE = "kato.v1.KatoService/Observe"


def find_tool(name: str, hint: str) -> str:
    for candidate in (shutil.which(name), str(Path.home() / "go" / "bin" / name)):
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit(f"{name} not found: {hint}")


def request_body(data_dir: Path) -> dict:
    state = {"kb_id": "kb-http", "stm": [{"symbols": [f"s{i}"]} for i in range(5)], "time": 5}
    return run.signed_states({"state": state, "observation": {"strings": ["s5"]}}, data_dir)


class Stack:
    """A server (and optionally the gateway) on free loopback ports."""

    def __init__(self, workdir: Path, gateway_binary: Path | None, env: dict[str, str]) -> None:
        self.port = run.free_port()
        data = workdir / "data"
        flags = ["--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data), "--workers", "1"]
        self.server = subprocess.Popen(
            [sys.executable, "-m", "kato_grpc", "serve", *flags],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in self.server.stdout:
            if "listening on" in line:
                break
        else:
            sys.exit("the server did not start")
        threading.Thread(target=lambda: [None for _ in self.server.stdout], daemon=True).start()
        self.gateway = None
        self.http_port = 0
        if gateway_binary is not None:
            self.http_port = run.free_port()
            self.gateway = subprocess.Popen(
                [str(gateway_binary), "--listen", f"127.0.0.1:{self.http_port}", "--grpc-target", self.target],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.gateway.stdout.readline()  # "kato-gateway listening on ..."
        self.data_dir = data

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def server_pids(self) -> list[int]:
        return [self.server.pid]

    def stop(self) -> None:
        for process in (self.gateway, self.server):
            if process is not None:
                process.terminate()
                process.wait(30)


def measure(stack: Stack, command: list[str], parse) -> dict:
    server0 = run.cpu_seconds(stack.server_pids())
    gateway0 = run.cpu_seconds([stack.gateway.pid]) if stack.gateway else 0.0
    busy0, started = run.machine_busy_seconds(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    server = run.cpu_seconds(stack.server_pids()) - server0
    gateway = (run.cpu_seconds([stack.gateway.pid]) - gateway0) if stack.gateway else 0.0
    result = parse(done.stdout)
    calls = max(result["ok"], 1)
    result.update(
        server_us=server / calls * 1e6,
        gateway_us=gateway / calls * 1e6,
        machine_cores=(run.machine_busy_seconds() - busy0) / wall,
    )
    return result


def ghz(binary: str, protoset: Path, stack: Stack, data: Path, seconds: float, concurrency: int) -> list[str]:
    return [
        binary,
        "--insecure",
        "--protoset",
        str(protoset),
        "--call",
        OBSERVE,
        "--data-file",
        str(data),
        "-c",
        str(concurrency),
        "-z",
        f"{seconds}s",
        "-O",
        "json",
        stack.target,
    ]


def parse_ghz(out: str) -> dict:
    report = json.loads(out)
    ok = report["statusCodeDistribution"].get("OK", 0)
    by_quantile = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"] or []}
    return {"ok": ok, "rps": ok / (report["total"] / 1e9), "p50_ms": by_quantile.get(50), "p99_ms": by_quantile.get(99)}


def hey(binary: str, stack: Stack, body: Path, seconds: float, concurrency: int) -> list[str]:
    url = f"http://127.0.0.1:{stack.http_port}/v1/sessions:observe"
    flags = ["-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json", "-D", str(body)]
    return [binary, *flags, url]


def parse_hey(out: str) -> dict:
    ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", out))
    total = float(re.search(r"Total:\s+([\d.]+) secs", out).group(1))

    def quantile(q: int) -> float | None:
        match = re.search(rf"\s{q}% in ([\d.]+) secs", out)
        return float(match.group(1)) * 1000 if match else None

    return {"ok": ok, "rps": ok / total, "p50_ms": quantile(50), "p99_ms": quantile(99)}


def start_collector() -> tuple[grpc.Server, int, list[int]]:
    """An OTLP/gRPC trace collector that counts the spans it is sent."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    count = [0]

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            count[0] += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="report path (default loadtest/http-report.md)")
    args = parser.parse_args()
    ghz_binary = run.find_ghz()
    hey_binary = find_tool("hey", "go install github.com/rakyll/hey@v0.1.4 (lands in ~/go/bin)")
    out = args.out or (HERE / "http-report.md" if args.seconds >= 10 else Path(tempfile.mkdtemp()) / "http-report.md")

    with tempfile.TemporaryDirectory(prefix="kato-http-load-") as tmp:
        workdir = Path(tmp)
        gateway_binary = workdir / "kato-gateway"
        subprocess.run(["go", "build", "-o", str(gateway_binary), "."], cwd=ROOT / "gateway", check=True)
        protoset = ROOT / "kato_grpc" / "_proto" / "kato_v1.binpb"
        collector, collector_port, exported = start_collector()
        rows = []
        scenarios = [
            ("gRPC (ghz), tracing off", {}, "grpc"),
            ("HTTP/JSON through the gateway (hey), tracing off", {}, "http"),
            ("gRPC, tracing on, sampled off (always_off)", {"OTEL_TRACES_SAMPLER": "always_off"}, "grpc"),
            ("gRPC, tracing on, every call exported (OTLP)", {}, "grpc"),
        ]
        for index, (name, extra, kind) in enumerate(scenarios):
            env = dict(extra)
            if index >= 2:
                env.update(
                    OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector_port}",
                    OTEL_EXPORTER_OTLP_INSECURE="true",
                )
            stack_dir = workdir / f"stack{index}"
            stack_dir.mkdir()
            stack = Stack(stack_dir, gateway_binary if kind == "http" else None, env)
            try:
                body = request_body(stack.data_dir)
                data = stack_dir / "request.json"
                data.write_text(json.dumps(body))
                # one request file for both tools: proto field names, which ghz and the gateway accept
                warm = min(args.seconds, 2.0)
                if kind == "grpc":
                    measure(stack, ghz(ghz_binary, protoset, stack, data, warm, args.concurrency), parse_ghz)
                    result = measure(
                        stack, ghz(ghz_binary, protoset, stack, data, args.seconds, args.concurrency), parse_ghz
                    )
                else:
                    measure(stack, hey(hey_binary, stack, data, warm, args.concurrency), parse_hey)
                    result = measure(stack, hey(hey_binary, stack, data, args.seconds, args.concurrency), parse_hey)
            finally:
                stack.stop()
            rows.append((name, result))
            print(f"{name}: {result}", flush=True)
        collector.stop(None)

    lines = [
        "# HTTP/JSON through the gateway, and the cost of tracing",
        "",
        f"Generated by `loadtest/http_gateway.py` on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, {args.seconds:g} s per scenario at concurrency {args.concurrency}. One "
        "client-held Observe (5 events of state, 1 symbol, no predictions, empty knowledge base), "
        "`kato-grpc serve --workers 1`; the load tool, the gateway and the server share the machine.",
        "",
        "| scenario | calls/s | p50 ms | p99 ms | server CPU µs/call | gateway CPU µs/call | machine busy (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        gateway_us = f"{r['gateway_us']:.0f}" if r["gateway_us"] else "–"
        lines.append(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms'] or 0:.2f} | {r['p99_ms'] or 0:.2f} | {r['server_us']:.0f} "
            f"| {gateway_us} | {r['machine_cores']:.2f} |"
        )
    lines += [
        "",
        f"Spans received by the collector in the exported run: {exported[0]} (the warm-up's included).",
        "",
        "Read the CPU columns rather than calls/s when the machine is busy (the last column: 2.00 "
        "is every core): throughput and latency then measure the other load as much as ours.",
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
