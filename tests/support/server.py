"""Real server processes for tests: `kato-grpc serve` on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on ([\d.]+):(\d+)")


@dataclass
class ServerProcess:
    """A `kato-grpc serve` child process; `target` is host:port."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    target: str = ""
    output: list[str] = field(default_factory=list)
    # For a TLS server: how the health wait dials it (with a client certificate if asked).
    credentials: grpc.ChannelCredentials | None = None

    def start(self, timeout: float = 120.0) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'clients' / 'python'}", **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kato_grpc", "serve", "--host", "127.0.0.1", "--port", "0", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.target = f"{match.group(1)}:{match.group(2)}"
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                self.wait_healthy()
                return self
        self.process.kill()
        self._reap()
        raise RuntimeError("server did not start:\n" + "".join(self.output))

    def sign(self, state):
        """Sign a hand-made `SessionState` in place with this server's key ring; return it."""
        from tests.support.state_keys import ring_of_data_dir

        flags = dict(zip(self.args, self.args[1:], strict=False))
        if "--state-keys-file" in flags:
            from kato_grpc.server.state_signing import StateKeyRing

            ring = StateKeyRing.from_file(flags["--state-keys-file"])
        else:
            ring = ring_of_data_dir(flags["--data-dir"])
        ring.sign(state)
        return state

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        channel = (
            grpc.secure_channel(self.target, self.credentials)
            if self.credentials
            else grpc.insecure_channel(self.target)
        )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if (
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                        == health_pb2.HealthCheckResponse.SERVING
                    ):
                        return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)

    def wait_for_output(self, needle: str, count: int = 1) -> None:
        """Block until the server has printed `needle` (at least `count` times)."""
        from tests.support.waiting import wait_until

        wait_until(lambda: "".join(self.output).count(needle) >= count, f"server output {needle!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self._reap()

    def _reap(self) -> int:
        """Wait for the exited process, read the rest of its output, close the pipe."""
        assert self.process is not None
        code = self.process.wait()
        drainer = getattr(self, "_drainer", None)
        if drainer is not None:
            drainer.join(60)  # a hang guard: the pipe ends when the process (and its workers) exit
            if drainer.is_alive():
                return code
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.output.extend(self.process.stdout.readlines())
            self.process.stdout.close()
        return code


def find_tool(name: str) -> str | None:
    """A Go-installed tool (grpcurl, ghz) on PATH or in ~/go/bin, else None."""
    import shutil

    found = shutil.which(name)
    if found:
        return found
    for directory in (Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin", Path.home() / "go" / "bin"):
        if (directory / name).is_file():
            return str(directory / name)
    return None


def free_service_port() -> int:
    """A free port below the kernel's ephemeral range, for a server that binds it twice.

    `--workers 2` binds one port in each worker (SO_REUSEPORT). A port taken from the
    ephemeral range can meanwhile become the local port of some outgoing connection, and
    the second worker's bind then fails; a port below the range never is handed out that way.
    """
    import random
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(10_000, max(low, 10_001)), k=min(200, max(low, 10_001) - 10_000)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
