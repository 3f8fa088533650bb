"""The stored-state codec: a transition carries the last predictions over without decoding them."""

from __future__ import annotations

from kato_grpc.core import engine
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import LearnPattern, Observation
from kato_grpc.server.state_codec import decode_for_step, decode_state, encode_after_step, encode_state

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
    light = decode_for_step(encode_state(state))
    assert light.last_predictions == () and light.stm == state.stm
    learned = engine.learn(light).state
    stored = encode_after_step(learned)
    assert stored == encode_state(engine.learn(state).state)
    assert decode_state(stored).last_predictions == state.last_predictions


def test_a_step_that_clears_or_replaces_the_predictions_stores_the_new_ones():
    kb, state = predicted_state()
    light = decode_for_step(encode_state(state))
    assert decode_state(encode_after_step(engine.clear_stm(light))).last_predictions == ()
    observed = engine.observe(light, Observation(strings=("c",)), kb).state
    assert encode_after_step(observed) == encode_state(engine.observe(state, Observation(strings=("c",)), kb).state)


def test_a_state_without_predictions_round_trips():
    state = engine.new_session("kb")
    assert encode_after_step(decode_for_step(encode_state(state))) == encode_state(state)
