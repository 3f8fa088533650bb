"""Conversions between the engine's values (`kato_grpc.core`) and kato.v1 messages.

Pure functions, no I/O. They sit on every call's path, so they build messages in
place (``repeated.add()`` and attribute assignment, the fastest way with the upb
runtime) and never copy a message they can fill directly.

Determinism (DESIGN.md, SPEC.md §8): every map is written and read in code-point
key order, so the engine sees the same dict order whatever order the wire had,
and `serialize_state` writes a `SessionState` with ``deterministic=True`` (map
entries sorted) so equal states give equal bytes.

Decoding does not validate engine rules (symbol limits, vector dimensions, ...):
the core does. The one exception is a state's configuration, which can only be
built through `kato_grpc.core.config.apply_overrides` and so is validated here
(a `ValidationError` naming ``state.config.<key>``).

Metadata travels as `google.protobuf.Struct`, whose numbers are doubles: an
integer sent as metadata comes back as a float (``7`` -> ``7.0``). The core's
metadata text (SPEC.md §5.3) prints both the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from functools import lru_cache
from typing import Any

from google.protobuf import struct_pb2

from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.config import SessionConfig, apply_overrides
from kato_grpc.core.model import (
    Anomaly,
    Event,
    FuturePotential,
    Observation,
    PatternRecord,
    Percept,
    Prediction,
    SessionState,
)
from kato_grpc.kb.native import NativeFuturePotentials, NativePredictions

__all__ = [
    "PATTERN_PREFIX",
    "config_from_proto",
    "config_to_proto",
    "emotives_from_proto",
    "events_from_proto",
    "events_to_proto",
    "future_potential_from_proto",
    "future_potential_to_proto",
    "future_potentials_to_proto",
    "observation_from_proto",
    "observation_to_proto",
    "overrides_from_proto",
    "pattern_to_proto",
    "percept_from_proto",
    "percept_to_proto",
    "prediction_from_proto",
    "prediction_to_proto",
    "predictions_to_proto",
    "serialize_state",
    "state_from_proto",
    "state_to_proto",
    "struct_to_dict",
    "dict_to_struct",
]

PATTERN_PREFIX = "PTRN|"

_DEFAULT_CONFIG = SessionConfig()
_CONFIG_KEYS = tuple(f.name for f in fields(SessionConfig))
_SCALAR_CONFIG_KEYS = tuple(key for key in _CONFIG_KEYS if key != "filter_pipeline")
assert set(_CONFIG_KEYS) == {f.name for f in pb.SessionConfig.DESCRIPTOR.fields}, (
    "protos/kato/v1/types.proto SessionConfig and core SessionConfig disagree"
)

# ---------------------------------------------------------------------------------
# Building blocks: events, emotive maps, metadata (Struct)


def events_to_proto(events: Iterable[Event], field: Any) -> None:
    """Append `events` to a repeated `Event` field."""
    add = field.add
    for event in events:
        add().symbols.extend(event)


def events_from_proto(field: Iterable[pb.Event]) -> tuple[Event, ...]:
    """The events of a repeated `Event` field."""
    return tuple([tuple(event.symbols) for event in field])


def _fill_double_map(target: Any, values: Mapping[str, float]) -> None:
    for key in sorted(values):
        target[key] = values[key]


def emotives_from_proto(values: Mapping[str, float]) -> dict[str, float]:
    """A map<string, double> as a dict in code-point key order."""
    return dict(sorted(values.items()))


def _fill_string_lists(target: Any, values: Mapping[str, Sequence[str]]) -> None:
    for key in sorted(values):
        target[key].values.extend(values[key])


def _string_lists_from_proto(field: Mapping[str, pb.StringList]) -> dict[str, tuple[str, ...]]:
    return {key: tuple(value.values) for key, value in sorted(field.items())}


def _fill_value(target: struct_pb2.Value, value: Any) -> None:
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif value is True or value is False:
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, (int, float)):
        target.number_value = value
    elif isinstance(value, Mapping):
        dict_to_struct(value, target.struct_value)
    elif isinstance(value, (list, tuple)):
        target.list_value.SetInParent()
        add = target.list_value.values.add
        for item in value:
            _fill_value(add(), item)
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def dict_to_struct(values: Mapping[str, Any], out: struct_pb2.Struct | None = None) -> struct_pb2.Struct:
    """A JSON-like mapping as a `Struct` (keys in code-point order; numbers as doubles)."""
    struct = struct_pb2.Struct() if out is None else out
    struct.SetInParent()
    fields_ = struct.fields
    for key in sorted(values):
        _fill_value(fields_[key], values[key])
    return struct


def _value_to_py(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value_to_py(item) for item in value.list_value.values]
    return None  # null_value, or a Value with no kind set


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A `Struct` as plain Python JSON values (dict keys in code-point order).

    Numbers are floats (a Struct holds doubles), lists are lists.
    """
    return {key: _value_to_py(value) for key, value in sorted(struct.fields.items())}


