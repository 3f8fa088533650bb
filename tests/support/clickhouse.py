"""A real `clickhouse-server` for tests: ephemeral loopback ports, a private data dir, killable.

    server = ClickHouseServer(tmp_dir).start()   # waits until `SELECT 1` answers
    server.url                                   # clickhouse://127.0.0.1:<tcp port>/kato
    server.kill()                                # SIGKILL, as a crash would
    server.start()                               # again, same ports and data directory
    server.stop()

Everything the server writes (data, tmp, user files, logs, the config itself) lives
under `workdir`, so tests never touch /var/lib/clickhouse or /etc. Raises
`ClickHouseUnavailable` (the fixtures report it as missing: a skip, a failure under CI) when no server binary
is installed (Debian: apt-get install clickhouse-server).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ClickHouseServer", "ClickHouseUnavailable", "clickhouse_server_command"]


class ClickHouseUnavailable(RuntimeError):
    """No clickhouse-server binary here."""


def clickhouse_server_command() -> list[str]:
    """The command that runs the server: `clickhouse-server`, or `clickhouse server`."""
    for name in ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return [found]
    single = shutil.which("clickhouse") or (
        "/usr/bin/clickhouse" if os.access("/usr/bin/clickhouse", os.X_OK) else None
    )
    if single:
        return [single, "server"]
    raise ClickHouseUnavailable("clickhouse-server is not installed (Debian: apt-get install clickhouse-server)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{work}/log/clickhouse-server.log</log>
        <errorlog>{work}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{work}/data/</path>
    <tmp_path>{work}/tmp/</tmp_path>
    <user_files_path>{work}/user_files/</user_files_path>
    <format_schema_path>{work}/format_schemas/</format_schema_path>
    <users_config>{work}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <mlock_executable>false</mlock_executable>
    <timezone>UTC</timezone>
    <umask>022</umask>
{extra}
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


@dataclass
class ClickHouseServer:
    """One clickhouse-server child process; ports and data survive kill / start."""

    workdir: Path
    database: str = "kato"
    extra_config: str = ""
    """XML placed inside <yandex> (e.g. <remote_servers>); `{tcp_port}` is substituted."""
    tcp_port: int = 0
    http_port: int = 0
    process: subprocess.Popen | None = None
    starts: int = field(default=0)

    @property
    def url(self) -> str:
        return f"clickhouse://127.0.0.1:{self.tcp_port}/{self.database}"

    def url_for(self, database: str) -> str:
        return f"clickhouse://127.0.0.1:{self.tcp_port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _write_config(self) -> Path:
        for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "users.xml").write_text(_USERS)
        config = self.workdir / "config.xml"
        extra = self.extra_config.replace("{tcp_port}", str(self.tcp_port))
        config.write_text(
            _CONFIG.format(work=self.workdir, tcp_port=self.tcp_port, http_port=self.http_port, extra=extra)
        )
        return config

    def start(self, timeout: float = 60.0) -> ClickHouseServer:
        """Start (or restart) and wait until `SELECT 1` answers on the native port."""
        command = clickhouse_server_command()
        self.workdir = Path(self.workdir).resolve()
        for attempt in range(5):
            if not self.starts and (not self.tcp_port or attempt):
                self.tcp_port, self.http_port = _free_port(), _free_port()
            config = self._write_config()
            out = open(self.workdir / "log" / "stdout.log", "ab")
            self.process = subprocess.Popen(
                [*command, f"--config-file={config}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
            out.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if self.ping():
                    self.starts += 1
                    return self
                time.sleep(0.1)
            self.kill()
            if self.starts:  # a restart keeps its ports: give the kernel a moment to release them
                time.sleep(0.5)
        raise RuntimeError(f"clickhouse-server did not start on port {self.tcp_port}:\n{self.log()[-4000:]}")

    def ping(self) -> bool:
        from clickhouse_driver import Client

        client = Client(host="127.0.0.1", port=self.tcp_port, connect_timeout=1, send_receive_timeout=5)
        try:
            return client.execute("SELECT 1") == [(1,)]
        except Exception:
            return False
        finally:
            client.disconnect()

    def kill(self) -> None:
        """SIGKILL, no shutdown: what clients see when ClickHouse crashes."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def stop(self) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        """SIGSTOP its whole process group: a hung ClickHouse (connections stay open)."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def restart(self) -> ClickHouseServer:
        self.kill()
        return self.start()

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "clickhouse-server.err.log"):
            path = self.workdir / "log" / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)
