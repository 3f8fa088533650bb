"""OpenTelemetry traces of calls, off unless the standard ``OTEL_*`` variables ask for them.

On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``; ``none`` is
off) or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, then the exporter is ``otlp``); never with
``OTEL_SDK_DISABLED=true``. The SDK reads the rest itself: the OTLP endpoint, headers and
protocol, the sampler (``OTEL_TRACES_SAMPLER``), the batch processor (``OTEL_BSP_*``) and
the resource (``OTEL_SERVICE_NAME``, default ``kato-grpc``; ``OTEL_RESOURCE_ATTRIBUTES``).
OpenTelemetry is the optional extra ``kato-grpc[tracing]``; asking for traces without it
stops the server at start with that hint.

Spans of one call (`TracingInterceptor`, just inside the request-id interceptor):

- ``kato.v1.KatoService/<Method>`` (SERVER): continues the W3C trace context of the call's
  ``traceparent`` / ``tracestate`` metadata, or starts a trace; attributes ``rpc.*``,
  ``rpc.grpc.status_code``, ``kato.outcome`` (the status code's name) and ``kato.kb_id``;
  its trace id goes into the call's access-log line.
- ``kato.lane_wait`` (``kato.lane``: cpu, kb, session): the time a job queued for a lane's
  thread, then the job as ``kato.engine`` (cpu lane), ``kato.knowledge_store`` (kb lane)
  or ``kato.session_store`` (session lane, Redis), each with ``kato.kb_id`` and
  ``kato.outcome`` (``ok``, ``timeout``, ``cancelled``, ``withdrawn`` or the error's type).
- ``kato.session_store`` around each call of the in-process session store too.

The serving path calls the helpers below at a handful of points (the lanes of
execution.py, the servicer's knowledge-base calls, the session store). With tracing off
each is a check of one module global, and OpenTelemetry is never imported. Spans carry
no symbols, metadata or messages, only names, ids and codes, like the access log.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any

import grpc

from kato_grpc.server import request_context
from kato_grpc.server.handlers import Interceptor, Method, around

__all__ = [
    "LANE_SPANS",
    "TracingInterceptor",
    "check_env",
    "configure_from_env",
    "enabled",
    "job_started",
    "lane",
    "note_kb",
    "shutdown",
    "traced_session_store",
    "use_tracer_provider",
    "wanted",
]

# The span of a lane's job, by lane name (Lanes in app.py).
LANE_SPANS = {"cpu": "kato.engine", "kb": "kato.knowledge_store", "session": "kato.session_store"}
_TRACE_HEADERS = ("traceparent", "tracestate")
_NULL = nullcontext()

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None
_CALL_SPAN: ContextVar[Any] = ContextVar("kato_call_span", default=None)
_KB: ContextVar[str] = ContextVar("kato_trace_kb", default="")


def enabled() -> bool:
    return _tracer is not None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",") if n.strip()]
    for name in names:
        if name not in ("otlp", "console", "none"):
            raise ValueError(f"OTEL_TRACES_EXPORTER {name!r}: kato-grpc exports with otlp or console")
    return [n for n in names if n != "none"]


def check_env(environ: Mapping[str, str] = os.environ) -> None:
    """At start, before any process: the variables ask for what can be done (ValueError says why)."""
    if not wanted(environ):
        return
    _exporter_names(environ)
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise ValueError(
            "the OTEL_* variables ask for traces but OpenTelemetry is not installed: "
            "pip install 'kato-grpc[tracing]' (or unset OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT)"
        ) from None


def configure_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on when the OTEL_* variables ask for it; whether it is on.

    Each serving process calls it once (after a fork: the batch processor's thread is the
    process's own).
    """
    if not wanted(environ):
        return False
    check_env(environ)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "kato-grpc"}))
    provider = TracerProvider(resource=resource)
    for name in _exporter_names(environ):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    use_tracer_provider(provider)
    return True


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    try:  # not in kato-grpc[tracing]: imported by name, for whoever installed it
        http = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    except ImportError as exc:
        raise RuntimeError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} needs opentelemetry-exporter-otlp-proto-http; "
            "kato-grpc[tracing] brings the grpc one"
        ) from exc
    return http.OTLPSpanExporter()


