"""Overload against a real server process: shed at once, never break (server/admission.py).

Bounds are made tiny by flags (a cpu lane of one thread and a queue of one, a byte budget
of one large request) and the lane's work is held open by a file the test creates when it
has seen what it wanted (``KATO_TEST_LANE_HOLD``), so every verdict is an outcome
category, never a duration or a machine's speed.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from kato_client import KatoClient
from kato_client.errors import ResourceExhausted
from prometheus_client.parser import text_string_to_metric_families

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb

ENDED = {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gauge(port: int, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _wait_for(port: int, name: str, want: float, **labels: str) -> None:
    """Poll the metrics until `name` reaches `want` (a state the test waits for, not a verdict)."""
    deadline = time.monotonic() + 60
    while _gauge(port, name, **labels) < want:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} never reached {want}")
        time.sleep(0.02)


def _observe(kb_id: str, text: str = "", symbols: tuple[str, ...] = ("a",)) -> api.ObserveRequest:
    observation = pb.Observation(strings=list(symbols))
    if text:
        observation.metadata.update({"blob": text})
    return api.ObserveRequest(state=pb.SessionState(kb_id=kb_id), observation=observation)


def _details(error: grpc.RpcError) -> tuple[str, float | None]:
    """The ErrorInfo reason and RetryInfo delay (seconds) of a failed call."""
    reason, delay = "", None
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToNanoseconds() / 1e9
    return reason, delay


def _outcome(future: grpc.Future) -> grpc.StatusCode:
    try:
        future.result()
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


def _healthy(channel: grpc.Channel) -> bool:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(), timeout=30).status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def held_server(start_server, tmp_path: Path):
    """A server whose cpu lane (one thread, queue of one) holds every job until `release()`."""
    release = tmp_path / "release"
    port = _free_port()
    server = start_server(
        "--cpu-threads",
        "1",
        "--cpu-queue-length",
        "1",
        "--metrics-port",
        str(port),
        env={"KATO_TEST_LANE_HOLD": f"cpu={release}"},
    )
    server.metrics_port = port
    server.release = lambda: release.touch()
    yield server
    release.touch()


def test_calls_beyond_a_full_lane_queue_are_refused_at_once_and_change_nothing(held_server, kb_id):
    with grpc.insecure_channel(held_server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        running = stub.Observe.future(_observe(kb_id))
        _wait_for(held_server.metrics_port, "kato_lane_busy_threads", 1, lane="cpu")
        queued = stub.Observe.future(_observe(kb_id))
        _wait_for(held_server.metrics_port, "kato_lane_queued_tasks", 1, lane="cpu")

        refused = [stub.Observe.future(_observe(kb_id)) for _ in range(8)]
        for future in refused:  # answered while the lane is still held: at once
            with pytest.raises(grpc.RpcError) as caught:
                future.result()
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            reason, delay = _details(caught.value)
            assert reason == "LANE_QUEUE_FULL"
            assert delay is not None and delay > 0
        assert _healthy(channel)  # health is never shed, and is answered while the lane is full
        with KatoClient(held_server.target, retry=None) as kato:  # the Python client reads the delay
            with pytest.raises(ResourceExhausted) as shed:
                kato.session(kb_id).observe(["a"])
            assert shed.value.reason == "LANE_QUEUE_FULL" and shed.value.retry_delay > 0

        held_server.release()
        assert [_outcome(running), _outcome(queued)] == [grpc.StatusCode.OK, grpc.StatusCode.OK]
        assert stub.Observe(_observe(kb_id), timeout=60).stm_length == 1  # serves normally afterwards
    assert (
        _gauge(
            held_server.metrics_port,
            "kato_rejected_calls_total",
            grpc_method="Observe",
            grpc_code="RESOURCE_EXHAUSTED",
            reason="LANE_QUEUE_FULL",
        )
        == 9
    )


def test_a_call_whose_deadline_passes_in_the_queue_ends_deadline_exceeded_and_never_runs(held_server, kb_id):
    with grpc.insecure_channel(held_server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        running = stub.Observe.future(_observe(kb_id))
        _wait_for(held_server.metrics_port, "kato_lane_busy_threads", 1, lane="cpu")
        late = stub.Observe.future(_observe(kb_id), timeout=1)
        assert _outcome(late) is grpc.StatusCode.DEADLINE_EXCEEDED
        _wait_for(held_server.metrics_port, "kato_lane_withdrawn_total", 1, lane="cpu")
        held_server.release()
        assert _outcome(running) is grpc.StatusCode.OK
    assert not any(
        "Traceback" in line or "ERROR" in line or "ExecuteBatchError" in line for line in held_server.output
    ), "".join(held_server.output)


def test_many_held_calls_with_and_without_deadlines_end_ok_shed_or_late_never_broken(held_server, kb_id):
    with grpc.insecure_channel(held_server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        first = stub.Observe.future(_observe(kb_id))
        _wait_for(held_server.metrics_port, "kato_lane_busy_threads", 1, lane="cpu")
        calls = [
            stub.Observe.future(_observe(kb_id), timeout=None if i % 2 else 10)
            for i in range(40)  # 20x what the lane can hold (one running, one queued)
        ]
        calls += [stub.Predict.future(api.PredictRequest(state=pb.SessionState(kb_id=kb_id))) for _ in range(10)]
        shed = sum(1 for call in calls[:4] if _outcome(call) is grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert _healthy(channel)
        # Release only once the server has answered every call but the one in its queue: a
        # call it had not read yet would find the lane free, however fast the machine is.
        # (The deadlines are seconds off: the queued call is not withdrawn meanwhile.)
        give_up = time.monotonic() + 120  # a hang guard
        while sum(call.done() for call in calls) < len(calls) - 1:
            assert time.monotonic() < give_up, "the server never answered the calls beyond its queue"
            time.sleep(0.02)
        held_server.release()
        outcomes = [_outcome(call) for call in [first, *calls]]
        assert set(outcomes) <= ENDED, outcomes
        assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= len(calls) - 2
        assert shed >= 3  # at most one of the first four found room in the queue
        assert stub.Observe(_observe(kb_id), timeout=60).stm_length == 1
    assert not any("Traceback" in line or "ERROR" in line for line in held_server.output), "".join(held_server.output)


def test_a_request_that_does_not_fit_the_byte_budget_is_refused_unread(start_server, tmp_path: Path, kb_id):
    release, port = tmp_path / "release", _free_port()
    limit = 1024 * 1024
    server = start_server(
        "--max-request-bytes",
        str(limit),
        "--max-bytes-in-flight",
        str(limit),
        "--cpu-threads",
        "1",
        "--metrics-port",
        str(port),
        env={"KATO_TEST_LANE_HOLD": f"cpu={release}"},
    )
    big = "x" * (600 * 1024)
    with grpc.insecure_channel(server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        try:
            held = stub.Observe.future(_observe(kb_id, big))  # its 600 KiB stay in flight while the lane holds it
            _wait_for(port, "kato_lane_busy_threads", 1, lane="cpu")
            with pytest.raises(grpc.RpcError) as caught:
                stub.Observe(_observe(kb_id, big), timeout=60)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            reason, delay = _details(caught.value)
            assert reason == "REQUEST_BYTES_EXHAUSTED" and delay is not None
            assert _healthy(channel)
        finally:
            release.touch()
        assert _outcome(held) is grpc.StatusCode.OK
        assert stub.Observe(_observe(kb_id, big), timeout=60).stm_length == 1  # the budget was given back
    assert _gauge(port, "kato_bytes_in_flight") == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_a_non_finite_number_in_metadata_is_invalid_argument_naming_the_field(kato_server, kb_id, bad):
    with grpc.insecure_channel(kato_server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        request = _observe(kb_id)
        request.observation.metadata.update({"ok": 1.0, "deep": {"list": [1.0, bad]}})
        with pytest.raises(grpc.RpcError) as caught:
            stub.Observe(request, timeout=60)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "observation.metadata.deep.list[1]" in caught.value.details()
        session = api.CreateSessionRequest(kb_id=kb_id)
        session.metadata.update({"n": bad})
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateSession(session, timeout=60)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "metadata.n" in caught.value.details()
