"""Serialize engine effects for a session record's outbox (JSON, deterministic)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from kato_grpc.core.model import ClearKnowledgeBase, Effect, IndexVectors, LearnPattern

__all__ = ["encode_effects", "decode_effects"]


def _encode(effect: Effect) -> dict:
    if isinstance(effect, LearnPattern):
        return {
            "learn": {
                "name": effect.name,
                "events": [list(e) for e in effect.events],
                "emotives": [dict(m) for m in effect.emotives],
                "metadata": [dict(m) for m in effect.metadata],
                "persistence": effect.persistence,
            }
        }
    if isinstance(effect, IndexVectors):
        return {"vectors": [[name, list(v)] for name, v in effect.entries]}
    if isinstance(effect, ClearKnowledgeBase):
        return {"clear": True}
    raise TypeError(f"unknown effect {effect!r}")


def _decode(item: dict) -> Effect:
    if "learn" in item:
        d = item["learn"]
        return LearnPattern(
            name=d["name"],
            events=tuple(tuple(e) for e in d["events"]),
            emotives=tuple(d["emotives"]),
            metadata=tuple(d["metadata"]),
            persistence=d["persistence"],
        )
    if "vectors" in item:
        return IndexVectors(tuple((name, tuple(v)) for name, v in item["vectors"]))
    return ClearKnowledgeBase()


def encode_effects(effects: Sequence[Effect]) -> bytes:
    if not effects:
        return b""
    return json.dumps([_encode(e) for e in effects], ensure_ascii=False, sort_keys=True).encode("utf-8")


def decode_effects(data: bytes) -> tuple[Effect, ...]:
    if not data:
        return ()
    return tuple(_decode(item) for item in json.loads(data.decode("utf-8")))