def use_tracer_provider(provider: Any) -> None:
    """Trace into `provider` (tests pass one with an in-memory exporter); None turns tracing off."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("kato_grpc")


def shutdown() -> None:
    """Export what is buffered and turn tracing off (at server stop)."""
    provider = _provider
    use_tracer_provider(None)
    if provider is not None:
        provider.shutdown()


# --- the call's span -----------------------------------------------------------------------


class TracingInterceptor(Interceptor):
    """A SERVER span per call, continuing the caller's W3C trace context (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._propagator = TraceContextTextMapPropagator()

    def wrap(self, method: Method, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if method.service in request_context.QUIET_SERVICES:
            return handler  # health probes and reflection would drown the calls
        from opentelemetry.trace import SpanKind

        name = method.full_name.lstrip("/")
        attributes = {"rpc.system": "grpc", "rpc.service": method.service, "rpc.method": method.name}
        propagator = self._propagator

        async def start(context: grpc.aio.ServicerContext):
            tracer = _tracer
            if tracer is None:  # turned off since the server started
                return None
            carrier = {k: v for k, v in context.invocation_metadata() or () if k in _TRACE_HEADERS}
            parent = propagator.extract(carrier) if carrier else None
            span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
            _CALL_SPAN.set(span)
            info = request_context.current()
            if info is not None:
                info.trace_id = format(span.get_span_context().trace_id, "032x")
            return span

        def finish(context: grpc.aio.ServicerContext, span, code: grpc.StatusCode) -> None:
            if span is None:
                return
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            span.set_attribute("kato.outcome", code.name)
            info = request_context.current()
            if info is not None and info.kb_id:
                span.set_attribute("kato.kb_id", info.kb_id)
            if code in request_context.SERVER_FAILURES:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, code.name))
            span.end()

        return around(handler, start, finish)


def note_kb(kb_id: str) -> None:
    """The call works on knowledge base `kb_id`: an attribute of its span and of the lane spans."""
    if _tracer is None:
        return
    span = _CALL_SPAN.get()
    if span is not None:
        span.set_attribute("kato.kb_id", kb_id)
    _KB.set(kb_id)


def _parent() -> Any:
    from opentelemetry import trace

    span = _CALL_SPAN.get()
    return trace.set_span_in_context(span) if span is not None else None


def _sampled_out() -> bool:
    """The call's span is not recorded (the sampler said no): its children would not be either."""
    span = _CALL_SPAN.get()
    return span is not None and not span.is_recording()


# --- lanes ---------------------------------------------------------------------------------


def job_started(job: Any) -> None:
    """Called by a lane's thread as it starts `job` (a Future): the end of its wait."""
    if _tracer is not None:
        job.kato_started_ns = time.time_ns()


def lane(name: str, job: Any) -> Any:
    """A context manager around awaiting `job` on lane `name`: its wait and work spans."""
    if _tracer is None or _sampled_out():
        return _NULL
    return _LaneSpans(name, job)


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return type(error).__name__


class _LaneSpans:
    """Spans made after the fact, with the times taken: no context crosses to the thread."""

    __slots__ = ("_job", "_name", "_queued")

    def __init__(self, name: str, job: Any) -> None:
        self._name, self._job = name, job

    def __enter__(self) -> None:
        self._queued = time.time_ns()

    def __exit__(self, exc_type, error, traceback) -> None:
        tracer = _tracer
        if tracer is None:
            return
        ended = time.time_ns()
        started = getattr(self._job, "kato_started_ns", None)
        outcome = _outcome(error)
        parent, kb_id = _parent(), _KB.get()
        wait = tracer.start_span("kato.lane_wait", context=parent, start_time=self._queued)
        wait.set_attribute("kato.lane", self._name)
        wait.set_attribute("kato.outcome", "ok" if started is not None else ("withdrawn" if error else outcome))
        wait.end(end_time=started if started is not None else ended)
        if started is None:
            return
        work = tracer.start_span(LANE_SPANS.get(self._name, f"kato.{self._name}"), context=parent, start_time=started)
        if kb_id:
            work.set_attribute("kato.kb_id", kb_id)
        work.set_attribute("kato.outcome", outcome)
        _mark_error(work, outcome)
        work.end(end_time=ended)


def _mark_error(span: Any, outcome: str) -> None:
    if outcome != "ok":
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, outcome))


# --- the in-process session store ------------------------------------------------------------


def traced_session_store(store: Any) -> Any:
    """`store` whose calls are ``kato.session_store`` spans while tracing is on."""
    return _TracedSessionStore(store)


class _TracedSessionStore:
    _OPERATIONS = frozenset({"create", "get", "status", "compare_and_set", "touch", "delete"})

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if name not in self._OPERATIONS:
            return value

        def traced(*args: Any, **kwargs: Any) -> Any:
            tracer = _tracer
            if tracer is None or _sampled_out():
                return value(*args, **kwargs)
            span = tracer.start_span("kato.session_store", context=_parent(), attributes={"kato.operation": name})
            outcome = "ok"
            try:
                return value(*args, **kwargs)
            except BaseException as exc:
                outcome = _outcome(exc)
                raise
            finally:
                span.set_attribute("kato.outcome", outcome)
                _mark_error(span, outcome)
                span.end()

        return traced
