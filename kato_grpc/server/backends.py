"""Health that follows the back ends: probe Redis and ClickHouse, set the service status.

The overall status ("") stays SERVING while the process is alive. ``kato.v1.KatoService``
is SERVING only while every required back end (Redis with ``--redis-url``, ClickHouse
with ``--clickhouse-url``) answered its last probe; it turns NOT_SERVING when one stops
answering and SERVING again when it is back, with no restart.

Each probe has its own connection and thread, apart from the lanes calls use: a probe
answers "can this back end be reached", not "is our pool busy".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from grpc_health.v1 import health, health_pb2

__all__ = ["BackendWatch", "probes_for"]

log = logging.getLogger("kato_grpc.health")

Probe = Callable[[], None]  # raises when the back end does not answer


def _redis_probe(url: str, timeout: float) -> Probe:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)

    def probe() -> None:
        client.ping()

    return probe


def _clickhouse_probe(url: str, timeout: float) -> Probe:
    from clickhouse_driver import Client
    from clickhouse_driver.util.helpers import parse_url

    host, kwargs = parse_url(url)
    kwargs.pop("database", None)  # the probe must not depend on the schema existing yet
    kwargs.update(connect_timeout=timeout, send_receive_timeout=timeout, client_name="kato-grpc-health")
    client = Client(host, **kwargs)

    def probe() -> None:
        try:
            client.execute("SELECT 1")
        except BaseException:
            client.disconnect()  # start afresh next time
            raise

    return probe


def probes_for(settings, timeout: float) -> dict[str, Probe]:
    """The required back ends of these settings, by name."""
    probes: dict[str, Probe] = {}
    if settings.redis_url:
        probes["redis"] = _redis_probe(settings.redis_url, timeout)
    if settings.clickhouse_url:
        probes["clickhouse"] = _clickhouse_probe(settings.clickhouse_url, timeout)
    return probes


class BackendWatch:
    """Probes each back end every `interval` seconds and keeps `service`'s status in step."""

    def __init__(
        self, probes: dict[str, Probe], servicer: health.aio.HealthServicer, service: str, interval: float
    ) -> None:
        self._probes = probes
        self._servicer = servicer
        self._service = service
        self._interval = interval
        self.up: dict[str, bool] = {name: True for name in probes}  # read by the metrics collector
        self._threads = ThreadPoolExecutor(max(1, len(probes)), thread_name_prefix="kato-health")
        self._task: asyncio.Task | None = None
        self._running: dict[str, asyncio.Future] = {}

    def start(self) -> None:
        if self._probes:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _probe(self, name: str, probe: Probe) -> bool:
        running = self._running.get(name)
        if running is None or running.done():  # a probe still stuck in a stalled back end is not re-sent
            running = self._running[name] = asyncio.wrap_future(self._threads.submit(probe))
        done, _ = await asyncio.wait([running], timeout=self._interval)
        error = next(iter(done)).exception() if done else TimeoutError(f"no answer within {self._interval:g}s")
        if error is not None and self.up.get(name, True):
            log.warning("%s is unreachable (%s): %s is NOT_SERVING", name, error, self._service)
        return error is None

    async def _watch(self) -> None:
        serving = True
        while True:
            names = list(self._probes)
            results = await asyncio.gather(*(self._probe(name, self._probes[name]) for name in names))
            for name, ok in zip(names, results, strict=True):
                if ok and not self.up[name]:
                    log.warning("%s is reachable again", name)
                self.up[name] = ok
            now = all(results)
            if now != serving:
                serving = now
                await self._servicer.set(
                    self._service,
                    health_pb2.HealthCheckResponse.SERVING if now else health_pb2.HealthCheckResponse.NOT_SERVING,
                )
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._threads.shutdown(wait=False, cancel_futures=True)
