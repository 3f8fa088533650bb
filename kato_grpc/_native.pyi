"""Type stubs of the compiled engine (native/src/lib.rs); tests/unit/test_native_stubs.py
checks them against the built module."""

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypedDict, final

__all__ = ["PatternIndex", "PredictOutcome"]

# The names below the two classes' are for type checking only (the module has just the classes).

Event = tuple[str, ...]

# A pattern record as it crosses the boundary, in the field order of
# kato_grpc.core.model.PatternRecord: name, events, frequency, emotive window, metadata,
# affinity contributions.
Record = tuple[
    str, Sequence[Sequence[str]], int, Sequence[Mapping[str, float]], dict[str, Sequence[str]], dict[str, float]
]
StoredRecord = tuple[str, tuple[Event, ...], int, tuple[dict[str, float], ...], dict[str, Event], dict[str, float]]
# A stored row (kato_grpc/kb/records.py): name, events (JSON), frequency, emotives, metadata, affinity (JSON).
JsonRow = tuple[str, str, int, str, str, str]

class SessionConfig(Protocol):
    """The attributes Predict reads (kato_grpc.core.config.SessionConfig has them)."""

    @property
    def recall_threshold(self) -> float: ...
    @property
    def max_predictions(self) -> int: ...
    @property
    def use_token_matching(self) -> bool: ...
    @property
    def fuzzy_token_threshold(self) -> float: ...
    @property
    def rank_sort_algo(self) -> str: ...
    @property
    def affinity_emotive(self) -> str | None: ...
    @property
    def filter_pipeline(self) -> Sequence[str]: ...
    @property
    def length_min_ratio(self) -> float: ...
    @property
    def length_max_ratio(self) -> float: ...
    @property
    def jaccard_threshold(self) -> float: ...
    @property
    def jaccard_min_overlap(self) -> int: ...
    @property
    def minhash_threshold(self) -> float: ...

class AnomalyFields(TypedDict):
    observed: str
    expected: str
    similarity: float

class PredictionFields(TypedDict):
    """Every field of kato_grpc.core.model.Prediction, by name."""

    type: str
    name: str
    frequency: int
    sequence: tuple[Event, ...]
    emotives: dict[str, float]
    metadata: dict[str, Event]
    matches: Event
    past: tuple[Event, ...]
    present: tuple[Event, ...]
    future: tuple[Event, ...]
    missing: tuple[Event, ...]
    extras: tuple[Event, ...]
    anomalies: tuple[AnomalyFields, ...]
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
    weighted_similarity: float | None
    weighted_evidence: float | None
    weighted_confidence: float | None
    weighted_snr: float | None

class FutureFields(TypedDict):
    """Every field of kato_grpc.core.model.FuturePotential, by name."""

    future: tuple[Event, ...]
    aggregate_potential: float
    supporting_patterns: int
    total_weighted_frequency: float

@final
class PredictOutcome:
    def prediction_count(self) -> int: ...
    def future_count(self) -> int: ...
    def search_stats(self) -> list[tuple[str, int]]: ...
    def predictions(self) -> list[PredictionFields]: ...
    def futures(self) -> list[FutureFields]: ...
    def encode_predictions(self, field: int) -> bytes: ...
    def encode_futures(self, field: int) -> bytes: ...

@final
class PatternIndex:
    # Its method `list` shadows the builtin inside the class: annotations say builtins.list.
    def __init__(self) -> None: ...
    def put(self, record: Record) -> None: ...
    def put_many(self, records: Iterable[Record]) -> None: ...
    def put_json_rows(self, rows: Iterable[JsonRow]) -> builtins.list[JsonRow]: ...
    def delete(self, name: str) -> bool: ...
    def clear(self) -> None: ...
    def get(self, name: str) -> StoredRecord | None: ...
    def list(self, after: str, limit: int | None = None) -> builtins.list[StoredRecord]: ...
    def candidates(self, symbols: builtins.list[str] | None = None) -> builtins.list[StoredRecord]: ...
    def pattern_count(self) -> int: ...
    def symbol_table_size(self) -> int: ...
    def total_symbols(self) -> int: ...
    def pmf(self, symbol: str) -> int: ...
    def freq(self, symbol: str) -> int: ...
    def symbol_stats(self) -> builtins.list[tuple[str, int, int]]: ...
    def affinity(self, symbol: str) -> builtins.list[tuple[str, float]]: ...
    def all_affinity(self) -> builtins.list[tuple[str, builtins.list[tuple[str, float]]]]: ...
    def predict(
        self, stm: Sequence[Sequence[str]], config: SessionConfig, pending: builtins.list[Record]
    ) -> PredictOutcome: ...
