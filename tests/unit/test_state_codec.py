"""The stored-state codec: a state holds what the last Observe predicted from, never its predictions."""

from __future__ import annotations

from kato_grpc.core import engine
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import LearnPattern, Observation
from kato_grpc.server.state_codec import decode_state, encode_state

ABC = (("a",), ("b",), ("c",))


def predicted_state():
    kb = MemoryKnowledgeBase()
    kb.apply(LearnPattern(pattern_name(ABC), ABC, (), (), 5))
    state = engine.new_session("kb")
    for symbol in ("a", "b"):
        state = engine.observe(state, Observation(strings=(symbol,)), kb).state
    assert engine.cognition_data(state, kb)["predictions"]
    return kb, state


def test_a_stored_state_gives_the_same_cognition_data_and_no_predictions_bytes():
    kb, state = predicted_state()
    stored = decode_state(encode_state(state))
    assert stored == state and stored.cognition_stm == state.stm
    assert engine.cognition_data(stored, kb) == engine.cognition_data(state, kb)
    assert len(encode_state(state)) < 100  # two events and a basis that points at them


def test_a_learn_keeps_the_basis_and_a_clear_drops_it():
    kb, state = predicted_state()
    learned = decode_state(encode_state(engine.learn(state).state))
    assert learned.stm == () and learned.cognition_stm == (("a",), ("b",))
    assert engine.cognition_data(learned, kb)["predictions"]
    cleared = decode_state(encode_state(engine.clear_stm(learned)))
    assert cleared.cognition_stm is None and engine.cognition_data(cleared, kb)["predictions"] == ()


def test_a_state_without_predictions_round_trips():
    state = engine.new_session("kb")
    assert decode_state(encode_state(state)).cognition_stm is None
    assert encode_state(decode_state(encode_state(state))) == encode_state(state)
