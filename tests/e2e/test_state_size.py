"""Session-state size: limits on a client-held state, `x-kato-state-bytes` on session calls."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.server.state_size import STATE_BYTES_HEADER
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server with tiny limits: 3 STM events, 2 accumulator entries, 3 symbols and 1 vector per event."""
    server = ServerProcess(
        [
            "--data-dir",
            str(tmp_path_factory.mktemp("state-size")),
            "--max-stm-events",
            "3",
            "--max-accumulator-entries",
            "2",
            "--max-symbols-per-event",
            "3",
            "--max-vectors-per-observation",
            "1",
            "--max-symbol-bytes",
            "8",
        ]
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(small_server):
    with grpc.insecure_channel(small_server.target) as channel:
        yield api_grpc.KatoServiceStub(channel)


def kb() -> str:
    return f"size-{uuid.uuid4().hex[:8]}"


def state_bytes(call) -> int:
    values = [v for k, v in call.trailing_metadata() if k == STATE_BYTES_HEADER]
    assert len(values) == 1, call.trailing_metadata()
    return int(values[0])


def violations(error: grpc.RpcError) -> dict[str, str]:
    out = {}
    for detail in rpc_status.from_call(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def test_client_held_calls_report_the_size_of_the_returned_state(stub):
    state = pb.SessionState(kb_id=kb())
    sizes = []
    for symbols in (["a"], ["b", "c"], ["d"]):
        response, call = stub.Observe.with_call(
            api.ObserveRequest(state=state, observation=pb.Observation(strings=symbols))
        )
        assert state_bytes(call) == response.state.ByteSize()
        sizes.append(state_bytes(call))
        state = response.state
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    _, call = stub.GetStm.with_call(api.GetStmRequest(state=state))
    assert state_bytes(call) == state.ByteSize()


def test_server_held_calls_report_the_size_of_the_stored_state(stub):
    session, call = stub.CreateSession.with_call(api.CreateSessionRequest(kb_id=kb()))
    created = state_bytes(call)
    session_id = session.session.session_id
    _, call = stub.Observe.with_call(
        api.ObserveRequest(session_id=session_id, observation=pb.Observation(strings=["a", "b"]))
    )
    observed = state_bytes(call)
    assert observed > created
    _, call = stub.GetStm.with_call(api.GetStmRequest(session_id=session_id))
    assert state_bytes(call) == observed
    _, call = stub.GetSession.with_call(api.GetSessionRequest(session_id=session_id))
    assert state_bytes(call) == observed


def test_a_stream_reports_the_final_state_size(stub):
    requests = [
        api.StreamObservationsRequest(open=api.StreamOpen(state=pb.SessionState(kb_id=kb()))),
        api.StreamObservationsRequest(observation=pb.Observation(strings=["a"])),
    ]
    call = stub.StreamObservations(iter(requests))
    answers = list(call)
    assert state_bytes(call) == answers[-1].closed.state.ByteSize()


def test_knowledge_base_calls_report_no_state_size(stub):
    _, call = stub.ListPatterns.with_call(api.ListPatternsRequest(kb_id=kb()))
    assert STATE_BYTES_HEADER not in dict(call.trailing_metadata())


def test_the_engine_keeps_a_state_within_the_limits(stub):
    state = pb.SessionState(kb_id=kb())
    for i in range(5):
        state = stub.Observe(
            api.ObserveRequest(state=state, observation=pb.Observation(strings=[f"s{i}"], emotives={"joy": 0.5}))
        ).state
    assert len(state.stm) == 3
    assert len(state.emotive_acc) == 2


@pytest.mark.parametrize(
    "field, state",
    [
        ("state.stm", pb.SessionState(stm=[pb.Event(symbols=["a"])] * 4)),
        ("state.stm[0].symbols", pb.SessionState(stm=[pb.Event(symbols=["a", "b", "c", "d", "e"])])),
        ("state.emotive_acc", pb.SessionState(emotive_acc=[pb.EmotiveMap(values={"joy": 1.0})] * 3)),
        ("state.metadata_acc", pb.SessionState(metadata_acc=[{}] * 3)),
    ],
)
def test_a_client_held_state_over_the_limits_is_refused(stub, field, state):
    state.kb_id = kb()
    for method, request in (
        ("Observe", api.ObserveRequest(state=state, observation=pb.Observation(strings=["x"]))),
        ("Predict", api.PredictRequest(state=state)),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            getattr(stub, method)(request)
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert field in violations(raised.value), violations(raised.value)


def test_a_stream_opened_with_a_state_over_the_limits_is_refused(stub):
    state = pb.SessionState(kb_id=kb(), stm=[pb.Event(symbols=["a"])] * 4)
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.StreamObservations(iter([api.StreamObservationsRequest(open=api.StreamOpen(state=state))])))
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "open.state.stm" in violations(raised.value)


def test_a_state_the_engine_wrote_is_accepted(stub):
    """Three strings and a vector name (45 bytes, over max_symbol_bytes) in one event."""
    state = pb.SessionState(kb_id=kb())
    for _ in range(4):
        state = stub.Observe(
            api.ObserveRequest(
                state=state,
                observation=pb.Observation(strings=["a", "b", "c"], vectors=[pb.Vector(values=[0.5, 0.25])]),
            )
        ).state
    assert len(state.stm) == 3 and len(state.stm[0].symbols) == 4
    assert stub.Predict(api.PredictRequest(state=state)) is not None


def test_a_state_at_the_limits_is_accepted(small_server, stub):
    state = small_server.sign(
        pb.SessionState(
            kb_id=kb(),
            stm=[pb.Event(symbols=["a", "b", "c", "d"])] * 3,
            emotive_acc=[pb.EmotiveMap(values={"joy": 1.0})] * 2,
        )
    )
    assert stub.Predict(api.PredictRequest(state=state)) is not None
