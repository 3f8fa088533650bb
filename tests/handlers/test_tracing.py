"""OpenTelemetry spans of calls, read from the SDK's in-memory exporter.

The server runs in the test process (tests/support/inprocess.py) with a tracer provider
whose processor exports each span synchronously as it ends; every span of a call ends
before its status is sent, so the spans are there when the client has its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest
from kato_client import KatoClient
from kato_client.client import ServerSession
from kato_client.errors import InvalidArgument
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kato_grpc.server import tracing
from kato_grpc.server.interceptors import build_interceptors
from kato_grpc.server.request_context import trace_id_in
from kato_grpc.server.settings import Settings
from tests.support.inprocess import InProcessServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)


@pytest.fixture
def traced_server(exporter) -> Iterator[InProcessServer]:
    with InProcessServer(Settings(host="127.0.0.1", port=0, access_log=True)) as started:
        yield started


def spans_of(exporter: InMemorySpanExporter, trace_id: str):
    return [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]


def call_span(spans, method: str):
    (span,) = [s for s in spans if s.name == f"kato.v1.KatoService/{method}"]
    return span


def test_a_server_held_observe_continues_the_callers_trace_with_its_child_spans(traced_server, exporter):
    with KatoClient(traced_server.target) as kato:
        session = kato.server_session("kb-traced")
        exporter.clear()
        with KatoClient(traced_server.target, metadata=[("traceparent", TRACEPARENT)]) as traced:
            ServerSession(traced, session.session_id).observe(["a", "b"])
    spans = spans_of(exporter, TRACE_ID)
    observe = call_span(spans, "Observe")
    assert observe.kind is SpanKind.SERVER
    assert format(observe.parent.span_id, "016x") == PARENT_ID and observe.parent.is_remote
    assert observe.attributes["kato.kb_id"] == "kb-traced"
    assert observe.attributes["kato.outcome"] == "OK"
    assert observe.attributes["rpc.method"] == "Observe" and observe.attributes["rpc.grpc.status_code"] == 0
    children = [s for s in spans if s is not observe]
    assert all(s.parent.span_id == observe.context.span_id for s in children)
    names = {s.name for s in children}
    assert {"kato.lane_wait", "kato.engine", "kato.knowledge_store", "kato.session_store"} <= names
    (engine,) = [s for s in children if s.name == "kato.engine"]
    assert engine.attributes["kato.kb_id"] == "kb-traced" and engine.attributes["kato.outcome"] == "ok"
    waits = [s for s in children if s.name == "kato.lane_wait"]
    assert {s.attributes["kato.lane"] for s in waits} == {"cpu", "kb"}  # the engine, the KB's view
    assert all(s.attributes["kato.kb_id"] == "kb-traced" for s in children if s.name == "kato.knowledge_store")
    assert all(s.end_time <= engine.start_time for s in waits)  # the wait ends where the work starts
    operations = {s.attributes["kato.operation"] for s in children if s.name == "kato.session_store"}
    assert {"get", "compare_and_set"} <= operations


def test_a_learn_has_a_knowledge_store_span(traced_server, exporter):
    with KatoClient(traced_server.target) as kato:
        session = kato.session("kb-learn")
        session.observe(["a", "b"])
        exporter.clear()
        session.learn()
    learn = call_span(exporter.get_finished_spans(), "Learn")
    trace_id = format(learn.context.trace_id, "032x")
    store = [s for s in spans_of(exporter, trace_id) if s.name == "kato.knowledge_store"]
    assert store and all(s.attributes["kato.kb_id"] == "kb-learn" for s in store)
    assert learn.parent is None  # no traceparent sent: the call starts a trace


def test_a_rejected_call_has_its_code_as_outcome(traced_server, exporter):
    with KatoClient(traced_server.target) as kato, pytest.raises(InvalidArgument):
        kato.get_pattern("kb-x", "not-a-pattern-name")
    span = call_span(exporter.get_finished_spans(), "GetPattern")
    assert span.attributes["kato.outcome"] == "INVALID_ARGUMENT"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_health_checks_are_not_traced(traced_server, exporter):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(traced_server.target) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert exporter.get_finished_spans() == ()


def test_the_access_log_line_carries_the_trace_id(traced_server, exporter, caplog):
    with caplog.at_level(logging.INFO, logger="kato_grpc.access"):
        with KatoClient(traced_server.target, metadata=[("traceparent", TRACEPARENT)]) as kato:
            kato.symbol_stats("kb-log")
        with KatoClient(traced_server.target) as kato:
            kato.symbol_stats("kb-log")
    lines = [r for r in caplog.records if r.name == "kato_grpc.access" and r.method.endswith("/GetSymbolStats")]
    assert lines[0].trace_id == TRACE_ID
    started = call_span(spans_of(exporter, lines[1].trace_id), "GetSymbolStats")  # a trace of its own
    assert started.parent is None


def test_off_by_default_no_interceptor_and_no_spans(server):
    assert not tracing.enabled()
    chain = build_interceptors(Settings(host="127.0.0.1", port=0), sessions=None)
    assert not any(isinstance(i, tracing.TracingInterceptor) for i in chain)


def test_a_traceparent_is_logged_with_tracing_off():
    assert trace_id_in([("traceparent", TRACEPARENT)]) == TRACE_ID
    assert trace_id_in([("traceparent", "00-" + "0" * 32 + f"-{PARENT_ID}-01")]) == ""  # invalid: all zeros
    assert trace_id_in([("traceparent", "garbage")]) == ""
    assert trace_id_in([]) == ""


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "kato"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_the_otel_variables_turn_tracing_on(environ, wanted):
    assert tracing.wanted(environ) is wanted


def test_an_exporter_kato_cannot_use_is_refused_at_start():
    with pytest.raises(ValueError, match="zipkin"):
        tracing.check_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_a_call_the_sampler_drops_has_no_spans_at_all(exporter):
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    with InProcessServer() as server, KatoClient(server.target) as kato:
        session = kato.server_session("kb-unsampled")
        session.observe(["a", "b"])
        session.learn()
    assert exporter.get_finished_spans() == ()


def test_with_tracing_off_the_access_log_has_the_callers_trace_id(caplog):
    settings = Settings(host="127.0.0.1", port=0, access_log=True)
    with InProcessServer(settings) as server, caplog.at_level(logging.INFO, logger="kato_grpc.access"):
        with KatoClient(server.target, metadata=[("traceparent", TRACEPARENT)]) as kato:
            kato.symbol_stats("kb-off")
        with KatoClient(server.target) as kato:
            kato.symbol_stats("kb-off")
    lines = [r for r in caplog.records if r.name == "kato_grpc.access" and r.method.endswith("/GetSymbolStats")]
    assert [getattr(r, "trace_id", None) for r in lines] == [TRACE_ID, None]
