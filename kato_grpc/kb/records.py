"""How a pattern record is stored as text columns (JSON), shared by the durable stores.

JSON keeps key order (emotive maps) and writes floats so they read back bit-exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kato_grpc.core.model import PatternRecord

__all__ = ["dumps", "load_rows", "record_columns", "record_from_columns"]


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def record_columns(r: PatternRecord) -> dict[str, Any]:
    """The stored columns of a record, except its name: events, frequency, emotives,
    metadata, affinity_contrib (in that order)."""
    return {
        "events": dumps([list(event) for event in r.events]),
        "frequency": r.frequency,
        "emotives": dumps([dict(m) for m in r.emotives]),
        "metadata": dumps({key: list(values) for key, values in r.metadata.items()}),
        "affinity_contrib": dumps(dict(r.affinity_contrib)),
    }


def record_from_columns(
    name: str, events: str, frequency: int, emotives: str, metadata: str, contrib: str
) -> PatternRecord:
    return PatternRecord(
        name=name,
        events=tuple(tuple(event) for event in json.loads(events)),
        frequency=frequency,
        emotives=tuple(json.loads(emotives)),
        metadata={key: tuple(values) for key, values in json.loads(metadata).items()},
        affinity_contrib=json.loads(contrib),
    )


def load_rows(index: Any, rows: Iterable[tuple]) -> None:
    """Fill `index` with stored rows (name, then the columns above, in order).

    The native index parses the JSON itself, without the GIL (seconds for a 1M-pattern
    KB instead of minutes); it hands back any row it cannot read, which is read here."""
    put_json_rows = getattr(index, "put_json_rows", None)
    if put_json_rows is None:
        index.put_patterns(record_from_columns(*row) for row in rows)
    else:
        index.put_patterns(record_from_columns(*row) for row in put_json_rows(rows))
