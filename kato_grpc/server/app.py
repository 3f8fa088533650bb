"""Wiring: build the stores from settings, create the server, serve until SIGTERM.

`create_server` returns the server and its bound port, so tests bind port 0 and dial
what they got. Health and reflection are always on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kato_grpc._proto.kato.v1 import kato_service_pb2, kato_service_pb2_grpc
from kato_grpc.kb.engines import engine_named
from kato_grpc.kb.indexed import IndexedStore
from kato_grpc.kb.sqlite import SqliteStore
from kato_grpc.server import auth, reflection, request_context, state_signing, state_size, tls, tracing
from kato_grpc.server.admission import ByteBudget, LateAnswerFilter
from kato_grpc.server.backends import BackendWatch, probes_for
from kato_grpc.server.execution import InlineSessionStore, KbGuard, Lane, OffloadedSessionStore, past_commit
from kato_grpc.server.interceptors import build_interceptors, check_settings
from kato_grpc.server.metrics import Metrics
from kato_grpc.server.servicer import KatoServicer
from kato_grpc.server.settings import Settings
from kato_grpc.server.state_codec import STATE_CODEC
from kato_grpc.sessions.base import SessionStore
from kato_grpc.sessions.memory import MemorySessionStore
from kato_grpc.sessions.request_ids import MemoryLedger, RedisLedger, RequestLedger
from kato_grpc.sessions.runner import SessionRunner

__all__ = ["Stores", "build_stores", "create_server", "serve"]

log = logging.getLogger("kato_grpc")
SERVICE_NAME = kato_service_pb2.DESCRIPTOR.services_by_name["KatoService"].full_name


@dataclass
class Stores:
    kb: IndexedStore  # a KnowledgeStore that keeps an in-process index per KB
    sessions: SessionStore
    kb_refreshes_on_read: bool = False  # every read may update the index (ClickHouse: other replicas' writes)
    sessions_block: bool = False  # session-store calls wait on the network (Redis): run them on a lane
    # Request ids that left their session record (sessions/request_ids.py); beside the sessions.
    request_ids: RequestLedger | None = None

    def close(self) -> None:
        self.sessions.close()
        if self.request_ids is not None:
            self.request_ids.close()
        self.kb.close()


def build_stores(settings: Settings) -> Stores:
    """The knowledge base and session store the settings name (embedded by default)."""
    kb: IndexedStore
    if settings.clickhouse_url:
        from kato_grpc.kb.clickhouse import ClickHouseStore

        # The socket timeouts are the call's ceiling: a stalled ClickHouse frees the thread then
        # (sync_request_timeout bounds the ping clickhouse-driver sends before each query).
        kb = ClickHouseStore(
            _with_query(settings.clickhouse_url, sync_request_timeout=settings.kb_timeout_seconds),
            send_receive_timeout=settings.kb_timeout_seconds,
            new_index=engine_named(settings.engine).new_index,
        )
    else:
        kb = SqliteStore(
            settings.data_dir,
            new_index=engine_named(settings.engine).new_index,
            request_window_seconds=settings.request_id_window_seconds,
        )
    sessions: SessionStore
    if settings.redis_url:
        from kato_grpc.sessions.redis_store import RedisSessionStore, redact_url

        sessions = RedisSessionStore.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_seconds)
        request_ids: RequestLedger = RedisLedger.from_url(settings.redis_url, redact_url(settings.redis_url))
    else:
        sessions = MemorySessionStore()
        request_ids = MemoryLedger()
    return Stores(
        kb=kb,
        sessions=sessions,
        request_ids=request_ids,
        kb_refreshes_on_read=bool(settings.clickhouse_url),
        sessions_block=bool(settings.redis_url),
    )


def _with_query(url: str, **defaults: float) -> str:
    """`url` with each of `defaults` added to its query string unless it sets it already."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in defaults.items():
        query.setdefault(key, f"{value:g}")
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class Lanes:
    """The bounded thread pools of one server process (server/execution.py)."""

    cpu: Lane
    kb: Lane
    sessions: Lane

    @classmethod
    def from_settings(cls, settings: Settings) -> Lanes:
        return cls(
            cpu=Lane(
                "cpu",
                settings.cpu_threads,
                None,
                "the engine",
                max_queue=settings.cpu_queue_length,
                hold=test_hold("cpu"),
            ),
            kb=Lane(
                "kb",
                settings.kb_threads,
                settings.kb_timeout_seconds,
                "ClickHouse" if settings.clickhouse_url else "the knowledge store",
                max_queue=settings.kb_queue_length,
                hold=test_hold("kb"),
            ),
            sessions=Lane(
                "session",
                settings.session_threads,
                settings.redis_timeout_seconds,
                "Redis",
                max_queue=settings.session_queue_length,
                hold=test_hold("session"),
            ),
        )

    def all(self) -> tuple[Lane, ...]:
        return (self.cpu, self.kb, self.sessions)

    def close(self) -> None:
        for lane in self.all():
            lane.close()


TEST_HOLD_ENV = "KATO_TEST_LANE_HOLD"


def test_hold(lane: str) -> Callable[[], None] | None:
    """For overload tests only: with ``KATO_TEST_LANE_HOLD=cpu=/some/file`` every job of the
    cpu lane waits, on its thread, until that file exists. A test fills a lane with calls it
    holds this way and releases them when it has seen what it wanted: no verdict then
    depends on how fast the machine is."""
    for part in os.environ.get(TEST_HOLD_ENV, "").split(","):
        name, _, path = part.partition("=")
        if name == lane and path:

            def hold(path: str = path) -> None:
                while not os.path.exists(path):
                    time.sleep(0.005)

            return hold
    return None