# ---------------------------------------------------------------------------------
# Configuration


def config_to_proto(
    config: SessionConfig, out: pb.SessionConfig | None = None, *, overrides_only: bool = False
) -> pb.SessionConfig:
    """`config` as a `SessionConfig` message.

    By default every field is present (the effective configuration of GetConfig),
    except `affinity_emotive` when unset. With ``overrides_only`` only the fields
    that differ from the defaults are present: the compact form kept in a
    `SessionState`.
    """
    msg = pb.SessionConfig() if out is None else out
    for key in _SCALAR_CONFIG_KEYS:
        value = getattr(config, key)
        if overrides_only and value == getattr(_DEFAULT_CONFIG, key):
            continue
        if key == "affinity_emotive" and not value:
            continue
        setattr(msg, key, value)
    if not overrides_only or config.filter_pipeline != _DEFAULT_CONFIG.filter_pipeline:
        msg.filter_pipeline.SetInParent()
        msg.filter_pipeline.values.extend(config.filter_pipeline)
    return msg


def overrides_from_proto(msg: pb.SessionConfig) -> dict[str, Any]:
    """Only the present fields of a `SessionConfig`, for `core.config.apply_overrides`.

    Presence is the override: an absent field is not in the dict, a present one is
    even when it holds the zero value (``recall_threshold = 0.0``). A present
    `filter_pipeline` gives a tuple, possibly empty (which clears the pipeline).
    """
    out: dict[str, Any] = {}
    for descriptor, value in msg.ListFields():
        name = descriptor.name
        out[name] = tuple(value.values) if name == "filter_pipeline" else value
    return out


@lru_cache(maxsize=1024)
def _config_from_bytes(data: bytes, prefix: str) -> SessionConfig:
    return apply_overrides(_DEFAULT_CONFIG, overrides_from_proto(pb.SessionConfig.FromString(data)), prefix)


def config_from_proto(msg: pb.SessionConfig, prefix: str = "config") -> SessionConfig:
    """The defaults overridden by the present fields of `msg`, validated.

    Raises `ValidationError` (field paths ``<prefix>.<key>``) if a present field is
    invalid. Results are cached by the message's bytes: sessions mostly share a
    handful of configurations, and `SessionConfig` is immutable.
    """
    if not msg.ListFields():
        return _DEFAULT_CONFIG
    return _config_from_bytes(msg.SerializeToString(deterministic=True), prefix)


# ---------------------------------------------------------------------------------
# Observations and percepts


def observation_from_proto(msg: pb.Observation | None) -> Observation:
    """The engine's `Observation`; an unset message is the empty observation."""
    if msg is None:
        return Observation()
    return Observation(
        strings=tuple(msg.strings),
        vectors=tuple([tuple(vector.values) for vector in msg.vectors]),
        emotives=dict(sorted(msg.emotives.items())),
        metadata=struct_to_dict(msg.metadata) if msg.HasField("metadata") else {},
        unique_id=msg.unique_id,
    )


def observation_to_proto(obs: Observation, out: pb.Observation | None = None) -> pb.Observation:
    """An `Observation` message (for clients and tests)."""
    msg = pb.Observation() if out is None else out
    msg.strings.extend(obs.strings)
    add = msg.vectors.add
    for vector in obs.vectors:
        add().values.extend(vector)
    _fill_double_map(msg.emotives, obs.emotives)
    if obs.metadata:
        dict_to_struct(obs.metadata, msg.metadata)
    msg.unique_id = obs.unique_id
    return msg


def percept_to_proto(percept: Percept, out: pb.Percept | None = None) -> pb.Percept:
    """A `Percept` message. Always marks the message present, even when empty."""
    msg = pb.Percept() if out is None else out
    msg.SetInParent()
    msg.strings.extend(percept.strings)
    add = msg.vectors.add
    for vector in percept.vectors:
        add().values.extend(vector)
    _fill_double_map(msg.emotives, percept.emotives)
    if percept.metadata:
        dict_to_struct(percept.metadata, msg.metadata)
    return msg


def percept_from_proto(msg: pb.Percept) -> Percept:
    """The engine's `Percept`."""
    return Percept(
        strings=tuple(msg.strings),
        vectors=tuple([tuple(vector.values) for vector in msg.vectors]),
        emotives=dict(sorted(msg.emotives.items())),
        metadata=struct_to_dict(msg.metadata) if msg.HasField("metadata") else {},
    )


# ---------------------------------------------------------------------------------
# Predictions


