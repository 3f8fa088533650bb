"""The Python client retries RESOURCE_EXHAUSTED only when it carries a google.rpc.RetryInfo,
waiting at least its delay, and only for a call safe to repeat. KATO never sends
RetryInfo, so a gRPC server of the test's own does."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from kato_client import KatoClient
from kato_client._proto.kato.v1 import kato_service_pb2 as api
from kato_client._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_client.errors import ResourceExhausted

DELAY = 0.05


def busy(context: grpc.ServicerContext, delay: float | None) -> None:
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="busy: come back later")
    if delay is not None:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=int(delay * 1e9))))
        status.details.append(detail)
    context.abort_with_status(rpc_status.to_status(status))


class Busy(api_grpc.KatoServiceServicer):
    """Predict: busy once (with RetryInfo). GetStm: busy without RetryInfo. ClearStm: busy with it."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {"Predict": [], "GetStm": [], "ClearStm": []}

    def Predict(self, request, context):
        self.calls["Predict"].append(time.monotonic())
        if len(self.calls["Predict"]) == 1:
            busy(context, DELAY)
        return api.PredictResponse()

    def GetStm(self, request, context):
        self.calls["GetStm"].append(time.monotonic())
        busy(context, None)

    def ClearStm(self, request, context):
        self.calls["ClearStm"].append(time.monotonic())
        busy(context, DELAY)


@pytest.fixture
def busy_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = Busy()
    api_grpc.add_KatoServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def test_a_safe_call_is_retried_after_the_retry_info_delay(busy_server):
    servicer, target = busy_server
    with KatoClient(target) as kato:
        kato.session("kb").predict()
    first, second = servicer.calls["Predict"]
    assert second - first >= DELAY  # it waited at least what the server asked


def test_without_retry_info_or_for_an_unsafe_call_it_is_final(busy_server):
    servicer, target = busy_server
    with KatoClient(target) as kato:
        with pytest.raises(ResourceExhausted) as raised:
            kato.session("kb").stm()
        assert raised.value.retry_delay is None
        with pytest.raises(ResourceExhausted) as raised:
            kato.session("kb").clear_stm()
        assert raised.value.retry_delay == pytest.approx(DELAY)
    assert len(servicer.calls["GetStm"]) == 1 and len(servicer.calls["ClearStm"]) == 1
