"""Fixtures shared by every test directory.

`conformance_adapter_factory` is parametrised over the back ends in
`CONFORMANCE_BACKENDS`: each entry maps a name (the pytest param id) to a function that
receives the fixture `request` (so it may pull in other fixtures, e.g. a running server,
with `request.getfixturevalue`) and returns a zero-argument factory of fresh
`EngineAdapter`s (tests/conformance/runner.py). A back end added here (e.g. "grpc") is
picked up by tests/conformance/test_conformance.py with no other change.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.requirements import MISSING, in_ci, missing


def _core_backend(request: pytest.FixtureRequest) -> Callable[[], object]:
    try:
        from tests.conformance.core_adapter import CoreAdapter
    except ModuleNotFoundError as exc:  # the core engine is not written yet
        if exc.name and exc.name.startswith("kato_grpc.core"):
            pytest.skip(f"core engine unavailable: {exc}")
        raise
    return CoreAdapter


def _grpc_backend(
    mode: str, server_fixture: str = "kato_server"
) -> Callable[[pytest.FixtureRequest], Callable[[], object]]:
    def backend(request: pytest.FixtureRequest) -> Callable[[], object]:
        from tests.conformance.grpc_adapter import GrpcAdapter

        server = request.getfixturevalue(server_fixture)
        adapters: list[GrpcAdapter] = []

        def factory() -> GrpcAdapter:
            adapters.append(GrpcAdapter(server.target, mode))
            return adapters[-1]

        request.addfinalizer(lambda: [a.close() for a in adapters])
        return factory

    return backend


def _native_backend(request: pytest.FixtureRequest) -> Callable[[], object]:
    """The core's operations with the compiled engine: its index and its Predict."""
    from functools import partial

    return partial(_core_backend(request), engine_name="native")


CONFORMANCE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Callable[[], object]]] = {
    "core": _core_backend,
    "core-native": _native_backend,
    "grpc-client-held": _grpc_backend("client"),
    "grpc-server-held": _grpc_backend("server"),
    # server-held sessions in a real redis-server (skipped when it is not installed)
    "grpc-redis": _grpc_backend("server", "kato_redis_server"),
    # server-held sessions, knowledge bases in a real clickhouse-server (skipped when missing)
    "grpc-clickhouse": _grpc_backend("server", "kato_clickhouse_server"),
    # the gRPC adapter's cases over HTTP/JSON through the gateway (gateway/, built with Go)
    "http-client-held": lambda r: __import__("tests.conformance.http_adapter", fromlist=["*"]).backend("client")(r),
    "http-server-held": lambda r: __import__("tests.conformance.http_adapter", fromlist=["*"]).backend("server")(r),
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


# --- Redis ------------------------------------------------------------------------------


def _start_redis(workdir):
    from tests.support.redis import RedisServer, RedisUnavailable

    try:
        return RedisServer(workdir).start()
    except RedisUnavailable as exc:
        missing(f"a real Redis ({exc})")


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A fresh `redis-server` on an ephemeral loopback port, no persistence.

    Yields a `tests.support.redis.RedisServer`: `.url` to connect, `.kill()` to crash it,
    `.start()` to bring it back on the same port (empty). Skips if redis-server is missing.
    """
    server = _start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One `redis-server` for the whole run; for tests that never stop it."""
    server = _start_redis(tmp_path_factory.mktemp("redis-shared"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kato_redis_server(shared_redis_server, tmp_path_factory: pytest.TempPathFactory):
    """One real server process keeping its sessions in `shared_redis_server`."""
    from tests.support.server import ServerProcess

    server = ServerProcess(
        ["--data-dir", str(tmp_path_factory.mktemp("kato-redis-data")), "--redis-url", shared_redis_server.url]
    ).start()
    yield server
    server.stop()


# --- ClickHouse -------------------------------------------------------------------------


def _start_clickhouse(workdir):
    from tests.support.clickhouse import ClickHouseServer, ClickHouseUnavailable

    try:
        return ClickHouseServer(workdir).start()
    except ClickHouseUnavailable as exc:
        missing(f"a real ClickHouse ({exc})")


@pytest.fixture
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory):
    """A fresh `clickhouse-server` of its own, on ephemeral loopback ports.

    Yields a `tests.support.clickhouse.ClickHouseServer`: `.url` to connect, `.kill()`
    to crash it, `.start()` to bring it back (same ports, same data). Skips if
    clickhouse-server is missing. For tests that stop it; others share one server.
    """
    server = _start_clickhouse(tmp_path_factory.mktemp("clickhouse"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_clickhouse_server(tmp_path_factory: pytest.TempPathFactory):
    """One `clickhouse-server` for the whole run; tests use a database each and never stop it."""
    server = _start_clickhouse(tmp_path_factory.mktemp("clickhouse-shared"))
    yield server
    server.stop()


@pytest.fixture
def clickhouse_url(shared_clickhouse_server) -> str:
    """A URL to a database of its own (created by the store) on the shared server."""
    import uuid

    return shared_clickhouse_server.url_for(f"kato_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def kato_clickhouse_server(shared_clickhouse_server, tmp_path_factory: pytest.TempPathFactory):
    """One real server process keeping its knowledge bases in `shared_clickhouse_server`."""
    from tests.support.server import ServerProcess

    server = ServerProcess(
        [
            "--data-dir",
            str(tmp_path_factory.mktemp("kato-clickhouse-data")),
            "--clickhouse-url",
            shared_clickhouse_server.url_for("kato_conformance"),
        ]
    ).start()
    yield server
    server.stop()


# --- what a test needs: markers, and no passing by skipping under CI --------------------

# Fixtures that start a process of a back end; a test using one gets that back end's marker.
_FIXTURE_MARKERS: dict[str, tuple[str, ...]] = {
    "redis_server": ("redis",),
    "shared_redis_server": ("redis",),
    "shared_clickhouse_server": ("clickhouse",),
    "clickhouse_server": ("clickhouse",),
    "kato_server": ("e2e",),
    "start_server": ("e2e",),
}
# Conformance back ends are picked by parameter, not by fixture name.
_CONFORMANCE_MARKERS: dict[str, tuple[str, ...]] = {
    "grpc-client-held": ("e2e",),
    "grpc-server-held": ("e2e",),
    "grpc-redis": ("e2e", "redis"),
    "grpc-clickhouse": ("e2e", "clickhouse"),
    "http-client-held": ("e2e",),
    "http-server-held": ("e2e",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the back ends it starts, so `-m "not redis"` and make test-fast work."""
    for item in items:
        names: set[str] = set()
        for fixture in getattr(item, "fixturenames", ()):
            names.update(_FIXTURE_MARKERS.get(fixture, ()))
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "conformance_adapter_factory" in callspec.params:
            names.update(_CONFORMANCE_MARKERS.get(callspec.params["conformance_adapter_factory"], ()))
        if item.path.parent.name == "e2e":
            names.add("e2e")
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            names.add("slow")  # a property: hundreds of examples, seconds each
        for name in sorted(names):
            item.add_marker(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Under CI=true a skip for something missing (a `needs(...)` marker) is a failure."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and in_ci() and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if MISSING in reason:
            report.outcome = "failed"
            report.longrepr = f"CI=true and the test was skipped for what this machine lacks: {reason}"
