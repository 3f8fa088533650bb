"""Fixtures of the end-to-end tests: real `kato-grpc serve` processes, clients, kb ids.

`kato_server` (tests/conftest.py) is one server shared by the whole run; tests that need
their own flags, environment or data directory start one with `start_server`, which
stops every server it started when the test ends.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from kato_client import KatoClient

from tests.support.server import ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def kb_id(request: pytest.FixtureRequest) -> str:
    """A knowledge-base id no other test uses, readable in server logs."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", request.node.name)[:60]
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(kato_server: ServerProcess) -> Iterator[KatoClient]:
    with KatoClient(kato_server.target) as kato:
        yield kato


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """`start_server(*flags, env={}, data_dir=None)` starts a server for this test."""
    started: list[ServerProcess] = []

    def start(*flags: str, env: dict[str, str] | None = None, data_dir: str | None = None) -> ServerProcess:
        data_dir = data_dir or str(tmp_path_factory.mktemp("kato-data"))
        server = ServerProcess(["--data-dir", data_dir, *flags], env=dict(env or {}))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
