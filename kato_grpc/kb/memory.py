"""`MemoryStore`: knowledge bases in process memory only (tests, fakes). Lost on exit."""

from __future__ import annotations

from kato_grpc.kb.indexed import IndexedStore

__all__ = ["MemoryStore"]


class MemoryStore(IndexedStore):
    """A dict of kb_id → MemoryKnowledgeBase; the index is the whole store.

    Writes are still all-or-none: `IndexedStore` computes every effect of a call before
    touching the index.
    """
