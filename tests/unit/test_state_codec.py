"""The stored-state codec: a transition carries the last predictions over without decoding them."""

from __future__ import annotations

from kato_grpc.core import engine
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import LearnPattern, Observation
from kato_grpc.server.convert import EncodedPredictions
from kato_grpc.server.state_codec import decode_state, encode_state

ABC = (("a",), ("b",), ("c",))


def predicted_state():
    kb = MemoryKnowledgeBase()
    kb.apply(LearnPattern(pattern_name(ABC), ABC, (), (), 5))
    state = engine.new_session("kb")
    for symbol in ("a", "b"):
        state = engine.observe(state, Observation(strings=(symbol,)), kb).state
    assert state.last_predictions
    return kb, state


def test_a_step_that_leaves_the_predictions_alone_stores_them_unchanged():
    _, state = predicted_state()
    stored = decode_state(encode_state(state))
    assert isinstance(stored.last_predictions, EncodedPredictions) and stored.stm == state.stm
    learned = engine.learn(stored).state
    assert encode_state(learned) == encode_state(engine.learn(state).state)
    assert stored.last_predictions._decoded is None  # carried over as messages
    assert decode_state(encode_state(learned)).last_predictions == state.last_predictions


def test_a_step_that_clears_or_replaces_the_predictions_stores_the_new_ones():
    kb, state = predicted_state()
    stored = decode_state(encode_state(state))
    assert decode_state(encode_state(engine.clear_stm(stored))).last_predictions == ()
    observed = engine.observe(stored, Observation(strings=("c",)), kb).state
    assert encode_state(observed) == encode_state(engine.observe(state, Observation(strings=("c",)), kb).state)


def test_a_state_without_predictions_round_trips():
    state = engine.new_session("kb")
    assert decode_state(encode_state(state)).last_predictions == ()
    assert encode_state(decode_state(encode_state(state))) == encode_state(state)