def prediction_to_proto(p: Prediction, out: pb.Prediction | None = None) -> pb.Prediction:
    """A `Prediction` message; the `weighted_*` fields are absent when None."""
    m = pb.Prediction() if out is None else out
    m.type = p.type
    m.name = p.name
    m.frequency = p.frequency
    _fill_double_map(m.emotives, p.emotives)
    _fill_string_lists(m.metadata, p.metadata)
    events_to_proto(p.sequence, m.sequence)
    m.matches.extend(p.matches)
    events_to_proto(p.past, m.past)
    events_to_proto(p.present, m.present)
    events_to_proto(p.future, m.future)
    events_to_proto(p.missing, m.missing)
    events_to_proto(p.extras, m.extras)
    if p.anomalies:
        add = m.anomalies.add
        for anomaly in p.anomalies:
            a = add()
            a.observed = anomaly.observed
            a.expected = anomaly.expected
            a.similarity = anomaly.similarity
    m.similarity = p.similarity
    m.evidence = p.evidence
    m.confidence = p.confidence
    m.snr = p.snr
    m.fragmentation = p.fragmentation
    m.entropy = p.entropy
    m.normalized_entropy = p.normalized_entropy
    m.global_normalized_entropy = p.global_normalized_entropy
    m.itfdf_similarity = p.itfdf_similarity
    m.confluence = p.confluence
    m.tfidf_score = p.tfidf_score
    m.pattern_probability = p.pattern_probability
    m.weighted_strength = p.weighted_strength
    m.predictive_information = p.predictive_information
    m.bayesian_prior = p.bayesian_prior
    m.bayesian_likelihood = p.bayesian_likelihood
    m.bayesian_posterior = p.bayesian_posterior
    m.potential = p.potential
    if p.weighted_similarity is not None:
        m.weighted_similarity = p.weighted_similarity
    if p.weighted_evidence is not None:
        m.weighted_evidence = p.weighted_evidence
    if p.weighted_confidence is not None:
        m.weighted_confidence = p.weighted_confidence
    if p.weighted_snr is not None:
        m.weighted_snr = p.weighted_snr
    return m


def predictions_to_proto(predictions: Iterable[Prediction], message: Any, field: str) -> None:
    """Append `predictions` to the repeated `Prediction` field `field` of `message`.

    Predictions already in wire form are not built again field by field (~14 µs a
    prediction): the native engine's come as protobuf bytes, parsed once in C."""
    if isinstance(predictions, NativePredictions):
        message.MergeFromString(predictions.wire(message.DESCRIPTOR.fields_by_name[field].number))
        return
    add = getattr(message, field).add
    for p in predictions:
        prediction_to_proto(p, add())


def prediction_from_proto(m: pb.Prediction) -> Prediction:
    """The engine's `Prediction` (absent `weighted_*` fields become None)."""
    has = m.HasField
    return Prediction(
        name=m.name,
        frequency=m.frequency,
        sequence=events_from_proto(m.sequence),
        emotives=dict(sorted(m.emotives.items())),
        metadata=_string_lists_from_proto(m.metadata),
        matches=tuple(m.matches),
        past=events_from_proto(m.past),
        present=events_from_proto(m.present),
        future=events_from_proto(m.future),
        missing=events_from_proto(m.missing),
        extras=events_from_proto(m.extras),
        anomalies=tuple([Anomaly(a.observed, a.expected, a.similarity) for a in m.anomalies]),
        similarity=m.similarity,
        evidence=m.evidence,
        confidence=m.confidence,
        snr=m.snr,
        fragmentation=m.fragmentation,
        entropy=m.entropy,
        normalized_entropy=m.normalized_entropy,
        global_normalized_entropy=m.global_normalized_entropy,
        itfdf_similarity=m.itfdf_similarity,
        confluence=m.confluence,
        tfidf_score=m.tfidf_score,
        pattern_probability=m.pattern_probability,
        weighted_strength=m.weighted_strength,
        predictive_information=m.predictive_information,
        bayesian_prior=m.bayesian_prior,
        bayesian_likelihood=m.bayesian_likelihood,
        bayesian_posterior=m.bayesian_posterior,
        potential=m.potential,
        weighted_similarity=m.weighted_similarity if has("weighted_similarity") else None,
        weighted_evidence=m.weighted_evidence if has("weighted_evidence") else None,
        weighted_confidence=m.weighted_confidence if has("weighted_confidence") else None,
        weighted_snr=m.weighted_snr if has("weighted_snr") else None,
        type=m.type,
    )


def future_potential_to_proto(fp: FuturePotential, out: pb.FuturePotential | None = None) -> pb.FuturePotential:
    """A `FuturePotential` message."""
    m = pb.FuturePotential() if out is None else out
    events_to_proto(fp.future, m.future)
    m.aggregate_potential = fp.aggregate_potential
    m.supporting_patterns = fp.supporting_patterns
    m.total_weighted_frequency = fp.total_weighted_frequency
    return m


