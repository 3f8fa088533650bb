"""The KATO engine's operations as pure functions (SPEC.md §3–§5, §9).

Each state-changing operation takes the session state, its input and a read-only
`KnowledgeView`, and returns an `Outcome`: the new state, the effects to apply to the
knowledge base (in order, exactly once) and the operation's result. Nothing here does
I/O, reads a clock or keeps a global; the inputs are never mutated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from kato_grpc.core.config import SessionConfig, apply_overrides
from kato_grpc.core.errors import EmptyStmError, FieldViolation, LimitExceeded
from kato_grpc.core.knowledge import KnowledgeView, PendingView
from kato_grpc.core.learning import PATTERN_PREFIX, average_emotives, pattern_name
from kato_grpc.core.model import (
    ClearKnowledgeBase,
    Effect,
    Event,
    IndexVectors,
    LearnPattern,
    Limits,
    Observation,
    ObserveResult,
    Outcome,
    Percept,
    PredictResult,
    SequenceItemResult,
    SequenceResult,
    SessionState,
)
from kato_grpc.core.observation import build_event, parse_observation, validate_observation, vector_symbols
from kato_grpc.core.predict import predict_patterns

Predictor = Callable[[Sequence[Event], SessionConfig, KnowledgeView], PredictResult]
"""Computes Predict (§6): `predict_patterns`, the reference, or a compiled engine that
gives the same bits (kato_grpc.kb.native.native_predict)."""

__all__ = [
    "new_session",
    "parse_observation",
    "observe",
    "observe_sequence",
    "learn",
    "predict",
    "clear_stm",
    "clear_all",
    "update_config",
    "cognition_data",
    "Predictor",
]


def new_session(kb_id: str, config_overrides: Mapping[str, Any] | None = None) -> SessionState:
    """A fresh session on `kb_id` with the given config overrides (validated)."""
    return SessionState(kb_id=kb_id, config=apply_overrides(SessionConfig(), config_overrides or {}))


def update_config(state: SessionState, overrides: Mapping[str, Any]) -> SessionState:
    """Apply config overrides, all or nothing (§7). ClearStm keeps the config."""
    return replace(state, config=apply_overrides(state.config, overrides))


def predict(state: SessionState, kb: KnowledgeView, predictor: Predictor = predict_patterns) -> PredictResult:
    """Predictions for the session's STM (§6). Changes nothing."""
    return predictor(state.stm, state.config, kb)


def clear_stm(state: SessionState) -> SessionState:
    """Empty the STM, accumulators, pending vectors, percept and time; keep config (§9.2)."""
    return SessionState(kb_id=state.kb_id, config=state.config, version=state.version)


def clear_all(state: SessionState) -> Outcome:
    """ClearStm plus clearing the session's whole knowledge base (§9.2)."""
    return Outcome(state=clear_stm(state), effects=(ClearKnowledgeBase(),))


def cognition_data(state: SessionState, kb: KnowledgeView, predictor: Predictor = predict_patterns) -> dict[str, Any]:
    """What GetCognitionData reports (§9.2).

    `last_predictions` are computed again from the STM the last Observe predicted from
    (`cognition_stm`) with the session's config and `kb`: by determinism they are that
    Observe's predictions unless the knowledge base or the config changed since.
    """
    basis = state.cognition_stm
    return {
        "predictions": predictor(basis, state.config, kb).predictions if basis else (),
        "emotives": dict(state.emotive_acc[-1]) if state.emotive_acc else {},
        "symbols": [symbol for event in state.stm for symbol in event],
        "short_term_memory": [list(event) for event in state.stm],
        "time": state.time,
    }


# --- learning ------------------------------------------------------------------------


def _learn(state: SessionState) -> tuple[SessionState, list[Effect], str]:
    """Learn the STM (§5.2 steps 2–5). The caller has checked the STM is non-empty."""
    effects: list[Effect] = []
    if state.pending_vectors:
        effects.append(IndexVectors(state.pending_vectors))
    events = state.stm
    name = ""
    if sum(len(event) for event in events) >= 2:
        digest = pattern_name(events)
        effects.append(
            LearnPattern(
                name=digest,
                events=events,
                emotives=state.emotive_acc,
                metadata=state.metadata_acc,
                persistence=state.config.persistence,
            )
        )
        name = PATTERN_PREFIX + digest
    cleared = replace(state, stm=(), emotive_acc=(), metadata_acc=(), pending_vectors=())
    return cleared, effects, name


def learn(state: SessionState) -> Outcome:
    """Learn the STM as a pattern: ``PTRN|<name>``, or ``""`` for fewer than 2 symbols.

    Raises `EmptyStmError` (FAILED_PRECONDITION) on an empty STM, changing nothing.
    """
    if not state.stm:
        raise EmptyStmError("cannot learn: the short-term memory is empty")
    new_state, effects, name = _learn(state)
    return Outcome(state=new_state, effects=tuple(effects), result=name)


def _auto_learn(state: SessionState) -> tuple[SessionState, list[Effect], str]:
    """Learn when the STM reaches `max_pattern_length` events (§4)."""
    limit = state.config.max_pattern_length
    if limit == 0 or len(state.stm) < limit:
        return state, [], ""
    keep = state.stm[len(state.stm) - (limit - 1) :] if state.config.stm_mode == "ROLLING" and limit > 1 else ()
    learned, effects, name = _learn(state)
    return replace(learned, stm=keep), effects, name


# --- observing -----------------------------------------------------------------------


def _expected_dimension(state: SessionState, kb: KnowledgeView) -> int | None:
    dim = kb.vector_dimension()
    if dim is None and state.pending_vectors:
        dim = len(state.pending_vectors[0][1])
    return dim


_T = TypeVar("_T")


