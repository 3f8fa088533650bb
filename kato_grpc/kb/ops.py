"""Pattern writes as operations: what a shared store appends instead of whole records.

A pattern's record is the fold of its operations in one total order (the store's write
order key). Appending an operation never overwrites another writer's, so concurrent
writes through different replicas all take effect; only their order has to be agreed,
and every reader folds in the same order.

    op            what it does to the record folded so far (None = no pattern)
    ``learn``     SPEC.md §5.2's learn: new pattern (frequency 1) or re-learn (+1, window,
                  metadata union, affinity sum); carries the learn's own E, M, persistence
    ``put``       replaces the whole record (imports, migrated rows)
    ``update``    UpdatePattern: replaces the given fields; nothing if the pattern is absent
    ``delete``    DeletePattern: the pattern is gone; a later learn creates it afresh

`fold` is pure and deterministic: the same operations in the same order give the same
record, bit for bit, on every replica.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from kato_grpc.core.errors import FieldViolation, ValidationError
from kato_grpc.core.learning import learned_record
from kato_grpc.core.model import Event, LearnPattern, PatternRecord
from kato_grpc.kb.records import dumps

__all__ = ["PatternOp", "fold", "fold_all", "updated_record", "check_frequency", "OP_KINDS"]

OP_KINDS = ("learn", "put", "update", "delete")

Metadata = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class PatternOp:
    """One write to one pattern. Fields a kind does not use stay None."""

    kind: str
    name: str
    events: tuple[Event, ...] | None = None  # learn, put
    frequency: int | None = None  # put; update (None = keep)
    emotives: tuple[Mapping[str, float], ...] | None = None  # learn: E; put: window; update: window or keep
    metadata: Metadata | None = None  # learn: accumulated M; put; update (None = keep)
    affinity_contrib: Mapping[str, float] | None = None  # put
    persistence: int = 0  # learn

    @classmethod
    def learn(cls, effect: LearnPattern, accumulated: Metadata) -> PatternOp:
        return cls(
            "learn", effect.name, effect.events, None, tuple(effect.emotives), accumulated, None, effect.persistence
        )

    @classmethod
    def put(cls, record: PatternRecord) -> PatternOp:
        return cls(
            "put",
            record.name,
            record.events,
            record.frequency,
            tuple(record.emotives),
            dict(record.metadata),
            dict(record.affinity_contrib),
        )

    # --- as stored: text columns (JSON keeps key order and writes floats bit-exact) --------
    def columns(self) -> dict[str, object]:
        """events, frequency (0 = none), emotives, metadata, affinity_contrib ("" = none), persistence."""
        return {
            "events": "" if self.events is None else dumps([list(e) for e in self.events]),
            "frequency": self.frequency or 0,
            "emotives": "" if self.emotives is None else dumps([dict(m) for m in self.emotives]),
            "metadata": "" if self.metadata is None else dumps({k: list(v) for k, v in self.metadata.items()}),
            "affinity_contrib": "" if self.affinity_contrib is None else dumps(dict(self.affinity_contrib)),
            "persistence": self.persistence,
        }

    @classmethod
    def from_columns(
        cls,
        kind: str,
        name: str,
        events: str,
        frequency: int,
        emotives: str,
        metadata: str,
        contrib: str,
        persistence: int,
    ) -> PatternOp:
        return cls(
            kind,
            name,
            tuple(tuple(e) for e in json.loads(events)) if events else None,
            frequency or None,
            tuple(json.loads(emotives)) if emotives else None,
            {k: tuple(v) for k, v in json.loads(metadata).items()} if metadata else None,
            json.loads(contrib) if contrib else None,
            persistence,
        )


def check_frequency(frequency: int | None) -> None:
    """UpdatePattern's one rule on its input: a frequency, if given, is at least 1."""
    if frequency is not None and frequency < 1:
        raise ValidationError(FieldViolation("frequency", f"must be >= 1, got {frequency}"))


def updated_record(
    record: PatternRecord,
    frequency: int | None = None,
    emotives: Sequence[Mapping[str, float]] | None = None,
    metadata: Mapping[str, Sequence[str]] | None = None,
) -> PatternRecord:
    """UpdatePattern (SPEC.md §9.3): the given fields replaced, metadata sorted and
    de-duplicated, emotives as given; affinity unchanged."""
    if frequency is not None:
        record = replace(record, frequency=frequency)
    if emotives is not None:
        record = replace(record, emotives=tuple(dict(m) for m in emotives))
    if metadata is not None:
        record = replace(record, metadata={key: tuple(sorted(set(metadata[key]))) for key in sorted(metadata)})
    return record


def fold(record: PatternRecord | None, op: PatternOp) -> PatternRecord | None:
    """The record after `op`."""
    if op.kind == "learn":
        # learned_record accumulates raw metadata maps; one single-valued map per stored
        # text gives back exactly the accumulated M (metadata_text of a str is itself).
        maps = tuple({key: value} for key, values in (op.metadata or {}).items() for value in values)
        effect = LearnPattern(op.name, op.events or (), op.emotives or (), maps, op.persistence)
        return learned_record(record, effect)
    if op.kind == "put":
        return PatternRecord(
            op.name,
            op.events or (),
            op.frequency or 1,
            op.emotives or (),
            dict(op.metadata or {}),
            dict(op.affinity_contrib or {}),
        )
    if op.kind == "update":
        return None if record is None else updated_record(record, op.frequency, op.emotives, op.metadata)
    if op.kind == "delete":
        return None
    raise ValueError(f"unknown pattern operation {op.kind!r}")


def fold_all(ops: Iterable[PatternOp], record: PatternRecord | None = None) -> PatternRecord | None:
    for op in ops:
        record = fold(record, op)
    return record
