"""Prometheus metrics: ``--metrics-port N`` serves ``/metrics`` on the ``--host`` address.

Off by default (port 0). With ``--workers N`` each worker process serves its own
registry on ``--metrics-port + i`` (i = 0 … N-1): scrape every one of them.

RPC metrics, named as go-grpc-prometheus / py-grpc-prometheus name them so existing
dashboards work (labels ``grpc_type``, ``grpc_service``, ``grpc_method``):

- ``grpc_server_started_total``: calls started;
- ``grpc_server_handled_total{grpc_code}``: calls finished, by status code (auth
  refusals included: this interceptor runs before auth);
- ``grpc_server_handling_seconds``: latency histogram, from the moment the call reaches
  the server's interceptors to its status: waits for a lane included;
- ``kato_grpc_in_flight_calls``: calls being served now.

KATO metrics:

- ``kato_rejected_calls_total{grpc_method,grpc_code,reason}``: calls answered with an
  error carrying an ``ErrorInfo`` reason; the shed ones are ``grpc_code="RESOURCE_EXHAUSTED"``
  with reason ``REQUEST_BYTES_EXHAUSTED``, ``LANE_QUEUE_FULL`` or
  ``QUEUE_WAIT_EXCEEDS_DEADLINE`` (server/admission.py);
- ``kato_request_bytes{grpc_method}``, ``kato_response_bytes{grpc_method}``: histograms
  of serialized request and response sizes (refused requests included);
- ``kato_bytes_in_flight``, ``kato_max_bytes_in_flight``: request bytes held by the
  calls being served, and ``--max-bytes-in-flight``;
- ``kato_lane_wait_seconds{lane}``: histogram of how long work waited for a thread of
  the lane; ``kato_lane_job_seconds{lane}``: how long it then ran (``lane="cpu"`` is the
  engine's time); ``kato_lane_withdrawn_total{lane}``: queued work whose call was
  cancelled or ran out of time before it started (it never ran);
  ``kato_late_answers_total``: answers grpc could not send because the client had already
  stopped waiting (see admission.py);
- ``kato_session_state_bytes{grpc_method}``: histogram of the serialized SessionState
  size each session call ended with (see state_size.py); only methods with a session;
- ``kato_kb_patterns{kb_id}``: patterns stored per knowledge base, for the knowledge
  bases this process has loaded (read from the store's in-memory index at scrape time);
- ``kato_session_cas_conflicts_total``: compare-and-set attempts on a server-held
  session that lost to a concurrent writer and were retried (SessionRunner.conflicts);
- ``kato_session_cas_exhausted_total``: calls that ran out of retries (ABORTED);
- ``kato_session_store_persistence{mode}``: 1 for the persistence mode of the Redis
  that keeps server-held sessions, read at start-up (``none`` and ``rdb`` lose
  acknowledged sessions when Redis restarts; see sessions/redis_durability.py);
- ``kato_backend_unavailable_total{grpc_method}``: calls answered UNAVAILABLE (Redis,
  ClickHouse or the key store did not answer);
- ``kato_lane_threads{lane}``, ``kato_lane_busy_threads{lane}``,
  ``kato_lane_queued_tasks{lane}``: size, busy threads and queue depth of the thread
  pools ``cpu``, ``kb`` and ``session`` (server/execution.py);
- ``kato_backend_up{backend}``: 1 while Redis / ClickHouse answer the health probe;
- the client library's ``process_*`` and ``python_*`` collectors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kato_grpc.server import request_context
from kato_grpc.server.admission import LateAnswerFilter
from kato_grpc.server.handlers import Interceptor, Method, around

__all__ = ["Metrics", "MetricsInterceptor", "StoreCollector", "BackendCollector"]

log = logging.getLogger("kato_grpc.metrics")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATE_BUCKETS = tuple(float(2**n) for n in range(8, 25, 2))  # 256 B … 16 MiB
SIZE_BUCKETS = tuple(float(2**n) for n in range(6, 25, 2))  # 64 B … 16 MiB
_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class Metrics:
    """The registry of one server process and the instruments its interceptor updates."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collectors: bool = True) -> None:
        disable_created_metrics()  # no `*_created` series: scrapes stay small
        self.registry = registry or CollectorRegistry(auto_describe=True)
        if process_collectors:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        r = self.registry
        self.started = Counter("grpc_server_started", "RPCs started on the server.", _LABELS, registry=r)
        self.handled = Counter(
            "grpc_server_handled", "RPCs completed on the server, by status code.", (*_LABELS, "grpc_code"), registry=r
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC, to its status.",
            _LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("kato_grpc_in_flight_calls", "RPCs being served now.", _LABELS[1:], registry=r)
        self.state_bytes = Histogram(
            "kato_session_state_bytes",
            "Serialized SessionState size each session call ended with, in bytes.",
            ("grpc_method",),
            buckets=STATE_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "kato_rejected_calls",
            "Calls answered with an error carrying an ErrorInfo reason (RESOURCE_EXHAUSTED ones were shed).",
            ("grpc_method", "grpc_code", "reason"),
            registry=r,
        )
        self.request_bytes = Histogram(
            "kato_request_bytes",
            "Serialized request size, in bytes.",
            ("grpc_method",),
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.response_bytes = Histogram(
            "kato_response_bytes",
            "Serialized response size, in bytes.",
            ("grpc_method",),
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.lane_wait = Histogram(
            "kato_lane_wait_seconds",
            "Time work waited for a thread of its lane.",
            ("lane",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lane_job = Histogram(
            "kato_lane_job_seconds",
            "Time work ran on a thread of its lane (cpu: the engine).",
            ("lane",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.unavailable = Counter(
            "kato_backend_unavailable",
            "Calls answered UNAVAILABLE (a back end did not answer).",
            ("grpc_method",),
            registry=r,
        )
        self.cas_exhausted = Counter(
            "kato_session_cas_exhausted",
            "Calls on a server-held session that ran out of compare-and-set retries (ABORTED).",
            ("grpc_method",),
            registry=r,
        )
        self.session_persistence = Gauge(
            "kato_session_store_persistence",
            "1 for the persistence mode of the Redis keeping server-held sessions, read at start-up "
            "(aof-always, aof-everysec, aof-no, rdb, none, unknown); absent without --redis-url.",
            ("mode",),
            registry=r,
        )
        self._server: WSGIServer | None = None

    def note_session_persistence(self, mode: str) -> None:
        """Report the session store's persistence mode (see sessions/redis_durability.py)."""
        self.session_persistence.labels(mode).set(1)

    def watch(self, kb: Any, runner: Any, lanes: Iterable[Any] = (), budget: Any = None) -> None:
        """Also report the patterns per loaded KB, the runner's CAS conflicts, the lanes (and
        time their jobs) and the byte budget of admission control."""
        lanes = tuple(lanes)
        for lane in lanes:
            wait, job = self.lane_wait.labels(lane.name), self.lane_job.labels(lane.name)

            def observe(waited: float, ran: float, wait: Any = wait, job: Any = job) -> None:
                wait.observe(waited)
                job.observe(ran)

            lane.observe = observe
        self.registry.register(StoreCollector(kb, runner, lanes, budget))

    def watch_backends(self, watch: Any) -> None:
        """Also report whether each required back end answered its last health probe."""
        self.registry.register(BackendCollector(watch))

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on host:port from a daemon thread."""
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


class StoreCollector(Collector):
    """Reads the knowledge store and the session runner at scrape time."""

    def __init__(self, kb: Any, runner: Any, lanes: tuple[Any, ...] = (), budget: Any = None) -> None:
        self._kb = kb
        self._runner = runner
        self._lanes = lanes
        self._budget = budget

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        patterns = GaugeMetricFamily(
            "kato_kb_patterns", "Patterns stored per knowledge base (loaded ones).", labels=("kb_id",)
        )
        loaded = getattr(self._kb, "loaded_pattern_counts", None)
        for kb_id, count in (loaded() if loaded is not None else {}).items():
            patterns.add_metric((kb_id,), count)
        yield patterns
        conflicts = CounterMetricFamily(
            "kato_session_cas_conflicts", "Compare-and-set attempts that lost to a concurrent writer and were retried."
        )
        conflicts.add_metric((), getattr(self._runner, "conflicts", 0))
        yield conflicts
        threads = GaugeMetricFamily(
            "kato_lane_threads",
            "Threads of each lane (--cpu-threads, --kb-threads, --session-threads).",
            labels=("lane",),
        )
        busy = GaugeMetricFamily("kato_lane_busy_threads", "Threads of each lane running work now.", labels=("lane",))
        queued = GaugeMetricFamily(
            "kato_lane_queued_tasks", "Work waiting for a thread of each lane.", labels=("lane",)
        )
        withdrawn = CounterMetricFamily(
            "kato_lane_withdrawn", "Queued work withdrawn before it ran (its call ended first).", labels=("lane",)
        )
        for lane in self._lanes:
            threads.add_metric((lane.name,), lane.threads)
            busy.add_metric((lane.name,), lane.busy)
            queued.add_metric((lane.name,), lane.queued)
            withdrawn.add_metric((lane.name,), lane.withdrawn)
        yield threads
        yield busy
        yield queued
        yield withdrawn
        late = CounterMetricFamily(
            "kato_late_answers",
            "Answers grpc could not send because the client had stopped waiting (cancelled or past its deadline).",
        )
        late.add_metric((), LateAnswerFilter.late_answers)
        yield late
        if self._budget is not None:
            yield GaugeMetricFamily(
                "kato_bytes_in_flight", "Request bytes held by the calls being served.", value=self._budget.in_flight
            )
            yield GaugeMetricFamily("kato_max_bytes_in_flight", "--max-bytes-in-flight.", value=self._budget.limit)


class BackendCollector(Collector):
    """``kato_backend_up{backend}``: 1 while a required back end answers its health probe."""

    def __init__(self, watch: Any) -> None:
        self._watch = watch

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily(
            "kato_backend_up", "1 while the back end answers its health probe, else 0.", labels=("backend",)
        )
        for name, ok in sorted(self._watch.up.items()):
            up.add_metric((name,), 1.0 if ok else 0.0)
        yield up


class MetricsInterceptor(Interceptor):
    """Counts, times and gauges every call; records the state size of session calls."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._m = metrics

    def wrap(self, method: Method, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, name = method.service, method.name
        labels = (method.kind.upper(), service, name)
        m = self._m
        started = m.started.labels(*labels)
        latency = m.latency.labels(*labels)
        in_flight = m.in_flight.labels(service, name)
        state_bytes = _Lazy(lambda: m.state_bytes.labels(name))  # no series for methods without a session
        request_bytes = m.request_bytes.labels(name)
        response_bytes = m.response_bytes.labels(name)
        handled: dict[grpc.StatusCode, Any] = {}

        async def start(context):
            started.inc()
            in_flight.inc()
            return time.perf_counter()

        def finish(context, began: float, code: grpc.StatusCode) -> None:
            latency.observe(time.perf_counter() - began)
            in_flight.dec()
            counter = handled.get(code)
            if counter is None:
                counter = handled[code] = m.handled.labels(*labels, code.name)
            counter.inc()
            if code is grpc.StatusCode.UNAVAILABLE:
                m.unavailable.labels(name).inc()
            elif code is grpc.StatusCode.ABORTED:
                m.cas_exhausted.labels(name).inc()
            info = request_context.current()
            if info is None:
                return
            if info.state_bytes is not None:
                state_bytes.get().observe(info.state_bytes)
            if info.reason and code is not grpc.StatusCode.OK:
                m.rejected.labels(name, code.name, info.reason).inc()

        inner_deserializer: Any = handler.request_deserializer
        inner_serializer: Any = handler.response_serializer

        def deserialize(data: bytes) -> Any:
            request_bytes.observe(len(data))
            assert inner_deserializer is not None  # installed only when there is one
            return inner_deserializer(data)

        def serialize(message: Any) -> bytes:
            assert inner_serializer is not None  # installed only when there is one
            data = inner_serializer(message)
            response_bytes.observe(len(data))
            return data

        return around(
            handler,
            start,
            finish,
            request_deserializer=deserialize if inner_deserializer is not None else None,
            response_serializer=serialize if inner_serializer is not None else None,
        )


class _Lazy:
    """A labelled child made on first use, so a method that never observes has no series."""

    __slots__ = ("_child", "_make")

    def __init__(self, make: Any) -> None:
        self._make, self._child = make, None

    def get(self) -> Any:
        if self._child is None:
            self._child = self._make()
        return self._child
