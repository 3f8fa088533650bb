"""The native engine: a knowledge base held by the compiled index, and its Predict.

`NativeKnowledgeBase` has the API of `MemoryKnowledgeBase` (the stores use either),
but keeps patterns and statistics in `kato_grpc._native.PatternIndex` (Rust): interned
symbol ids in flat arrays instead of Python objects per pattern, and Predict (SPEC.md
§6) run there without the GIL. `kato_grpc/core/predict.py` stays the reference: the
property tests compare the two engines' results with ``==``. See
docs/architecture-decisions/ADR-003-native-engine.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, overload

from kato_grpc.core.config import SessionConfig
from kato_grpc.core.knowledge import KnowledgeView, PendingView, VectorIndex, apply_effect
from kato_grpc.core.model import (
    Anomaly,
    Effect,
    Event,
    FuturePotential,
    PatternRecord,
    Prediction,
    PredictResult,
)

if TYPE_CHECKING:
    from kato_grpc._native import PatternIndex, PredictionFields, PredictOutcome, Record, StoredRecord

_native: ModuleType | None
try:
    from kato_grpc import _native
except ImportError as exc:  # pragma: no cover - depends on the build
    _native = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

__all__ = [
    "NativeFuturePotentials",
    "NativeKnowledgeBase",
    "NativePredictions",
    "native_available",
    "native_predict",
    "require_native",
]


def native_available() -> bool:
    return _native is not None


def require_native() -> None:
    """Raise a clear error when the compiled extension is missing."""
    if _native is None:
        raise RuntimeError(
            "the native engine (kato_grpc._native) is not built: install a Rust toolchain "
            "(https://rustup.rs, or Debian's `cargo`) and reinstall the package with "
            "`pip install -e .` (or `make setup`), or serve with `--engine python`"
            f" ({_IMPORT_ERROR})"
        )


def _record_tuple(record: PatternRecord) -> Record:
    return (
        record.name,
        record.events,
        record.frequency,
        record.emotives,
        dict(record.metadata),
        dict(record.affinity_contrib),
    )


def _record(fields: StoredRecord) -> PatternRecord:
    return PatternRecord(*fields)


def _prediction(fields: PredictionFields) -> Prediction:
    """A `Prediction` from the native dict of its fields (every field, by name)."""
    values: dict[str, object] = dict(fields)
    if fields["anomalies"]:
        values["anomalies"] = tuple(Anomaly(**a) for a in fields["anomalies"])
    # The frozen dataclass's __init__ sets 36 fields one setattr at a time; filling the
    # instance dict directly is ~5x faster and gives an equal object.
    prediction = object.__new__(Prediction)
    prediction.__dict__.update(values)
    return prediction


class _NativeSequence(Sequence):
    """A read-only sequence held by a native `PredictOutcome`: Python objects are built
    on first read; `wire` gives the protobuf encoding without building them (the
    server's path: kato_grpc/server/convert.py)."""

    __slots__ = ("_items", "_outcome")

    def __init__(self, outcome: PredictOutcome) -> None:
        self._outcome = outcome
        self._items: tuple | None = None

    def _build(self) -> tuple:
        raise NotImplementedError

    def _all(self) -> tuple:
        if self._items is None:
            self._items = self._build()
        return self._items

    def __len__(self) -> int:
        return self._count()

    def _count(self) -> int:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int): ...
    @overload
    def __getitem__(self, index: slice) -> tuple: ...
    def __getitem__(self, index):
        return self._all()[index]

    def __iter__(self) -> Iterator:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, _NativeSequence)):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


class NativePredictions(_NativeSequence):
    """The predictions of one native Predict (a sequence of `Prediction`)."""

    __slots__ = ()

    def _count(self) -> int:
        return self._outcome.prediction_count()

    def _build(self) -> tuple:
        return tuple(_prediction(p) for p in self._outcome.predictions())

    def wire(self, field_number: int) -> bytes:
        """Wire bytes of a `repeated kato.v1.Prediction` field with this number."""
        return self._outcome.encode_predictions(field_number)


class NativeFuturePotentials(_NativeSequence):
    """The future potentials of one native Predict (a sequence of `FuturePotential`)."""

    __slots__ = ()

    def _count(self) -> int:
        return self._outcome.future_count()

    def _build(self) -> tuple:
        return tuple(FuturePotential(**f) for f in self._outcome.futures())

    def wire(self, field_number: int) -> bytes:
        """Wire bytes of a `repeated kato.v1.FuturePotential` field with this number."""
        return self._outcome.encode_futures(field_number)


