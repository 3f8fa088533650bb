"""The state carries the session, not its last answer; each prediction crosses the wire once.

A client-held state holds no predictions: GetCognitionData computes the last Observe's
again from the state's `cognition_basis`. A caller can ask for fewer predictions and for
less of each (`max_predictions`, `prediction_view`), and gets a prefix of the full answer.
"""

from __future__ import annotations

import grpc
import pytest
from kato_client.errors import InvalidArgument

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.server.responses import BASIC_FIELDS


def teach(client, kb_id: str, patterns: int = 40) -> None:
    """Patterns that all share the symbols `a` and `b`, so a query on them predicts many."""
    for i in range(patterns):
        session = client.session(kb_id)
        for event in (["a"], ["b", f"x{i}"], [f"y{i}"], [f"z{i}"]):
            session.observe(event)
        session.learn()


def raw(message) -> bytes:
    return message.SerializeToString(deterministic=True)


@pytest.mark.parametrize("held", ["client", "server"])
def test_cognition_data_gives_the_predictions_the_last_observe_computed(client, kb_id, held):
    teach(client, kb_id)
    session = client.session(kb_id) if held == "client" else client.server_session(kb_id)
    session.observe(["a"])
    observed = session.observe(["b"], return_predictions=True)
    assert len(observed.predictions) == 40
    cognition = session.cognition()
    assert [raw(p) for p in cognition.predictions] == [raw(p) for p in observed.predictions]
    session.observe([])  # an empty observation resets them
    assert list(session.cognition().predictions) == []


def test_a_learn_keeps_what_cognition_data_predicts_from(client, kb_id):
    teach(client, kb_id)
    session = client.session(kb_id)
    session.observe(["a"])
    predicted = session.observe(["b"], return_predictions=True).predictions
    session.learn()
    assert not session.state.stm
    after = session.cognition().predictions
    # The KB changed (the learn added a pattern): the same STM, predicted against it now.
    assert {p.name for p in predicted} < {p.name for p in after}
    session.clear_stm()
    assert list(session.cognition().predictions) == []


def test_a_client_held_observe_on_a_five_event_stm_is_small_both_ways(client, kb_id):
    teach(client, kb_id)
    session = client.session(kb_id)
    for event in (["a"], ["b"], ["c"], ["d"]):
        session.observe(event)
    request = api.ObserveRequest(state=session.state, observation=pb.Observation(strings=["e"]))
    response = client.stub.Observe(request, timeout=60)
    assert response.state.HasField("cognition_basis") and not response.state.cognition_basis.stm
    assert not response.state.last_predictions
    assert request.ByteSize() <= 2048 and response.ByteSize() <= 2048, (request.ByteSize(), response.ByteSize())


def test_predictions_come_back_once_cut_to_what_was_asked(client, kb_id):
    teach(client, kb_id)
    session = client.session(kb_id)
    session.observe(["a"])
    full = session.observe(["b"], return_predictions=True)
    assert not full.state.last_predictions  # in the response once, not again in the state
    session = client.session(kb_id)
    session.observe(["a"])
    basic = session.observe(["b"], return_predictions=True, max_predictions=5, prediction_view=pb.PREDICTION_VIEW_BASIC)
    assert len(basic.predictions) == 5
    for cut, whole in zip(basic.predictions, full.predictions, strict=False):
        assert {f.name for f, _ in cut.ListFields()} <= set(BASIC_FIELDS)
        kept = pb.Prediction(type=whole.type, name=whole.name, frequency=whole.frequency, potential=whole.potential)
        kept.future.extend(whole.future)
        assert raw(cut) == raw(kept)  # a prefix of the full answer, field for field
    assert [raw(f) for f in basic.future_potentials] == [raw(f) for f in full.future_potentials]
    predicted = session.predict(max_predictions=3)
    assert [p.name for p in predicted.predictions] == [p.name for p in full.predictions[:3]]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"max_predictions": -1}, "max_predictions"), ({"prediction_view": 9}, "prediction_view")],
)
def test_a_bad_prediction_option_names_its_field_and_changes_nothing(client, kb_id, fields, field):
    session = client.server_session(kb_id)
    session.observe(["a"])
    for call, request in (
        (
            "Observe",
            api.ObserveRequest(session_id=session.session_id, observation=pb.Observation(strings=["b"]), **fields),
        ),
        ("Predict", api.PredictRequest(session_id=session.session_id, **fields)),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            getattr(client.stub, call)(request, timeout=60)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in raised.value.details()
    assert session.stm() == [["a"]]
    with pytest.raises(InvalidArgument):
        client.session(kb_id).predict(max_predictions=-1)
