"""Observations: validation, vector symbols and the event they become (SPEC.md §3, §10)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy

from kato_grpc.core.errors import FieldViolation, LimitExceeded, ValidationError
from kato_grpc.core.knowledge import KnowledgeView
from kato_grpc.core.model import Event, Limits, Observation, SessionState

__all__ = [
    "parse_observation",
    "validate_observation",
    "validate_state",
    "vector_name",
    "vector_symbols",
    "build_event",
]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_observation(raw: Mapping[str, Any], field_prefix: str = "") -> Observation:
    """Build an `Observation` from JSON-like input, checking every type (§10).

    Unknown keys are ignored. Raises `ValidationError` naming each bad field.
    """
    if not isinstance(raw, Mapping):
        raise ValidationError(FieldViolation(field_prefix.rstrip(".") or "observation", "must be an object"))
    bad: list[FieldViolation] = []

    def reject(name: str, why: str) -> None:
        bad.append(FieldViolation(field_prefix + name, why))

    strings = raw.get("strings") or []
    if not isinstance(strings, (list, tuple)):
        reject("strings", f"{_brief(strings)} must be a list of strings")
        strings = []
    for i, symbol in enumerate(strings):
        if not isinstance(symbol, str):
            reject(f"strings[{i}]", f"{_brief(symbol)} is not a string")

    vectors = raw.get("vectors") or []
    if not isinstance(vectors, (list, tuple)):
        reject("vectors", f"{_brief(vectors)} must be a list of number lists")
        vectors = []
    for i, vector in enumerate(vectors):
        if not isinstance(vector, (list, tuple)):
            reject(f"vectors[{i}]", f"{_brief(vector)} must be a list of numbers")
            continue
        for j, value in enumerate(vector):
            if not _is_number(value):
                reject(f"vectors[{i}][{j}]", f"{_brief(value)} is not a number")

    emotives = raw.get("emotives") or {}
    if not isinstance(emotives, Mapping):
        reject("emotives", f"{_brief(emotives)} must be a map of name to number")
        emotives = {}
    for key, value in emotives.items():
        if not _is_number(value):
            reject(f"emotives[{key!r}]", f"{_brief(value)} is not a number")

    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        reject("metadata", f"{_brief(metadata)} must be a map")
        metadata = {}

    unique_id = raw.get("unique_id") or ""
    if not isinstance(unique_id, str):
        reject("unique_id", f"{_brief(unique_id)} is not a string")
        unique_id = ""

    if bad:
        raise ValidationError(bad)
    return Observation(
        strings=tuple(strings),
        vectors=tuple(tuple(float(x) for x in vector) for vector in vectors),
        emotives=dict(emotives),
        metadata=dict(metadata),
        unique_id=unique_id,
    )


def validate_observation(
    observation: Observation, limits: Limits, expected_dim: int | None, field_prefix: str = ""
) -> int | None:
    """Check values and server limits (§10). Returns the vector dimension now fixed.

    `expected_dim` is the KB index's dimension, or while it is empty the dimension of the
    session's pending vectors. Raises `LimitExceeded` or `ValidationError`.
    """
    over: list[FieldViolation] = []
    bad: list[FieldViolation] = []
    p = field_prefix
    if len(observation.strings) > limits.max_symbols_per_event:
        over.append(
            FieldViolation(
                f"{p}strings",
                f"{len(observation.strings)} symbols exceed max_symbols_per_event={limits.max_symbols_per_event}",
            )
        )
    for i, symbol in enumerate(observation.strings):
        size = len(symbol.encode("utf-8", "surrogatepass"))
        if size > limits.max_symbol_bytes:
            over.append(
                FieldViolation(f"{p}strings[{i}]", f"{size} bytes exceed max_symbol_bytes={limits.max_symbol_bytes}")
            )
    if len(observation.vectors) > limits.max_vectors_per_observation:
        over.append(
            FieldViolation(
                f"{p}vectors",
                f"{len(observation.vectors)} vectors exceed "
                f"max_vectors_per_observation={limits.max_vectors_per_observation}",
            )
        )
    dim = expected_dim
    for i, vector in enumerate(observation.vectors):
        if not vector:
            bad.append(FieldViolation(f"{p}vectors[{i}]", "must not be empty"))
            continue
        if len(vector) > limits.max_vector_dim:
            over.append(
                FieldViolation(
                    f"{p}vectors[{i}]", f"dimension {len(vector)} exceeds max_vector_dim={limits.max_vector_dim}"
                )
            )
            continue
        if any(math.isnan(x) or math.isinf(x) for x in vector):
            bad.append(FieldViolation(f"{p}vectors[{i}]", "values must be finite numbers (no NaN or infinity)"))
        if dim is None:
            dim = len(vector)
        elif len(vector) != dim:
            bad.append(
                FieldViolation(f"{p}vectors[{i}]", f"dimension {len(vector)} differs from the expected dimension {dim}")
            )
    if dim is not None and len(observation.vectors) > 1 and not bad and not over:
        summed = summed_vector(observation.vectors)
        if not all(math.isfinite(x) for x in summed):
            bad.append(FieldViolation(f"{p}vectors", "the element-wise sum of the vectors overflows to infinity"))
    if len(observation.emotives) > limits.max_emotive_keys:
        over.append(
            FieldViolation(
                f"{p}emotives", f"{len(observation.emotives)} keys exceed max_emotive_keys={limits.max_emotive_keys}"
            )
        )
    for key, value in observation.emotives.items():
        if key == "":
            bad.append(FieldViolation(f"{p}emotives", "an emotive name must not be empty"))
        elif math.isnan(value) or math.isinf(value):
            bad.append(FieldViolation(f"{p}emotives[{key!r}]", f"{value!r} must be a finite number"))
    if len(observation.unique_id) > limits.max_unique_id_chars:
        bad.append(FieldViolation(f"{p}unique_id", f"must be at most {limits.max_unique_id_chars} characters"))
    bad.extend(metadata_violations(observation.metadata, f"{p}metadata"))
    if over:
        raise LimitExceeded(over + bad)
    if bad:
        raise ValidationError(bad)
    return dim


def metadata_violations(value: Any, field: str) -> list[FieldViolation]:
    """A violation for every number in metadata (nested maps and lists) that is NaN or
    infinite: JSON has no such numbers, and the learned pattern would keep them as text.

    >>> metadata_violations({"a": [1.0, float("nan")], "b": {"c": float("inf")}}, "metadata")[0].field
    'metadata.a[1]'
    """
    if isinstance(value, float) and not math.isfinite(value):
        return [FieldViolation(field, f"{value!r} is not a finite number (metadata numbers must be finite)")]
    if isinstance(value, Mapping):
        return [v for key in sorted(value) for v in metadata_violations(value[key], f"{field}.{key}")]
    if isinstance(value, (list, tuple)):
        return [v for i, item in enumerate(value) for v in metadata_violations(item, f"{field}[{i}]")]
    return []


_VECTOR_NAME = re.compile(r"VCTR\|[0-9a-f]{40}")


def _symbol_violations(symbols: Sequence[str], limits: Limits, field: str, vector_names: bool) -> list[FieldViolation]:
    """Symbols over max_symbol_bytes (vector names excepted when `vector_names`)."""
    # A str of n characters has at most 4n UTF-8 bytes: encode only the long ones.
    if not symbols or max(map(len, symbols)) * 4 <= limits.max_symbol_bytes:
        return []
    out = []
    for j, symbol in enumerate(symbols):
        size = len(symbol.encode("utf-8", "surrogatepass"))
        if size > limits.max_symbol_bytes and not (vector_names and _VECTOR_NAME.fullmatch(symbol)):
            out.append(
                FieldViolation(f"{field}[{j}]", f"{size} bytes exceed max_symbol_bytes={limits.max_symbol_bytes}")
            )
    return out


def _emotive_violations(emotives: Mapping[str, float], limits: Limits, field: str) -> list[FieldViolation]:
    out = []
    if len(emotives) > limits.max_emotive_keys:
        out.append(FieldViolation(field, f"{len(emotives)} keys exceed max_emotive_keys={limits.max_emotive_keys}"))
    for key, value in emotives.items():
        if key == "":
            out.append(FieldViolation(field, "an emotive name must not be empty"))
        elif not math.isfinite(value):
            out.append(FieldViolation(f"{field}[{key!r}]", f"{value!r} must be a finite number"))
    return out


def _vector_violations(values: Sequence[float], limits: Limits, field: str) -> list[FieldViolation]:
    if not values:
        return [FieldViolation(field, "must not be empty")]
    if len(values) > limits.max_vector_dim:
        return [FieldViolation(field, f"dimension {len(values)} exceeds max_vector_dim={limits.max_vector_dim}")]
    if not all(math.isfinite(x) for x in values):
        return [FieldViolation(field, "values must be finite numbers (no NaN or infinity)")]
    return []


def _check_events(
    events: tuple[Event, ...], limits: Limits, field: str, over: list[FieldViolation], bad: list[FieldViolation]
) -> None:
    """The rules of a short-term memory that came from outside: the engine's caps and shapes."""
    if len(events) > limits.max_stm_events:
        over.append(FieldViolation(field, f"{len(events)} events exceed max_stm_events={limits.max_stm_events}"))
    per_event = limits.max_symbols_per_event + limits.max_vectors_per_observation
    # One pass in C over the whole STM first; the per-event loop below names the culprit.
    longest = max(map(len, chain.from_iterable(events)), default=0)
    suspect = events and (not all(events) or max(map(len, events)) > per_event or longest * 4 > limits.max_symbol_bytes)
    for i, event in enumerate(events if suspect else ()):
        if not event:
            bad.append(FieldViolation(f"{field}[{i}]", "an event must hold at least one symbol"))
        elif len(event) > per_event:
            over.append(
                FieldViolation(
                    f"{field}[{i}].symbols",
                    f"{len(event)} symbols exceed max_symbols_per_event + max_vectors_per_observation={per_event}",
                )
            )
        else:
            over.extend(_symbol_violations(event, limits, f"{field}[{i}].symbols", vector_names=True))


