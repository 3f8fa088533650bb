"""The engine's data: observations, session state, patterns, predictions, effects.

Everything here is an immutable value. The engine never mutates its inputs; every
operation returns a new `SessionState` plus the effects it wants applied to the
knowledge base (SPEC.md §2). JSON-like values (metadata) are plain Python
``None | bool | int | float | str | list | dict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from kato_grpc.core.config import SessionConfig

__all__ = [
    "Event",
    "Observation",
    "Percept",
    "SessionState",
    "PatternRecord",
    "Anomaly",
    "Prediction",
    "FuturePotential",
    "PredictResult",
    "ObserveResult",
    "SequenceItemResult",
    "SequenceResult",
    "LearnPattern",
    "IndexVectors",
    "ClearKnowledgeBase",
    "Effect",
    "Outcome",
    "Limits",
]

Event = tuple[str, ...]
"""One event: the symbols observed together, in their stored order."""

EmotiveMap = Mapping[str, float]
JsonValue = Any


@dataclass(frozen=True)
class Limits:
    """Server limits of SPEC.md §7 (flags, not session config)."""

    max_stm_events: int = 1000
    max_accumulator_entries: int = 1000
    max_symbols_per_event: int = 10000
    max_symbol_bytes: int = 4096
    max_vector_dim: int = 65536
    max_vectors_per_observation: int = 1000
    max_emotive_keys: int = 1000
    max_observations_per_sequence: int = 10000
    max_unique_id_chars: int = 256


@dataclass(frozen=True)
class Observation:
    """One observation (SPEC.md §3.1). Omitted parts are empty."""

    strings: tuple[str, ...] = ()
    vectors: tuple[tuple[float, ...], ...] = ()
    emotives: Mapping[str, float] = field(default_factory=dict)
    metadata: Mapping[str, JsonValue] = field(default_factory=dict)
    unique_id: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.strings and not self.vectors


@dataclass(frozen=True)
class Percept:
    """The last accepted observation as the session saw it (SPEC.md §3.6)."""

    strings: tuple[str, ...] = ()
    vectors: tuple[tuple[float, ...], ...] = ()
    emotives: Mapping[str, float] = field(default_factory=dict)
    metadata: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Anomaly:
    """A fuzzy token match: `observed` was taken for the pattern's `expected`."""

    observed: str
    expected: str
    similarity: float


@dataclass(frozen=True)
class Prediction:
    """One learned pattern unfolding in the current STM (SPEC.md §6.12)."""

    name: str
    frequency: int
    sequence: tuple[Event, ...]
    emotives: Mapping[str, float]
    metadata: Mapping[str, tuple[str, ...]]
    matches: tuple[str, ...]
    past: tuple[Event, ...]
    present: tuple[Event, ...]
    future: tuple[Event, ...]
    missing: tuple[Event, ...]
    extras: tuple[Event, ...]
    anomalies: tuple[Anomaly, ...]
    similarity: float
    evidence: float
    confidence: float
    snr: float
    fragmentation: float
    entropy: float
    normalized_entropy: float
    global_normalized_entropy: float
    itfdf_similarity: float
    confluence: float
    tfidf_score: float
    pattern_probability: float
    weighted_strength: float
    predictive_information: float
    bayesian_prior: float
    bayesian_likelihood: float
    bayesian_posterior: float
    potential: float
    weighted_similarity: float | None = None
    weighted_evidence: float | None = None
    weighted_confidence: float | None = None
    weighted_snr: float | None = None
    type: str = "prototypical"


@dataclass(frozen=True)
class FuturePotential:
    """One group of ensemble members sharing a future (SPEC.md §6.11)."""

    future: tuple[Event, ...]
    aggregate_potential: float
    supporting_patterns: int
    total_weighted_frequency: float


@dataclass(frozen=True)
class PredictResult:
    predictions: Sequence[Prediction] = ()
    future_potentials: Sequence[FuturePotential] = ()


@dataclass(frozen=True)
class SessionState:
    """Everything one session owns (SPEC.md §2.1). Travels with every call."""

    kb_id: str
    config: SessionConfig = field(default_factory=SessionConfig)
    stm: tuple[Event, ...] = ()
    emotive_acc: tuple[Mapping[str, float], ...] = ()
    metadata_acc: tuple[Mapping[str, JsonValue], ...] = ()
    pending_vectors: tuple[tuple[str, tuple[float, ...]], ...] = ()
    time: int = 0
    percept: Percept | None = None
    # What the last Observe predicted from (§3.5), or None when its predictions are [].
    # The predictions themselves are not kept: `engine.cognition_data` computes them
    # again from this STM, so a state stays the size of its session.
    cognition_stm: tuple[Event, ...] | None = None
    version: int = 0


@dataclass(frozen=True)
class PatternRecord:
    """A stored pattern as the engine reads it from a knowledge base (SPEC.md §2.2)."""

    name: str
    events: tuple[Event, ...]
    frequency: int = 1
    emotives: tuple[Mapping[str, float], ...] = ()
    metadata: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    affinity_contrib: Mapping[str, float] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.flat)

    @cached_property
    def flat(self) -> tuple[str, ...]:
        """All symbols in order; computed once per record (records are immutable)."""
        return tuple(symbol for event in self.events for symbol in event)

    @cached_property
    def symbol_counts(self) -> dict[str, int]:
        """How often each symbol occurs in the pattern; computed once per record."""
        counts: dict[str, int] = {}
        for symbol in self.flat:
            counts[symbol] = counts.get(symbol, 0) + 1
        return counts


@dataclass(frozen=True)
class ObserveResult:
    """What Observe reports (SPEC.md §3.4)."""

    stm_length: int
    time: int
    unique_id: str
    auto_learned_pattern: str = ""
    predictions: Sequence[Prediction] = ()
    future_potentials: Sequence[FuturePotential] = ()


@dataclass(frozen=True)
class SequenceItemResult:
    sequence_position: int
    stm_length: int
    time: int
    unique_id: str
    auto_learned_pattern: str = ""


@dataclass(frozen=True)
class SequenceResult:
    """What ObserveSequence reports (SPEC.md §9.1)."""

    observations_processed: int
    initial_stm_length: int
    final_stm_length: int
    results: tuple[SequenceItemResult, ...]
    auto_learned_patterns: tuple[str, ...]
    final_learned_pattern: str = ""


# Effects: what the engine asks the knowledge base to do. Applied once by the shell.


@dataclass(frozen=True)
class LearnPattern:
    """Store `events` as a new pattern or re-learn it (SPEC.md §5.2 table)."""

    name: str
    events: tuple[Event, ...]
    emotives: tuple[Mapping[str, float], ...]
    metadata: tuple[Mapping[str, JsonValue], ...]
    persistence: int


@dataclass(frozen=True)
class IndexVectors:
    """Add these (name, vector) entries to the KB's vector index (SPEC.md §5.2 step 3)."""

    entries: tuple[tuple[str, tuple[float, ...]], ...]


@dataclass(frozen=True)
class ClearKnowledgeBase:
    """Remove every pattern, statistic and vector of the KB (SPEC.md §9.3)."""


Effect = LearnPattern | IndexVectors | ClearKnowledgeBase


@dataclass(frozen=True)
class Outcome:
    """The result of a state-changing engine call: new state, effects, result."""

    state: SessionState
    effects: tuple[Effect, ...] = ()
    result: Any = None