async def create_server(
    settings: Settings,
    stores: Stores,
    *,
    keys: auth.KeyRing | None = None,
    metrics: Metrics | None = None,
    lanes: Lanes | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """`keys` defaults to the settings' API keys (None: auth off); `metrics` None = no metrics;
    `lanes` defaults to new ones from the settings."""
    lanes = lanes or Lanes.from_settings(settings)
    budget = ByteBudget(settings.max_bytes_in_flight)
    sessions = (
        OffloadedSessionStore(stores.sessions, lanes.sessions)
        if stores.sessions_block
        else InlineSessionStore(tracing.traced_session_store(stores.sessions) if tracing.enabled() else stores.sessions)
    )
    server = grpc.aio.server(
        interceptors=build_interceptors(settings, sessions, keys, metrics, budget=budget),
        options=[
            # Requests only: a response over a send limit would fail after its effects were applied.
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ],
    )
    guard = KbGuard(stores.kb_refreshes_on_read)
    if not stores.kb_refreshes_on_read:
        stores.kb.guard_index_writes(guard.writing)
    servicer = KatoServicer(
        stores.kb,
        None,
        settings.limits,
        cpu=lanes.cpu,
        kb_lane=lanes.kb,
        guard=guard,
        predictor=engine_named(settings.engine).predictor,
    )

    async def apply_committed(kb_id: str, effects, origin) -> None:
        # The runner applies a session's effects after its compare-and-set (or repairs them
        # on load): the call has committed, so no lane may refuse this work.
        with past_commit():
            await servicer.apply_effects(kb_id, effects, origin)

    runner = SessionRunner(
        sessions,
        apply_committed,
        state_size.measuring_codec(STATE_CODEC),
        default_ttl=settings.session_ttl_seconds,
        auto_extend=settings.session_auto_extend,
        owner_of_call=auth.current_owner,
        request_ids=stores.request_ids,
        request_window_seconds=settings.request_id_window_seconds,
    )
    servicer.use_sessions(runner)
    if metrics is not None:
        metrics.watch(stores.kb, runner, lanes.all(), budget)
    kato_service_pb2_grpc.add_KatoServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    address = f"{settings.host}:{settings.port}"
    if tls.tls_enabled(settings):
        port = server.add_secure_port(address, tls.server_credentials(settings))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    return server, port, health_servicer


def _session_store_persistence(redis_url: str):
    """Whether the Redis of server-held sessions keeps them across its restarts (logged)."""
    import redis

    from kato_grpc.sessions.redis_durability import check_persistence
    from kato_grpc.sessions.redis_store import redact_url

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return check_persistence(client, redact_url(redis_url))
    finally:
        client.close()


def say(line: str) -> None:
    """Print one whole line to stdout with a single write(2).

    Workers share their parent's stdout. `print` may hand the text and its newline to
    the pipe in two writes, and two workers' lines then interleave ("...pid 1)kato-grpc
    listening ...pid 2)"), which a supervisor reading line by line cannot parse. One
    write of under PIPE_BUF bytes is atomic on a pipe.
    """
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())


async def _serve_one(settings: Settings, worker: int = 0) -> None:
    tracing.configure_from_env()
    stores = build_stores(settings)
    keys = auth.keyring_from_settings(settings)
    metrics = Metrics() if settings.metrics_port else None
    if settings.redis_url:
        persistence = _session_store_persistence(settings.redis_url)
        if metrics is not None:
            metrics.note_session_persistence(persistence.mode)
    lanes = Lanes.from_settings(settings)
    server, port, health_servicer = await create_server(settings, stores, keys=keys, metrics=metrics, lanes=lanes)
    watch = BackendWatch(
        probes_for(settings, settings.health_probe_seconds),
        health_servicer,
        SERVICE_NAME,
        settings.health_probe_seconds,
    )
    await server.start()
    watch.start()
    if metrics is not None:
        metrics.watch_backends(watch)
        metrics.serve(settings.host, settings.metrics_port + worker)
    # The first line a supervisor or a test reads: where we listen.
    say(f"kato-grpc listening on {settings.host}:{port} (pid {os.getpid()}, data {settings.data_dir})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP re-reads the API keys file (and is harmless without one); open connections
    # and calls in flight are not touched.
    loop.add_signal_handler(signal.SIGHUP, keys.reload if keys is not None else lambda: None)
    await stop.wait()
    log.info("draining in-flight calls (grace %.1fs)", settings.grace_seconds)
    await watch.stop()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
    lanes.close()
    stores.close()
    tracing.shutdown()
    say("kato-grpc stopped")


def serve(settings: Settings) -> None:
    """Serve in this process, or in `workers` processes sharing the port (SO_REUSEPORT)."""
    try:
        check_settings(settings)
    except ValueError as exc:
        raise SystemExit(f"kato-grpc: {exc}") from None
    request_context.configure_logging(settings.log_level, settings.log_format)
    LateAnswerFilter.install()
    state_signing.load_state_keys(settings)  # the default ring is created once, before any worker forks
    if settings.workers > 1 and not settings.redis_url:
        log.warning(
            "--workers %d without --redis-url: server-held sessions live in one worker's memory "
            "and other workers answer NOT_FOUND for them; client-held state works everywhere",
            settings.workers,
        )
    if settings.workers <= 1:
        asyncio.run(_serve_one(settings))
        return
    children = []
    for worker in range(settings.workers):
        pid = os.fork()
        if pid == 0:
            asyncio.run(_serve_one(settings, worker))
            os._exit(0)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    for child in children:
        os.waitpid(child, 0)