class NativeKnowledgeBase:
    """A knowledge base whose patterns and statistics live in the compiled index."""

    def __init__(self) -> None:
        require_native()
        assert _native is not None
        self._patterns: PatternIndex = _native.PatternIndex()
        self._vectors = VectorIndex()

    # --- effects -----------------------------------------------------------------
    def clear(self) -> None:
        self._patterns.clear()
        self._vectors = VectorIndex()

    def apply(self, effect: Effect) -> None:
        """Apply one engine effect."""
        apply_effect(self, effect)

    def index_vectors(self, entries: Iterable[tuple[str, Sequence[float]]]) -> None:
        self._vectors.add(entries)

    def put_pattern(self, record: PatternRecord) -> None:
        """Store `record`, replacing any pattern of that name; statistics follow."""
        self._patterns.put(_record_tuple(record))

    def put_patterns(self, records: Iterable[PatternRecord]) -> None:
        """Store many records (a load), then release the spare capacity."""
        self._patterns.put_many(_record_tuple(r) for r in records)

    def put_json_rows(self, rows: Iterable[tuple]) -> list[tuple]:
        """Store rows with JSON columns (kato_grpc/kb/records.py) parsed natively;
        returns the rows the native parser could not read."""
        return self._patterns.put_json_rows(rows)

    def delete_pattern(self, name: str) -> bool:
        return self._patterns.delete(name)

    # --- reads ---------------------------------------------------------------------
    def candidates(self, symbols: Iterable[str] | None) -> list[PatternRecord]:
        wanted = None if symbols is None else list(dict.fromkeys(symbols))
        return [_record(fields) for fields in self._patterns.candidates(wanted)]

    def get_pattern(self, name: str) -> PatternRecord | None:
        fields = self._patterns.get(name)
        return None if fields is None else _record(fields)

    def list_patterns(self, after: str = "", limit: int | None = None) -> list[PatternRecord]:
        """Patterns with name > `after`, ascending, at most `limit`."""
        return [_record(fields) for fields in self._patterns.list(after, limit)]

    def pattern_count(self) -> int:
        return self._patterns.pattern_count()

    def symbol_table_size(self) -> int:
        return self._patterns.symbol_table_size()

    def pmf(self, symbol: str) -> int:
        return self._patterns.pmf(symbol)

    def freq(self, symbol: str) -> int:
        return self._patterns.freq(symbol)

    def symbol_affinity(self, symbol: str) -> dict[str, float]:
        return dict(self._patterns.affinity(symbol))

    def all_affinity(self) -> dict[str, dict[str, float]]:
        """Symbol → affinity for every symbol that has any, in code-point order."""
        return {symbol: dict(sums) for symbol, sums in self._patterns.all_affinity()}

    def symbol_stats(self) -> list[tuple[str, int, int]]:
        return self._patterns.symbol_stats()

    def total_symbols_in_patterns(self) -> int:
        return self._patterns.total_symbols()

    def nearest_vectors(self, vector: Sequence[float], k: int) -> list[tuple[float, str]]:
        return self._vectors.nearest(vector, k)

    def vector_dimension(self) -> int | None:
        return self._vectors.dimension

    def vectors(self) -> dict[str, tuple[float, ...]]:
        return self._vectors.copy()

    # --- the engine ------------------------------------------------------------------
    def predict(
        self, stm: Sequence[Event], config: SessionConfig, pending: Sequence[PatternRecord] = ()
    ) -> PredictResult:
        """Predict (§6) on this KB with `pending` (this call's own learns) laid over it."""
        outcome = self._patterns.predict(stm, config, [_record_tuple(r) for r in pending])
        if not outcome.prediction_count() and not outcome.future_count():
            return PredictResult()
        return PredictResult(NativePredictions(outcome), NativeFuturePotentials(outcome))

    def search_stats(self, stm: Sequence[Event], config: SessionConfig) -> dict[str, int]:
        """How many candidates each stage of a Predict's search discards (benchmarks)."""
        return dict(self._patterns.predict(stm, config, []).search_stats())


def native_predict(stm: Sequence[Event], config: SessionConfig, kb: KnowledgeView) -> PredictResult:
    """The native engine as a `predictor` for `kato_grpc.core.engine` (same contract as
    `predict_patterns`): `kb` is a `NativeKnowledgeBase`, or a `PendingView` over one."""
    pending: Sequence[PatternRecord] = ()
    if isinstance(kb, PendingView):
        pending = kb.pending_records()
        kb = kb.base
    if not isinstance(kb, NativeKnowledgeBase):
        raise TypeError(f"the native engine reads a NativeKnowledgeBase, not {type(kb).__name__}")
    return kb.predict(stm, config, pending)
