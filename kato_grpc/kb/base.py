"""The `KnowledgeStore` protocol: where the knowledge bases live (SPEC.md §2.2, §9.3).

A store holds any number of knowledge bases, each named by a `kb_id`; they are
independent (no pattern, statistic or vector is shared). For each one the store keeps an
in-process index (`KnowledgeView`) that the pure core reads, and writes the core's
effects durably (or not, for the memory store) before the index shows them.

Pattern names are bare 40-hex SHA-1 names; a ``PTRN|`` prefix is tolerated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kato_grpc.core.knowledge import KnowledgeView
from kato_grpc.core.model import Effect, PatternRecord

__all__ = ["KnowledgeStore", "SymbolStats", "Affinity"]

Affinity = dict[str, float]


@dataclass(frozen=True)
class SymbolStats:
    """GetSymbolStats (SPEC.md §9.3): per-symbol statistics and the global counters."""

    symbols: list[tuple[str, int, int]]
    """(symbol, freq, pmf) for every symbol with pmf > 0, in code-point order."""
    total_unique_patterns: int
    """`U`, the number of stored patterns."""
    total_pattern_frequencies: int
    """`T`: equals `U` (SPEC.md §2.2, kept for KATO compatibility)."""
    total_symbols_in_patterns_frequencies: int
    """Σ over patterns of length × frequency."""


class KnowledgeStore(Protocol):
    """Knowledge bases by `kb_id`. Every write is atomic; a durable store commits it
    before returning, and only then does the in-process index show it."""

    def view(self, kb_id: str) -> KnowledgeView:
        """The index the pure core reads (empty for an unknown KB). Do not mutate it."""

    def apply(self, kb_id: str, effects: Sequence[Effect], origin: tuple[str, int] | None = None) -> None:
        """Apply one call's effects, in order, all or none (SPEC.md §5.2, §9.2).

        With an `origin` (key, version), effects of a version already applied under that
        key are skipped, and the version is recorded in the same atomic write as the
        effects: this is what makes a transition count once (sessions/runner.py, "Exactly
        once"). The key is a server-held session's id, or a client-held call's request key."""

    def get_pattern(self, kb_id: str, name: str) -> PatternRecord | None:
        """The stored pattern, or None."""

    def list_patterns(self, kb_id: str, after: str, limit: int) -> list[PatternRecord]:
        """At most `limit` patterns with name > `after` ("" = from the start), ascending."""

    def update_pattern(
        self,
        kb_id: str,
        name: str,
        *,
        frequency: int | None = None,
        emotives: Sequence[Mapping[str, float]] | None = None,
        metadata: Mapping[str, Sequence[str]] | None = None,
    ) -> PatternRecord:
        """Replace the given fields (None = keep); metadata is stored sorted and
        de-duplicated, emotives as given; statistics follow the new frequency, affinity
        is unchanged. Returns the new record. NotFoundError if absent."""

    def delete_pattern(self, kb_id: str, name: str) -> None:
        """Remove the pattern and its contribution to every statistic. NotFoundError if absent."""

    def symbol_stats(self, kb_id: str) -> SymbolStats:
        """GetSymbolStats."""

    def symbol_affinity(self, kb_id: str, symbol: str | None) -> Affinity | dict[str, Affinity]:
        """GetSymbolAffinity: `affinity(symbol)` ({} if unknown), or with None, symbol →
        affinity for every symbol that has any, both in code-point order."""

    def clear(self, kb_id: str) -> None:
        """Remove every pattern, statistic and vector of the KB."""

    def knowledge_bases(self, after: str, limit: int) -> list[tuple[str, int]]:
        """At most `limit` (kb_id, pattern count) of the KBs holding a pattern, with
        kb_id > `after`, ascending (ListKnowledgeBases)."""

    def close(self) -> None:
        """Release resources. The store is unusable afterwards."""
