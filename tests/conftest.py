"""Fixtures shared by every test directory.

`conformance_adapter_factory` is parametrised over the back ends in
`CONFORMANCE_BACKENDS`: each entry maps a name (the pytest param id) to a function that
receives the fixture `request` (so it may pull in other fixtures, e.g. a running server,
with `request.getfixturevalue`) and returns a zero-argument factory of fresh
`EngineAdapter`s (tests/conformance/runner.py). A back end added here (e.g. "grpc") is
picked up by tests/conformance/test_conformance.py with no other change.
"""

from __future__ import annotations

from typing import Callable

import pytest


def _core_backend(request: pytest.FixtureRequest) -> Callable[[], object]:
    try:
        from tests.conformance.core_adapter import CoreAdapter
    except ModuleNotFoundError as exc:  # the core engine is not written yet
        if exc.name and exc.name.startswith("kato_grpc.core"):
            pytest.skip(f"core engine unavailable: {exc}")
        raise
    return CoreAdapter


def _grpc_backend(mode: str) -> Callable[[pytest.FixtureRequest], Callable[[], object]]:
    def backend(request: pytest.FixtureRequest) -> Callable[[], object]:
        from tests.conformance.grpc_adapter import GrpcAdapter

        server = request.getfixturevalue("kato_server")
        adapters: list[GrpcAdapter] = []

        def factory() -> GrpcAdapter:
            adapters.append(GrpcAdapter(server.target, mode))
            return adapters[-1]

        request.addfinalizer(lambda: [a.close() for a in adapters])
        return factory

    return backend


CONFORMANCE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Callable[[], object]]] = {
    "core": _core_backend,
    "grpc-client-held": _grpc_backend("client"),
    "grpc-server-held": _grpc_backend("server"),
}


@pytest.fixture(scope="session")
def kato_server(tmp_path_factory: pytest.TempPathFactory):
    """One real server process (embedded SQLite store) shared by the session's tests."""
    from tests.support.server import ServerProcess

    server = ServerProcess(["--data-dir", str(tmp_path_factory.mktemp("kato-data"))]).start()
    yield server
    server.stop()


@pytest.fixture(params=sorted(CONFORMANCE_BACKENDS))
def conformance_adapter_factory(request: pytest.FixtureRequest) -> Callable[[], object]:
    """A factory of fresh conformance adapters for one back end."""
    return CONFORMANCE_BACKENDS[request.param](request)
