"""Client-held state is the server's word (issue 13): signed, verified, and validated anyway.

Against real servers: every field of a signed state tampered with is refused and changes
nothing; an unsigned state is refused unless fresh; replicas sharing a key ring accept
each other's states and a restarted server its own; a rotated ring still accepts states
signed by the old key. Then, with the server's own key (as a stolen key would), states
that break the input rules are still refused: defence in depth.
"""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.observation import vector_name
from kato_grpc.server.state_signing import StateKeyRing
from tests.support.server import ServerProcess
from tests.support.state_keys import write_state_keys

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def ring_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("state-keys") / "state-keys.json"
    write_state_keys(path, "current", "previous")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, ring_file):
    started = ServerProcess(
        ["--data-dir", str(tmp_path_factory.mktemp("untrusted")), "--state-keys-file", str(ring_file)]
    ).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield api_grpc.KatoServiceStub(channel)


def kb() -> str:
    return f"untrusted-{uuid.uuid4().hex[:10]}"


def details(error: grpc.RpcError) -> tuple[str, list[str]]:
    """The ErrorInfo reason and the BadRequest field paths of a refusal."""
    reason, fields = "", []
    for detail in rpc_status.from_call(error).details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    return raised.value


def rich_state(stub, kb_id: str) -> pb.SessionState:
    """A signed state with every field set: a pattern learned, then observed into again."""
    state = stub.UpdateConfig(
        api.UpdateConfigRequest(state=pb.SessionState(kb_id=kb_id), config=pb.SessionConfig(recall_threshold=0.2)),
        timeout=30,
    ).state
    for strings in (["a"], ["b"]):
        state = stub.Observe(
            api.ObserveRequest(state=state, observation=pb.Observation(strings=strings)), timeout=30
        ).state
    state = stub.Learn(api.LearnRequest(state=state), timeout=30).state
    metadata = json_format.ParseDict({"source": "test"}, pb.Observation().metadata)
    state = stub.Observe(
        api.ObserveRequest(
            state=state,
            observation=pb.Observation(
                strings=["a"], vectors=[pb.Vector(values=[0.5, 0.25])], emotives={"joy": 1.0}, metadata=metadata
            ),
        ),
        timeout=30,
    ).state
    state.version = 3  # not the engine's, but signed like the rest once the server returns it
    return stub.UpdateConfig(
        api.UpdateConfigRequest(state=_resigned(state), config=pb.SessionConfig(max_predictions=50)), timeout=30
    ).state


_TEST_RING: list[StateKeyRing] = []


def _resigned(state: pb.SessionState) -> pb.SessionState:
    _TEST_RING[0].sign(state)
    return state


@pytest.fixture(autouse=True, scope="module")
def test_ring(ring_file):
    _TEST_RING[:] = [StateKeyRing.from_file(ring_file)]


def kb_snapshot(stub, kb_id: str) -> bytes:
    patterns = stub.ListPatterns(api.ListPatternsRequest(kb_id=kb_id, page_size=1000), timeout=30)
    stats = stub.GetSymbolStats(api.GetSymbolStatsRequest(kb_id=kb_id), timeout=30)
    return patterns.SerializeToString(deterministic=True) + stats.SerializeToString(deterministic=True)


# One alteration per SessionState field; a field added to the message needs its own here.
TAMPERINGS = {
    "kb_id": lambda s: setattr(s, "kb_id", s.kb_id + "-other"),
    "stm": lambda s: s.stm.add(symbols=["forged"]),
    "emotive_acc": lambda s: s.emotive_acc[0].values.__setitem__("joy", 1e9),
    "metadata_acc": lambda s: s.metadata_acc[0].fields["source"].__setattr__("string_value", "forged"),
    "pending_vectors": lambda s: s.pending_vectors[0].values.__setitem__(0, 0.75),
    "time": lambda s: setattr(s, "time", s.time + 1),
    "config": lambda s: setattr(s.config, "recall_threshold", 0.9),
    "percept": lambda s: s.percept.strings.append("forged"),
    "last_predictions": lambda s: s.last_predictions.add(name="forged"),  # deprecated: never written
    "cognition_basis": lambda s: s.cognition_basis.stm.add(symbols=["forged"]),
    "version": lambda s: setattr(s, "version", s.version + 1),
    "signature_key_id": lambda s: setattr(s, "signature_key_id", "previous"),
    "signature": lambda s: setattr(s, "signature", bytes([s.signature[0] ^ 1]) + s.signature[1:]),
}


