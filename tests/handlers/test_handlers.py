"""Handler paths through a real server in this process: fast, and with the same wiring."""

from __future__ import annotations

import pytest
from kato_client import KatoClient
from kato_client.errors import FailedPrecondition, InvalidArgument, NotFound


def test_observe_then_learn_names_the_pattern_and_clears_the_stm(kato: KatoClient) -> None:
    session = kato.session("kb")
    session.observe(["a"])
    session.observe(["b"])
    name = session.learn()
    assert name.startswith("PTRN|")
    assert session.stm() == []
    assert kato.get_pattern("kb", name).frequency == 1


def test_predict_finds_the_learned_future(kato: KatoClient) -> None:
    session = kato.session("kb")
    for symbol in ["a", "b", "c"]:
        session.observe([symbol])
    name = session.learn()
    session.observe(["a"])
    session.observe(["b"])
    (prediction,) = session.predict().predictions
    assert prediction.name == name.removeprefix("PTRN|")
    assert [list(event.symbols) for event in prediction.future] == [["c"]]


def test_learn_on_an_empty_stm_is_a_failed_precondition(kato: KatoClient) -> None:
    with pytest.raises(FailedPrecondition):
        kato.session("kb").learn()


def test_a_bad_config_value_names_its_field(kato: KatoClient) -> None:
    with pytest.raises(InvalidArgument) as raised:
        kato.session("kb").configure({"recall_threshold": 1.5})
    assert [v.field for v in raised.value.field_violations] == ["config.recall_threshold"]


def test_server_held_session_keeps_its_stm_between_calls(kato: KatoClient) -> None:
    held = kato.server_session("kb")
    held.observe(["a"])
    held.observe(["b", "c"])
    assert held.stm() == [["a"], ["b", "c"]]
    held.delete()
    with pytest.raises(NotFound) as raised:
        held.stm()
    assert raised.value.reason == "SESSION_NOT_FOUND"
