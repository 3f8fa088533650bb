"""Wiring: build the stores from settings, create the server, serve until SIGTERM.

`create_server` returns the server and its bound port, so tests bind port 0 and dial
what they got. Health and reflection are always on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kato_grpc._proto.kato.v1 import kato_service_pb2, kato_service_pb2_grpc
from kato_grpc.kb.base import KnowledgeStore
from kato_grpc.kb.sqlite import SqliteStore
from kato_grpc.server import convert
from kato_grpc.server.servicer import KatoServicer
from kato_grpc.server.settings import Settings
from kato_grpc.sessions.base import SessionStore
from kato_grpc.sessions.memory import MemorySessionStore
from kato_grpc.sessions.runner import Codec, SessionRunner
from kato_grpc._proto.kato.v1 import types_pb2

__all__ = ["Stores", "build_stores", "create_server", "serve"]

log = logging.getLogger("kato_grpc")
SERVICE_NAME = kato_service_pb2.DESCRIPTOR.services_by_name["KatoService"].full_name

STATE_CODEC = Codec(
    encode=lambda state: convert.serialize_state(convert.state_to_proto(state)),
    decode=lambda data: convert.state_from_proto(types_pb2.SessionState.FromString(data)),
)


@dataclass
class Stores:
    kb: KnowledgeStore
    sessions: SessionStore

    def close(self) -> None:
        self.sessions.close()
        self.kb.close()


def build_stores(settings: Settings) -> Stores:
    """The knowledge base and session store the settings name (embedded by default)."""
    kb: KnowledgeStore = SqliteStore(settings.data_dir)
    sessions: SessionStore
    if settings.redis_url:
        from kato_grpc.sessions.redis_store import RedisSessionStore

        sessions = RedisSessionStore.from_url(settings.redis_url)
    else:
        sessions = MemorySessionStore()
    return Stores(kb=kb, sessions=sessions)


async def create_server(settings: Settings, stores: Stores) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.max_send_message_length", settings.max_request_bytes),
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ])
    runner = SessionRunner(
        stores.sessions, stores.kb.apply, STATE_CODEC,
        default_ttl=settings.session_ttl_seconds, auto_extend=settings.session_auto_extend,
    )
    kato_service_pb2_grpc.add_KatoServiceServicer_to_server(KatoServicer(stores.kb, runner, settings.limits), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    return server, port, health_servicer


async def _serve_one(settings: Settings) -> None:
    stores = build_stores(settings)
    server, port, health_servicer = await create_server(settings, stores)
    await server.start()
    # The first line a supervisor or a test reads: where we listen.
    print(f"kato-grpc listening on {settings.host}:{port} (pid {os.getpid()}, data {settings.data_dir})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining in-flight calls (grace %.1fs)", settings.grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
    stores.close()
    print("kato-grpc stopped", flush=True)


def serve(settings: Settings) -> None:
    """Serve in this process, or in `workers` processes sharing the port (SO_REUSEPORT)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.workers <= 1:
        asyncio.run(_serve_one(settings))
        return
    children = []
    for _ in range(settings.workers):
        pid = os.fork()
        if pid == 0:
            asyncio.run(_serve_one(settings))
            os._exit(0)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)