def future_potentials_to_proto(items: Iterable[FuturePotential], message: Any, field: str) -> None:
    """Append future potentials to the repeated `FuturePotential` field `field` of `message`."""
    if isinstance(items, NativeFuturePotentials):
        message.MergeFromString(items.wire(message.DESCRIPTOR.fields_by_name[field].number))
        return
    add = getattr(message, field).add
    for fp in items:
        future_potential_to_proto(fp, add())


def future_potential_from_proto(m: pb.FuturePotential) -> FuturePotential:
    """The engine's `FuturePotential`."""
    return FuturePotential(
        future=events_from_proto(m.future),
        aggregate_potential=m.aggregate_potential,
        supporting_patterns=m.supporting_patterns,
        total_weighted_frequency=m.total_weighted_frequency,
    )


# ---------------------------------------------------------------------------------
# Patterns


def pattern_to_proto(record: PatternRecord, out: pb.Pattern | None = None) -> pb.Pattern:
    """A `Pattern` message; the name gets its ``PTRN|`` prefix."""
    m = pb.Pattern() if out is None else out
    name = record.name
    m.name = name if name.startswith(PATTERN_PREFIX) else PATTERN_PREFIX + name
    events_to_proto(record.events, m.events)
    m.length = record.length
    m.frequency = record.frequency
    add = m.emotives.add
    for emotives in record.emotives:
        _fill_double_map(add().values, emotives)
    _fill_string_lists(m.metadata, record.metadata)
    return m


# ---------------------------------------------------------------------------------
# Session state


def state_to_proto(state: SessionState, out: pb.SessionState | None = None) -> pb.SessionState:
    """The `SessionState` message of `state`, built in place in `out` if given.

    The config is written in its compact form (only non-default fields; absent when
    the config is the default). `out` must be empty (a fresh message or a response's
    unset field).
    """
    msg = pb.SessionState() if out is None else out
    msg.SetInParent()
    msg.kb_id = state.kb_id
    events_to_proto(state.stm, msg.stm)
    if state.emotive_acc:
        add = msg.emotive_acc.add
        for emotives in state.emotive_acc:
            _fill_double_map(add().values, emotives)
    if state.metadata_acc:
        add_struct = msg.metadata_acc.add
        for metadata in state.metadata_acc:
            dict_to_struct(metadata, add_struct())
    if state.pending_vectors:
        add_vector = msg.pending_vectors.add
        for name, values in state.pending_vectors:
            nv = add_vector()
            nv.name = name
            nv.values.extend(values)
    msg.time = state.time
    config = state.config
    if config is not _DEFAULT_CONFIG and config != _DEFAULT_CONFIG:
        config_to_proto(config, msg.config, overrides_only=True)
    if state.percept is not None:
        percept_to_proto(state.percept, msg.percept)
    if state.cognition_stm is not None:
        msg.cognition_basis.SetInParent()
        if state.cognition_stm is not state.stm and state.cognition_stm != state.stm:
            events_to_proto(state.cognition_stm, msg.cognition_basis.stm)
    msg.version = state.version
    return msg


def state_from_proto(msg: pb.SessionState, *, prefix: str = "state") -> SessionState:
    """The engine's `SessionState` of a message.

    The config is the defaults overridden by ``msg.config``'s present fields and is
    validated (`ValidationError` on ``<prefix>.config.<key>``). The deprecated
    `last_predictions` field is ignored: a state carries its `cognition_basis` instead.
    """
    config = config_from_proto(msg.config, f"{prefix}.config") if msg.HasField("config") else _DEFAULT_CONFIG
    stm = events_from_proto(msg.stm)
    return SessionState(
        kb_id=msg.kb_id,
        config=config,
        stm=stm,
        emotive_acc=tuple([dict(sorted(m.values.items())) for m in msg.emotive_acc]),
        metadata_acc=tuple([struct_to_dict(s) for s in msg.metadata_acc]),
        pending_vectors=tuple([(v.name, tuple(v.values)) for v in msg.pending_vectors]),
        time=msg.time,
        percept=percept_from_proto(msg.percept) if msg.HasField("percept") else None,
        cognition_stm=_cognition_stm(msg, stm),
        version=msg.version,
    )


def _cognition_stm(msg: pb.SessionState, stm: tuple[Event, ...]) -> tuple[Event, ...] | None:
    """The STM the last Observe predicted from: the basis's own events, or (none sent) `stm`."""
    if not msg.HasField("cognition_basis"):
        return None
    return events_from_proto(msg.cognition_basis.stm) if msg.cognition_basis.stm else stm


def serialize_state(msg: pb.SessionState) -> bytes:
    """The message's bytes, deterministic (map entries sorted): equal states, equal bytes."""
    return msg.SerializeToString(deterministic=True)
