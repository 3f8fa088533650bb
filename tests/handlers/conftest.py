"""Fixtures of the handler tests: a server in the test process and a client of it.

Every test gets its own server (memory stores, 127.0.0.1:0), so no test sees another's
knowledge bases; see tests/support/inprocess.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kato_client import KatoClient

from tests.support.inprocess import InProcessServer


@pytest.fixture
def server() -> Iterator[InProcessServer]:
    with InProcessServer() as started:
        yield started


@pytest.fixture
def kato(server: InProcessServer) -> Iterator[KatoClient]:
    with KatoClient(server.target) as client:
        yield client
