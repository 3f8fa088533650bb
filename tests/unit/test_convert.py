"""Round trips between the engine's values and the kato.v1 messages (server/convert.py)."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from google.protobuf import struct_pb2

from kato_grpc._proto.kato.v1 import kato_service_pb2 as svc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.config import SessionConfig, apply_overrides
from kato_grpc.core.errors import ValidationError
from kato_grpc.core.model import (
    Anomaly,
    FuturePotential,
    Observation,
    PatternRecord,
    Percept,
    Prediction,
    SessionState,
)
from kato_grpc.server import convert

NAME = "e9e43f2309079f2843665ab773996d99489306d6"


def make_prediction(name: str = NAME, weighted: bool = False) -> Prediction:
    w = 0.25 if weighted else None
    return Prediction(
        name=name,
        frequency=3,
        sequence=(("a", "b"), ("c",)),
        emotives={"joy": 0.5, "anger": -1.0},
        metadata={"source": ("x", "y"), "k": ("1",)},
        matches=("a", "b"),
        past=(),
        present=(("a", "b"),),
        future=(("c",),),
        missing=((),),
        extras=(("zz",),),
        anomalies=(Anomaly("hellp", "hello", 0.8),) if weighted else (),
        similarity=0.8,
        evidence=2 / 3,
        confidence=1.0,
        snr=0.5,
        fragmentation=0.0,
        entropy=1.0,
        normalized_entropy=0.5,
        global_normalized_entropy=0.25,
        itfdf_similarity=0.9999999999999998,
        confluence=0.1,
        tfidf_score=1.5,
        pattern_probability=1.0,
        weighted_strength=0.8,
        predictive_information=0.8,
        bayesian_prior=1.0,
        bayesian_likelihood=0.8,
        bayesian_posterior=1.0,
        potential=-0.125,
        weighted_similarity=0.0 if weighted else None,  # 0.0 is a value, not absence
        weighted_evidence=w,
        weighted_confidence=w,
        weighted_snr=w,
    )


def rich_state() -> SessionState:
    config = apply_overrides(
        SessionConfig(),
        {
            "recall_threshold": 0.0,
            "max_predictions": 7,
            "stm_mode": "ROLLING",
            "sort_symbols": False,
            "affinity_emotive": "joy",
            "filter_pipeline": ["length", "jaccard"],
            "jaccard_threshold": 0.0,
        },
    )
    return SessionState(
        kb_id="kb-1",
        config=config,
        stm=(("VCTR|79cd73fb4f9ee7ee184cdbcc4663981575339a2d", "a", "a"), ("", "é", 'it\'s "q"'), ("\u200b",)),
        emotive_acc=({"joy": 1.0, "fear": -2.5}, {"joy": 3.0}),
        metadata_acc=(
            {"n": 7.0, "f": 2.5, "b": True, "z": None, "s": "txt", "l": [1.0, "x", None], "d": {"y": 1.0, "a": [True]}},
            {"only": "one"},
        ),
        pending_vectors=(("VCTR|79cd73fb4f9ee7ee184cdbcc4663981575339a2d", (1.5, 2.25)),),
        time=42,
        percept=Percept(
            strings=("a", "b"),
            vectors=((1.5, 2.25),),
            emotives={"joy": 2.0},
            metadata={"n": 7.0},
        ),
        cognition_stm=(("a", "b"), ("c",)),  # not the STM: a learn came after the Observe
        version=9,
    )


def wire(msg):
    """Through bytes, as a client would send it back."""
    return type(msg).FromString(msg.SerializeToString())


# -- session state -------------------------------------------------------------------


def test_state_round_trip_rich():
    state = rich_state()
    assert convert.state_from_proto(wire(convert.state_to_proto(state))) == state


def test_state_round_trip_default():
    state = SessionState(kb_id="k")
    msg = convert.state_to_proto(state)
    assert not msg.HasField("config")  # the default config costs no bytes
    assert not msg.HasField("percept")
    back = convert.state_from_proto(wire(msg))
    assert back == state
    assert back.percept is None


def test_empty_percept_is_not_none():
    state = SessionState(kb_id="k", percept=Percept())
    msg = convert.state_to_proto(state)
    assert msg.HasField("percept")
    assert convert.state_from_proto(wire(msg)).percept == Percept()


def test_state_config_is_compact_overrides():
    msg = convert.state_to_proto(rich_state())
    present = {fd.name for fd, _ in msg.config.ListFields()}
    assert present == {
        "recall_threshold",
        "max_predictions",
        "stm_mode",
        "sort_symbols",
        "affinity_emotive",
        "filter_pipeline",
        "jaccard_threshold",
    }


def test_state_bytes_deterministic_whatever_dict_order():
    a = rich_state()
    b = replace(
        a,
        emotive_acc=({"fear": -2.5, "joy": 1.0}, {"joy": 3.0}),
        metadata_acc=(dict(reversed(list(a.metadata_acc[0].items()))), {"only": "one"}),
    )
    ba = convert.serialize_state(convert.state_to_proto(a))
    bb = convert.serialize_state(convert.state_to_proto(b))
    assert ba == bb
    assert convert.serialize_state(wire(convert.state_to_proto(a))) == ba


def test_decoded_maps_are_in_code_point_order():
    msg = pb.SessionState(kb_id="k")
    em = msg.emotive_acc.add()
    for key in ("z", "B", "a"):
        em.values[key] = 1.0
    state = convert.state_from_proto(wire(msg))
    assert list(state.emotive_acc[0]) == ["B", "a", "z"]


def test_state_in_place_into_response():
    state = rich_state()
    response = svc.LearnResponse(pattern_name="PTRN|" + NAME)
    convert.state_to_proto(state, response.state)
    assert response.HasField("state")
    assert convert.state_from_proto(wire(response).state) == state


def test_the_cognition_basis_holds_events_only_when_they_are_not_the_stm():
    state = rich_state()
    same = replace(state, cognition_stm=state.stm)
    msg = convert.state_to_proto(same)
    assert msg.HasField("cognition_basis") and not msg.cognition_basis.stm  # no second copy of the STM
    assert convert.state_from_proto(wire(msg)) == same
    other = convert.state_to_proto(state)
    assert [list(e.symbols) for e in other.cognition_basis.stm] == [["a", "b"], ["c"]]
    none = convert.state_to_proto(replace(state, cognition_stm=None))
    assert not none.HasField("cognition_basis")
    assert convert.state_from_proto(wire(none)).cognition_stm is None


def test_the_deprecated_last_predictions_are_ignored():
    msg = convert.state_to_proto(rich_state())
    assert not msg.last_predictions  # never written
    convert.prediction_to_proto(make_prediction(), msg.last_predictions.add())
    assert convert.state_from_proto(wire(msg)) == rich_state()


def test_invalid_config_in_state_is_rejected():
    msg = convert.state_to_proto(SessionState(kb_id="k"))
    msg.config.recall_threshold = 2.0
    msg.config.stm_mode = "SIDEWAYS"
    with pytest.raises(ValidationError) as err:
        convert.state_from_proto(wire(msg))
    assert {v.field for v in err.value.violations} == {"state.config.recall_threshold", "state.config.stm_mode"}


# -- configuration -------------------------------------------------------------------


def test_proto_config_has_every_core_key():
    assert {f.name for f in fields(SessionConfig)} == {f.name for f in pb.SessionConfig.DESCRIPTOR.fields}


def test_effective_config_has_every_field_but_unset_affinity():
    msg = convert.config_to_proto(SessionConfig())
    present = {fd.name for fd, _ in msg.ListFields()}
    assert present == {f.name for f in fields(SessionConfig)} - {"affinity_emotive"}
    assert list(msg.filter_pipeline.values) == []
    assert convert.config_from_proto(wire(msg)) == SessionConfig()

    with_affinity = convert.config_to_proto(replace(SessionConfig(), affinity_emotive="joy"))
    assert with_affinity.HasField("affinity_emotive")


def test_overrides_presence_semantics():
    assert convert.overrides_from_proto(pb.SessionConfig()) == {}
    msg = pb.SessionConfig(
        recall_threshold=0.0,
        sort_symbols=False,
        max_pattern_length=0,
        affinity_emotive="",
        filter_pipeline=pb.StringList(),
    )
    overrides = convert.overrides_from_proto(wire(msg))
    assert overrides == {
        "recall_threshold": 0.0,
        "sort_symbols": False,
        "max_pattern_length": 0,
        "affinity_emotive": "",
        "filter_pipeline": (),
    }
    base = replace(
        SessionConfig(),
        recall_threshold=0.5,
        sort_symbols=True,
        affinity_emotive="joy",
        filter_pipeline=("length",),
        max_predictions=7,
    )
    updated = apply_overrides(base, overrides)
    assert updated.recall_threshold == 0.0
    assert updated.sort_symbols is False
    assert updated.affinity_emotive == ""
    assert updated.filter_pipeline == ()
    assert updated.max_predictions == 7  # absent: unchanged


def test_overrides_types_for_the_core():
    msg = pb.SessionConfig(max_predictions=5, length_max_ratio=3.0, filter_pipeline=pb.StringList(values=["minhash"]))
    overrides = convert.overrides_from_proto(wire(msg))
    assert type(overrides["max_predictions"]) is int
    assert type(overrides["length_max_ratio"]) is float
    assert overrides["filter_pipeline"] == ("minhash",)


def test_invalid_override_names_the_field():
    msg = pb.SessionConfig(max_predictions=0, filter_pipeline=pb.StringList(values=["length", "nope"]))
    with pytest.raises(ValidationError) as err:
        convert.config_from_proto(msg)
    assert {v.field for v in err.value.violations} == {"config.max_predictions", "config.filter_pipeline"}


# -- observations and metadata -------------------------------------------------------


def test_observation_from_proto_metadata_types():
    msg = pb.Observation(strings=["b", "a", "b"], unique_id="u1")
    msg.vectors.add(values=[1.0, -2.5])
    msg.emotives["joy"] = 0.5
    msg.emotives["anger"] = 1.0
    msg.metadata.update({"i": 7, "f": 2.5, "b": False, "z": None, "s": "t", "l": [1, "x", [True]], "d": {"k": "v"}})
    obs = convert.observation_from_proto(wire(msg))
    assert obs.strings == ("b", "a", "b")  # sorting is the engine's job
    assert obs.vectors == ((1.0, -2.5),)
    assert list(obs.emotives) == ["anger", "joy"]
    assert list(obs.metadata) == ["b", "d", "f", "i", "l", "s", "z"]
    assert obs.metadata == {
        "i": 7.0,
        "f": 2.5,
        "b": False,
        "z": None,
        "s": "t",
        "l": [1.0, "x", [True]],
        "d": {"k": "v"},
    }
    assert type(obs.metadata["i"]) is float  # a Struct number is a double
    assert type(obs.metadata["b"]) is bool
    assert obs.unique_id == "u1"


def test_unset_observation_is_empty():
    assert convert.observation_from_proto(None) == Observation()
    empty = convert.observation_from_proto(pb.Observation())
    assert empty == Observation()
    assert empty.is_empty


def test_observation_round_trip():
    obs = Observation(
        strings=("x",),
        vectors=((1.0,), (2.0,)),
        emotives={"a": 1.0},
        metadata={"k": [1.0, {"n": None}]},
        unique_id="id",
    )
    assert convert.observation_from_proto(wire(convert.observation_to_proto(obs))) == obs


def test_struct_rejects_non_json():
    with pytest.raises(TypeError):
        convert.dict_to_struct({"x": object()})


def test_struct_keeps_empty_containers():
    s = convert.dict_to_struct({"l": [], "d": {}})
    back = convert.struct_to_dict(struct_pb2.Struct.FromString(s.SerializeToString()))
    assert back == {"l": [], "d": {}}


# -- predictions, future potentials, patterns ---------------------------------------


def test_prediction_round_trip_and_weighted_presence():
    plain = make_prediction()
    msg = convert.prediction_to_proto(plain)
    for name in ("weighted_similarity", "weighted_evidence", "weighted_confidence", "weighted_snr"):
        assert not msg.HasField(name)
    assert convert.prediction_from_proto(wire(msg)) == plain

    weighted = make_prediction(weighted=True)
    wmsg = convert.prediction_to_proto(weighted)
    assert wmsg.HasField("weighted_similarity") and wmsg.weighted_similarity == 0.0
    assert convert.prediction_from_proto(wire(wmsg)) == weighted


def test_predictions_fill_a_response():
    preds = (make_prediction(), make_prediction(weighted=True))
    response = svc.PredictResponse()
    convert.predictions_to_proto(preds, response, "predictions")
    convert.future_potentials_to_proto(
        [
            FuturePotential(
                future=(("c",),), aggregate_potential=1.0, supporting_patterns=2, total_weighted_frequency=1.6
            )
        ],
        response,
        "future_potentials",
    )
    back = wire(response)
    assert tuple(convert.prediction_from_proto(p) for p in back.predictions) == preds
    assert back.future_potentials[0].supporting_patterns == 2


def test_future_potential_round_trip():
    fp = FuturePotential(
        future=(("c", "d"), ("e",)), aggregate_potential=0.5, supporting_patterns=3, total_weighted_frequency=2.25
    )
    assert convert.future_potential_from_proto(wire(convert.future_potential_to_proto(fp))) == fp


def test_pattern_to_proto():
    record = PatternRecord(
        name=NAME,
        events=(("a", "b"), ("c",)),
        frequency=2,
        emotives=({"joy": 1.0}, {"joy": 2.0, "fear": 0.0}),
        metadata={"k": ("1", "2")},
        affinity_contrib={"joy": 1.5},
    )
    msg = wire(convert.pattern_to_proto(record))
    assert msg.name == "PTRN|" + NAME
    assert [list(e.symbols) for e in msg.events] == [["a", "b"], ["c"]]
    assert msg.length == 3
    assert msg.frequency == 2
    assert [dict(e.values) for e in msg.emotives] == [{"joy": 1.0}, {"joy": 2.0, "fear": 0.0}]
    assert {k: list(v.values) for k, v in msg.metadata.items()} == {"k": ["1", "2"]}
    prefixed = convert.pattern_to_proto(replace(record, name="PTRN|" + NAME))
    assert prefixed.name == "PTRN|" + NAME