def validate_state(state: SessionState, limits: Limits, kb_dim: int | None, prefix: str = "state") -> None:
    """Check a session state that came from outside with the rules of the observations that
    would have built it (§10): every rule `validate_observation` applies, the caps the
    engine keeps, and the shapes it writes (non-empty events and accumulator entries,
    pending vectors named by their own values, of one dimension, the index's).

    The signature already proves a state is the server's; this is defence in depth, for
    what would reach the shared knowledge base, and for the `cognition_stm` that
    GetCognitionData predicts from. The percept's emotive means are not checked: they
    are derived, and only go back to the same client.
    Raises `LimitExceeded` or `ValidationError`.
    """
    over: list[FieldViolation] = []
    bad: list[FieldViolation] = []
    p = prefix
    _check_events(state.stm, limits, f"{p}.stm", over, bad)
    if state.cognition_stm is not None and state.cognition_stm is not state.stm:
        _check_events(state.cognition_stm, limits, f"{p}.cognition_basis.stm", over, bad)
    for name in ("emotive_acc", "metadata_acc"):
        entries = getattr(state, name)
        if len(entries) > limits.max_accumulator_entries:
            over.append(
                FieldViolation(
                    f"{p}.{name}",
                    f"{len(entries)} entries exceed max_accumulator_entries={limits.max_accumulator_entries}",
                )
            )
        for i, entry in enumerate(entries):
            if not entry:
                bad.append(FieldViolation(f"{p}.{name}[{i}]", "an accumulator entry must not be empty"))
    for i, emotives in enumerate(state.emotive_acc):
        bad.extend(_emotive_violations(emotives, limits, f"{p}.emotive_acc[{i}]"))
    dim = kb_dim
    for i, (name, values) in enumerate(state.pending_vectors):
        field = f"{p}.pending_vectors[{i}]"
        problems = _vector_violations(values, limits, f"{field}.values")
        bad.extend(problems)
        if problems:
            continue
        if dim is None:
            dim = len(values)
        elif len(values) != dim:
            bad.append(
                FieldViolation(f"{field}.values", f"dimension {len(values)} differs from the expected dimension {dim}")
            )
        if name != vector_name(values):
            bad.append(
                FieldViolation(f"{field}.name", f"{name[:60]!r} is not the name of its values ({vector_name(values)})")
            )
    if state.time < 0:
        bad.append(FieldViolation(f"{p}.time", f"{state.time} must not be negative"))
    if state.percept is not None:
        percept = state.percept
        if len(percept.strings) > limits.max_symbols_per_event:
            over.append(
                FieldViolation(
                    f"{p}.percept.strings",
                    f"{len(percept.strings)} symbols exceed max_symbols_per_event={limits.max_symbols_per_event}",
                )
            )
        over.extend(_symbol_violations(percept.strings, limits, f"{p}.percept.strings", vector_names=False))
        if len(percept.vectors) > limits.max_vectors_per_observation:
            over.append(
                FieldViolation(
                    f"{p}.percept.vectors",
                    f"{len(percept.vectors)} vectors exceed "
                    f"max_vectors_per_observation={limits.max_vectors_per_observation}",
                )
            )
        for i, vector in enumerate(percept.vectors):
            bad.extend(_vector_violations(vector, limits, f"{p}.percept.vectors[{i}]"))
        # percept.emotives is a mean the server computed, and may overflow where its terms did not.
    if over:
        raise LimitExceeded(over + bad)
    if bad:
        raise ValidationError(bad)


