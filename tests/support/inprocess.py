"""The server inside the test process, for fast handler tests.

`InProcessServer` runs `create_server` (the wiring `kato-grpc serve` uses) with memory
stores on its own asyncio loop in a background thread, bound to 127.0.0.1:0. Tests dial
`target` with the real client, as they dial a `ServerProcess`; starting one takes
milliseconds, so a test can have a server of its own. The subprocess servers
(tests/support/server.py) remain the end-to-end check of the command line, signals,
TLS and durable stores.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc

from kato_grpc.kb.engines import engine_named
from kato_grpc.kb.memory import MemoryStore
from kato_grpc.server.app import Stores, create_server
from kato_grpc.server.settings import Settings
from kato_grpc.sessions.memory import MemorySessionStore

__all__ = ["InProcessServer"]

T = TypeVar("T")


class InProcessServer:
    """A started server on a private event loop; `stop()` shuts both down."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings(host="127.0.0.1", port=0)
        # The store keeps the index of the engine the settings name (native by default).
        self.stores = Stores(
            kb=MemoryStore(engine_named(self.settings.engine).new_index), sessions=MemorySessionStore()
        )
        self.target = ""
        self._server: grpc.aio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kato-in-process", daemon=True)

    def start(self) -> InProcessServer:
        self._thread.start()
        self._server, port = self._run(self._start())
        self.target = f"{self.settings.host}:{port}"
        return self

    async def _start(self) -> tuple[grpc.aio.Server, int]:
        server, port, _health = await create_server(self.settings, self.stores)
        await server.start()
        return server, port

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._server is not None:
            self._run(self._server.stop(grace=None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        self.stores.close()

    def __enter__(self) -> InProcessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
