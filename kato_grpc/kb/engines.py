"""The two prediction engines and how a server picks one (`--engine`).

An engine is a pair: the in-process index a store keeps per knowledge base, and the
Predict that reads it. `python` is the reference of kato_grpc/core, readable and the
oracle of the tests; `native` (the default) is the compiled engine of kato_grpc/kb/native.py,
equal to it bit for bit and much faster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from kato_grpc.core.engine import Predictor
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.predict import predict_patterns

__all__ = ["ENGINES", "Engine", "engine_named"]

ENGINES = ("native", "python")


if TYPE_CHECKING:
    from kato_grpc.kb.native import NativeKnowledgeBase

Index = Union[MemoryKnowledgeBase, "NativeKnowledgeBase"]
"""A knowledge base's in-process index: the two classes share one API."""


@dataclass(frozen=True)
class Engine:
    name: str
    new_index: Callable[[], Index]
    predictor: Predictor


def engine_named(name: str) -> Engine:
    """The engine called `name`; a clear error if it is unknown or not built."""
    if name == "python":
        return Engine("python", MemoryKnowledgeBase, predict_patterns)
    if name == "native":
        from kato_grpc.kb.native import NativeKnowledgeBase, native_predict, require_native

        require_native()
        return Engine("native", NativeKnowledgeBase, native_predict)
    raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