def _keep_newest(items: tuple[_T, ...], limit: int) -> tuple[_T, ...]:
    return items[len(items) - limit :] if len(items) > limit else items


def _observe(
    state: SessionState,
    observation: Observation,
    kb: KnowledgeView,
    limits: Limits,
    with_predictions: bool,
    predictor: Predictor,
) -> tuple[SessionState, list[Effect], ObserveResult]:
    """Observe after validation (§3.4 steps 2–9)."""
    config = state.config
    time = state.time + 1
    emotive_acc, metadata_acc = state.emotive_acc, state.metadata_acc
    if observation.emotives:
        emotive_acc = _keep_newest((*emotive_acc, dict(observation.emotives)), limits.max_accumulator_entries)
    if observation.metadata:
        metadata_acc = _keep_newest((*metadata_acc, dict(observation.metadata)), limits.max_accumulator_entries)
    pending = state.pending_vectors
    vector_part: list[str] = []
    if observation.vectors:
        vector_part, named = vector_symbols(observation.vectors, kb, config.sort_symbols)
        pending = (*pending, named)
    percept = Percept(
        strings=tuple(sorted(observation.strings)),
        vectors=observation.vectors,
        emotives=average_emotives(emotive_acc),
        metadata=dict(observation.metadata),
    )
    unique_id = observation.unique_id or f"obs-{time}"
    state = replace(
        state,
        time=time,
        emotive_acc=emotive_acc,
        metadata_acc=metadata_acc,
        pending_vectors=pending,
        percept=percept,
    )
    if observation.is_empty:
        state = replace(state, cognition_stm=None)
        return state, [], ObserveResult(stm_length=len(state.stm), time=time, unique_id=unique_id)

    event = build_event(vector_part, observation.strings, config.sort_symbols)
    state = replace(state, stm=_keep_newest((*state.stm, event), limits.max_stm_events))
    predicted = PredictResult()
    basis = None
    if with_predictions and config.process_predictions:
        predicted = predictor(state.stm, config, kb)
        basis = state.stm  # step 9: what GetCognitionData computes them from again
    state, effects, learned = _auto_learn(state)
    state = replace(state, cognition_stm=basis)
    return (
        state,
        effects,
        ObserveResult(
            stm_length=len(state.stm),
            time=time,
            unique_id=unique_id,
            auto_learned_pattern=learned,
            predictions=predicted.predictions,
            future_potentials=predicted.future_potentials,
        ),
    )


def observe(
    state: SessionState,
    observation: Observation,
    kb: KnowledgeView,
    limits: Limits = Limits(),
    predictor: Predictor = predict_patterns,
) -> Outcome:
    """Observe one event (§3.4): validate, append, predict, auto-learn.

    Raises `ValidationError` / `LimitExceeded` on bad input, changing nothing.
    """
    validate_observation(observation, limits, _expected_dimension(state, kb), "observation.")
    new_state, effects, result = _observe(state, observation, kb, limits, with_predictions=True, predictor=predictor)
    return Outcome(state=new_state, effects=tuple(effects), result=result)


def observe_sequence(
    state: SessionState,
    observations: Sequence[Observation],
    kb: KnowledgeView,
    *,
    learn_after_each: bool = False,
    learn_at_end: bool = False,
    clear_stm_between: bool = False,
    limits: Limits = Limits(),
    predictor: Predictor = predict_patterns,
) -> Outcome:
    """Observe a batch atomically (§9.1): every item is validated before any is applied.

    Later items see the patterns learned by earlier ones. `auto_learned_patterns` lists every
    stored name in the order learned, the final learn included (conformance vector
    ``test_observe_sequence_learn_at_end``). Predictions are computed only
    for the last item, the only one whose predictions are kept (`cognition_stm`).
    """
    if len(observations) > limits.max_observations_per_sequence:
        raise LimitExceeded(
            FieldViolation(
                "observations",
                f"{len(observations)} observations exceed max_observations_per_sequence="
                f"{limits.max_observations_per_sequence}",
            )
        )
    dim = _expected_dimension(state, kb)
    for k, observation in enumerate(observations):
        dim = validate_observation(observation, limits, dim, f"observations[{k}].")

    view = PendingView(kb)
    effects: list[Effect] = []
    initial_stm_length = len(state.stm)
    items: list[SequenceItemResult] = []
    learned_names: list[str] = []

    def record(new_effects: list[Effect], name: str) -> None:
        for effect in new_effects:
            view.apply(effect)
        effects.extend(new_effects)
        if name:
            learned_names.append(name)

    for k, observation in enumerate(observations):
        if clear_stm_between and k > 0:
            state = replace(state, stm=(), emotive_acc=(), metadata_acc=(), pending_vectors=())
        is_last = k == len(observations) - 1
        state, new_effects, result = _observe(
            state, observation, view, limits, with_predictions=is_last, predictor=predictor
        )
        record(new_effects, result.auto_learned_pattern)
        if learn_after_each and state.stm:
            state, new_effects, name = _learn(state)
            record(new_effects, name)
        items.append(
            SequenceItemResult(
                sequence_position=k,
                stm_length=len(state.stm),
                time=state.time,
                unique_id=result.unique_id,
                auto_learned_pattern=result.auto_learned_pattern,
            )
        )
    final_name = ""
    if learn_at_end and state.stm:
        state, new_effects, final_name = _learn(state)
        record(new_effects, final_name)
    return Outcome(
        state=state,
        effects=tuple(effects),
        result=SequenceResult(
            observations_processed=len(observations),
            initial_stm_length=initial_stm_length,
            final_stm_length=len(state.stm),
            results=tuple(items),
            auto_learned_patterns=tuple(learned_names),
            final_learned_pattern=final_name,
        ),
    )
