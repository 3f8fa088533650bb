"""A real `redis-server` for tests: ephemeral loopback port, no persistence (unless
`extra_args` turn it on), killable.

    server = RedisServer(tmp_dir).start()   # waits for PING
    server.url                              # redis://127.0.0.1:<port>/0
    server.kill()                           # SIGKILL, as a crash would
    server.pause(); server.resume()         # SIGSTOP / SIGCONT, a hung Redis
    server.start()                          # again, on the same port (empty: --save '')
    server.stop()

Raises `RedisUnavailable` when redis-server is not installed; the fixtures report it as
missing (a skip, or a failure under CI=true: tests/support/requirements.py).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RedisServer", "RedisUnavailable", "redis_server_binary"]


class RedisUnavailable(RuntimeError):
    """redis-server is not installed here."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise RedisUnavailable("redis-server is not installed (Debian: apt-get install redis-server)")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """One redis-server child process; `port` is kept across kill / start."""

    workdir: Path
    port: int = 0
    process: subprocess.Popen | None = None
    starts: int = field(default=0)
    # Appended to the command line, e.g. ("--appendonly", "yes") for a durable Redis.
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> RedisServer:
        """Start (or restart) on `port`, picking a free one the first time; wait for PING."""
        binary = redis_server_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            if not self.port or (attempt and not self.starts):
                self.port = _free_port()
            log = open(self.workdir / "redis.log", "ab")
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
                    str(self.workdir),
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "yes",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if _ping(self.port):
                    self.starts += 1
                    return self
                time.sleep(0.02)
            self.kill()
            if self.starts:  # a restart must keep its port: wait for it to be released
                time.sleep(0.2)
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL, no shutdown: what clients see when Redis crashes."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        if self.running:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung Redis)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""