def test_every_field_has_a_tampering():
    assert set(TAMPERINGS) == {f.name for f in pb.SessionState.DESCRIPTOR.fields}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_a_tampered_state_is_refused_and_changes_nothing(stub, field):
    kb_id = kb()
    state = rich_state(stub, kb_id)
    assert state.HasField("cognition_basis") and state.pending_vectors and state.metadata_acc and state.percept.strings
    before = kb_snapshot(stub, kb_id)
    TAMPERINGS[field](state)
    for call, request in (
        (stub.Learn, api.LearnRequest(state=state)),
        (stub.Observe, api.ObserveRequest(state=state, observation=pb.Observation(strings=["c"]))),
        (stub.GetCognitionData, api.GetCognitionDataRequest(state=state)),
    ):
        error = refused(call, request)
        assert error.code() is INVALID, error.details()
        assert details(error) == ("STATE_SIGNATURE_INVALID", ["state.signature"]), error.details()
    assert kb_snapshot(stub, kb_id) == before


def test_a_state_signed_by_an_unknown_key_is_refused(stub):
    state = rich_state(stub, kb())
    state.signature_key_id = "retired"
    error = refused(stub.Predict, api.PredictRequest(state=state))
    assert details(error) == ("STATE_KEY_UNKNOWN", ["state.signature_key_id"])


def test_an_unsigned_state_with_content_is_refused(stub):
    kb_id = kb()
    for state in (
        pb.SessionState(kb_id=kb_id, stm=[pb.Event(symbols=["a"]), pb.Event(symbols=["b"])]),
        pb.SessionState(kb_id=kb_id, time=5),
        pb.SessionState(kb_id=kb_id, emotive_acc=[pb.EmotiveMap(values={"joy": float("nan")})]),
    ):
        error = refused(stub.Learn, api.LearnRequest(state=state))
        assert error.code() is INVALID
        assert details(error) == ("STATE_SIGNATURE_MISSING", ["state.signature"])
        assert "state.signature" in error.details()
    assert kb_snapshot(stub, kb_id) == kb_snapshot(stub, kb() + "-empty")


def test_a_fresh_state_needs_no_signature_and_comes_back_signed(stub):
    fresh = pb.SessionState(kb_id=kb(), config=pb.SessionConfig(recall_threshold=0.3))
    state = stub.Observe(api.ObserveRequest(state=fresh, observation=pb.Observation(strings=["a"])), timeout=30).state
    assert state.signature_key_id == "current" and len(state.signature) == 32
    assert stub.GetStm(api.GetStmRequest(state=state), timeout=30).stm[0].symbols == ["a"]


def test_a_json_round_trip_keeps_the_signature_valid(stub):
    """grpcurl users carry the state as JSON: a lossless re-encoding verifies."""
    state = rich_state(stub, kb())
    carried = json_format.Parse(json.dumps(json.loads(json_format.MessageToJson(state))), pb.SessionState())
    assert stub.GetStm(api.GetStmRequest(state=carried), timeout=30).stm


def test_a_stream_opened_with_a_forged_state_is_refused(stub):
    state = rich_state(stub, kb())
    state.time += 1
    with pytest.raises(grpc.RpcError) as raised:
        list(
            stub.StreamObservations(iter([api.StreamObservationsRequest(open=api.StreamOpen(state=state))]), timeout=30)
        )
    assert raised.value.code() is INVALID
    assert details(raised.value) == ("STATE_SIGNATURE_INVALID", ["open.state.signature"])


def test_a_stream_returns_its_final_state_signed(stub):
    requests = [
        api.StreamObservationsRequest(open=api.StreamOpen(state=pb.SessionState(kb_id=kb()))),
        api.StreamObservationsRequest(observation=pb.Observation(strings=["a"])),
    ]
    final = list(stub.StreamObservations(iter(requests), timeout=30))[-1].closed.state
    assert stub.GetStm(api.GetStmRequest(state=final), timeout=30).stm[0].symbols == ["a"]


def test_replicas_sharing_a_ring_accept_each_others_states_and_others_do_not(start_server, ring_file, tmp_path):
    replica = start_server("--state-keys-file", str(ring_file))
    stranger = start_server()  # its own ring, created in its data directory
    rotated = tmp_path / "rotated.json"  # a new key first, the old ones still verifying
    old = json.loads(ring_file.read_text())["keys"]
    rotated.write_text(json.dumps({"keys": [{"id": "next", "secret": "ab" * 32}, *old]}))
    after_rotation = start_server("--state-keys-file", str(rotated))
    kb_id = kb()
    with grpc.insecure_channel(replica.target) as channel:
        state = (
            api_grpc.KatoServiceStub(channel)
            .Observe(
                api.ObserveRequest(state=pb.SessionState(kb_id=kb_id), observation=pb.Observation(strings=["a"])),
                timeout=30,
            )
            .state
        )
    with grpc.insecure_channel(after_rotation.target) as channel:
        rotated_stub = api_grpc.KatoServiceStub(channel)
        state = rotated_stub.Observe(
            api.ObserveRequest(state=state, observation=pb.Observation(strings=["b"])), timeout=30
        ).state
        assert state.signature_key_id == "next"
    with grpc.insecure_channel(stranger.target) as channel:
        error = refused(api_grpc.KatoServiceStub(channel).GetStm, api.GetStmRequest(state=state))
        assert details(error) == ("STATE_KEY_UNKNOWN", ["state.signature_key_id"])


