"""Learning: pattern names, emotive averages, metadata accumulation (SPEC.md §5)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kato_grpc.core.model import Event, LearnPattern, PatternRecord

__all__ = [
    "pattern_name",
    "strip_prefix",
    "average_emotives",
    "metadata_text",
    "accumulate_metadata",
    "merge_metadata",
    "learned_record",
    "PATTERN_PREFIX",
]

PATTERN_PREFIX = "PTRN|"


def pattern_name(events: Sequence[Event]) -> str:
    """SHA-1 of the pattern's canonical text: Python's ``str`` of a list of lists (§5.1).

    >>> pattern_name([("a", "b"), ("c",)])
    'e9e43f2309079f2843665ab773996d99489306d6'
    """
    canonical = str([list(event) for event in events])
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


def strip_prefix(name: str) -> str:
    """Accept a pattern name with or without its ``PTRN|`` prefix."""
    return name[len(PATTERN_PREFIX) :] if name.startswith(PATTERN_PREFIX) else name


def average_emotives(maps: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per-key mean over the maps having the key; keys in first-appearance order (§5.4).

    Sums run in list order. ``{}`` for an empty list.

    >>> average_emotives([{"joy": 1.0}, {"joy": 3.0, "fear": 1.0}])
    {'joy': 2.0, 'fear': 1.0}
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for emotives in maps:
        for key, value in emotives.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sums}


def _quote(text: str) -> str:
    return repr(text)


def metadata_text(value: Any) -> str:
    """The text a metadata value is stored as (§5.3): Python's ``str``, with integral numbers
    written without ``.0`` so a double-typed transport gives the same text.

    >>> [metadata_text(v) for v in (True, None, 7.0, 2.5, ["x", 1])]
    ['True', 'None', '7', '2.5', "['x', 1]"]
    """
    if isinstance(value, str):
        return value
    return _item_text(value)


def _item_text(value: Any) -> str:
    if isinstance(value, str):
        return _quote(value)
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, Mapping):
        items = (f"{_quote(key)}: {_item_text(value[key])}" for key in sorted(value))
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_item_text(item) for item in value) + "]"
    return str(value)


def accumulate_metadata(maps: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Per key (code-point order), the sorted distinct texts of its values (§5.3)."""
    values: dict[str, set[str]] = {}
    for metadata in maps:
        for key, value in metadata.items():
            values.setdefault(key, set()).add(metadata_text(value))
    return {key: tuple(sorted(values[key])) for key in sorted(values)}


def merge_metadata(
    stored: Mapping[str, Sequence[str]], added: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, ...]]:
    """Per key, the sorted union of two accumulated metadata maps."""
    keys = sorted(set(stored) | set(added))
    return {key: tuple(sorted(set(stored.get(key, ())) | set(added.get(key, ())))) for key in keys}


def learned_record(existing: PatternRecord | None, effect: LearnPattern) -> PatternRecord:
    """The pattern record after applying a learn effect: new or re-learned (§5.2 table)."""
    average = average_emotives(effect.emotives)
    window = effect.persistence
    if existing is None:
        return PatternRecord(
            name=effect.name,
            events=effect.events,
            frequency=1,
            emotives=tuple(effect.emotives[-window:]),
            metadata=accumulate_metadata(effect.metadata),
            affinity_contrib=average,
        )
    emotives = existing.emotives
    contrib = dict(existing.affinity_contrib)
    if effect.emotives:
        emotives = tuple((tuple(existing.emotives) + tuple(effect.emotives))[-window:])
        for key, value in average.items():
            contrib[key] = contrib.get(key, 0.0) + value
    metadata = existing.metadata
    if effect.metadata:
        metadata = merge_metadata(existing.metadata, accumulate_metadata(effect.metadata))
    return PatternRecord(
        name=existing.name,
        events=existing.events,
        frequency=existing.frequency + 1,
        emotives=emotives,
        metadata=metadata,
        affinity_contrib=contrib,
    )