def vector_name(vector: Sequence[float]) -> str:
    """``VCTR|`` + SHA-1 of numpy's default text of the vector (§3.2).

    >>> vector_name([1.5, 2.25])
    'VCTR|79cd73fb4f9ee7ee184cdbcc4663981575339a2d'
    """
    # Explicit arguments equal to numpy's defaults, so global print options cannot leak in.
    text = numpy.array2string(
        numpy.asarray(vector, dtype=numpy.float64),
        max_line_width=75,
        precision=8,
        suppress_small=False,
        separator=" ",
        threshold=1000,
        edgeitems=3,
        floatmode="maxprec",
        sign="-",
        legacy=False,
    )
    return "VCTR|" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def summed_vector(vectors: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Element-wise sum, in observation order."""
    total = [0.0] * len(vectors[0])
    for vector in vectors:
        for i, value in enumerate(vector):
            total[i] += value
    return tuple(total)


def vector_symbols(
    vectors: Sequence[Sequence[float]], kb: KnowledgeView, sort_symbols: bool
) -> tuple[list[str], tuple[str, tuple[float, ...]]]:
    """The vector symbols of one observation and its (own name, summed vector) (§3.2)."""
    summed = summed_vector(vectors)
    own = vector_name(summed)
    neighbours: list[str] = []
    for _, name in kb.nearest_vectors(summed, 3):
        if name not in neighbours:
            neighbours.append(name)
    if sort_symbols:
        symbols = sorted(set(neighbours) | {own})
    else:
        symbols = neighbours + ([own] if own not in neighbours else [])
    return symbols, (own, summed)


def build_event(vector_part: Sequence[str], strings: Sequence[str], sort_symbols: bool) -> Event:
    """Vector symbols first, then the strings (code-point sorted when asked) (§3.3)."""
    string_part = sorted(strings) if sort_symbols else list(strings)
    return tuple(vector_part) + tuple(string_part)