def test_a_restarted_server_accepts_the_states_it_signed(start_server, tmp_path):
    data_dir = str(tmp_path / "data")
    first = start_server(data_dir=data_dir)
    with grpc.insecure_channel(first.target) as channel:
        state = (
            api_grpc.KatoServiceStub(channel)
            .Observe(
                api.ObserveRequest(state=pb.SessionState(kb_id=kb()), observation=pb.Observation(strings=["a"])),
                timeout=30,
            )
            .state
        )
    first.stop()
    second = start_server(data_dir=data_dir)
    with grpc.insecure_channel(second.target) as channel:
        assert api_grpc.KatoServiceStub(channel).GetStm(api.GetStmRequest(state=state), timeout=30).stm


# --- defence in depth: states signed with the server's key that break the input rules ------------


def test_a_signed_state_that_breaks_the_rules_is_still_refused(stub):
    """The forgeries of issue 13, signed as if the key had leaked: each is refused, naming the field."""
    kb_id = kb()
    stub.Learn(
        api.LearnRequest(
            state=stub.Observe(
                api.ObserveRequest(
                    state=pb.SessionState(kb_id=kb_id),
                    observation=pb.Observation(strings=["v"], vectors=[pb.Vector(values=[1.0, 2.0])]),
                ),
                timeout=30,
            ).state
        ),
        timeout=30,
    )  # the knowledge base's vectors are 2-dimensional now
    before = kb_snapshot(stub, kb_id)
    event = [pb.Event(symbols=["a"]), pb.Event(symbols=["b"])]
    forged_vector = pb.NamedVector(name="VCTR|" + "0" * 40, values=[float("nan"), 1.0])
    three_dim = [1.0, 2.0, 3.0]
    cases = {
        "state.emotive_acc[0]['j']": pb.SessionState(
            stm=event, emotive_acc=[pb.EmotiveMap(values={"j": float("nan")})]
        ),
        "state.emotive_acc[1]['j']": pb.SessionState(
            stm=event, emotive_acc=[pb.EmotiveMap(values={"j": 1.0}), pb.EmotiveMap(values={"j": float("inf")})]
        ),
        "state.pending_vectors[0].values": pb.SessionState(stm=event, pending_vectors=[forged_vector]),
        "state.pending_vectors[0].name": pb.SessionState(
            stm=event, pending_vectors=[pb.NamedVector(name="VCTR|" + "0" * 40, values=[1.0, 2.0])]
        ),
        "state.stm[1].symbols[0]": pb.SessionState(stm=[pb.Event(symbols=["a"]), pb.Event(symbols=["x" * 1_000_000])]),
        "state.stm[0]": pb.SessionState(stm=[pb.Event(), pb.Event(symbols=["a", "b"])]),
        "state.time": pb.SessionState(stm=event, time=-1),
    }
    cases["three-dimensional"] = pb.SessionState(
        stm=event, pending_vectors=[pb.NamedVector(name=vector_name(three_dim), values=three_dim)]
    )
    for field, state in cases.items():
        state.kb_id = kb_id
        _resigned(state)
        error = refused(stub.Learn, api.LearnRequest(state=state))
        assert error.code() in (INVALID, grpc.StatusCode.RESOURCE_EXHAUSTED), (field, error.details())
        expected = "state.pending_vectors[0].values" if field == "three-dimensional" else field
        assert expected in details(error)[1], (field, details(error))
    assert kb_snapshot(stub, kb_id) == before


def test_vectors_whose_sum_overflows_are_refused(stub):
    """[1e308, 1] twice sums to [inf, 2]: refused, not stored as infinity."""
    state = pb.SessionState(kb_id=kb())
    vectors = [pb.Vector(values=[1e308, 1.0]), pb.Vector(values=[1e308, 1.0])]
    error = refused(stub.Observe, api.ObserveRequest(state=state, observation=pb.Observation(vectors=vectors)))
    assert error.code() is INVALID
    assert details(error)[1] == ["observation.vectors"]
    assert "overflows" in error.details()
    sequence = api.ObserveSequenceRequest(state=state, observations=[pb.Observation(vectors=vectors)])
    assert details(refused(stub.ObserveSequence, sequence))[1] == ["observations[0].vectors"]
