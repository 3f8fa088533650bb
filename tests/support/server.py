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

    def start(self, timeout: float = 30.0) -> ServerProcess:
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
                threading.Thread(target=self._drain, daemon=True).start()
                self.wait_healthy()
                return self
        self.process.kill()
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

    def wait_healthy(self, timeout: float = 10.0) -> None:
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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


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
