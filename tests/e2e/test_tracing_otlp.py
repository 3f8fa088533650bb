"""Traces end to end: a real `kato-grpc serve` configured only by OTEL_* variables exports
over OTLP/gRPC to a collector in this test, and a `traceparent` sent over HTTP/JSON goes
through the gateway to the server, which continues that trace.

The collector is a real OTLP TraceService on 127.0.0.1:0; the test waits on an event set
when the expected span arrives (the timeout is a hang guard only).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.gateway import GatewayProcess, gateway_binary
from tests.support.server import ServerProcess

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it; `wait_for` blocks until a span of a trace and name came."""

    def __init__(self) -> None:
        self.spans: list = []
        self._changed = threading.Condition()

    def Export(self, request, context):
        with self._changed:
            for resource_spans in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(service, span) for span in scope_spans.spans]
            self._changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, trace_id: str, name: str, timeout: float = 60.0):
        def found():
            return [(svc, s) for svc, s in self.spans if s.trace_id.hex() == trace_id and s.name == name]

        with self._changed:
            assert self._changed.wait_for(found, timeout), f"no span {name} of trace {trace_id} was exported"
            return found()


@pytest.fixture(scope="module")
def collector():
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield collector, port
    server.stop(None)


@pytest.fixture(scope="module")
def traced_stack(collector, tmp_path_factory):
    _, port = collector
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "kato-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds: export soon rather than every 5 s
    }
    server = ServerProcess(["--data-dir", str(tmp_path_factory.mktemp("traced"))], env=env).start()
    gateway = GatewayProcess(gateway_binary(tmp_path_factory), server.target).start()
    yield server, gateway
    gateway.stop()
    server.stop()


def test_a_traceparent_sent_over_http_is_continued_by_the_server_and_exported(collector, traced_stack):
    collector, _ = collector
    _, gateway = traced_stack
    request = urllib.request.Request(
        gateway.base_url + "/v1/sessions",
        data=json.dumps({"kbId": "kb-otlp"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        session = json.loads(response.read())["session"]["sessionId"]
    request = urllib.request.Request(
        f"{gateway.base_url}/v1/sessions/{session}:observe",
        data=json.dumps({"observation": {"strings": ["a", "b"]}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    with urllib.request.urlopen(request, timeout=60):
        pass
    ((service, observe),) = collector.wait_for(TRACE_ID, "kato.v1.KatoService/Observe")
    assert service["service.name"] == "kato-under-test"
    assert observe.parent_span_id.hex() == PARENT_ID
    attributes = {a.key: a.value for a in observe.attributes}
    assert attributes["kato.kb_id"].string_value == "kb-otlp"
    assert attributes["kato.outcome"].string_value == "OK"
    (_, engine), *_ = collector.wait_for(TRACE_ID, "kato.engine")
    assert engine.parent_span_id == observe.span_id
