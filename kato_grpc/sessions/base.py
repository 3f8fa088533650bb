"""The session-store protocol. A store keeps serialized session records with a TTL.

A record's `version` is the compare-and-set token: a write succeeds only if the stored
version still equals the one the writer read. No store takes a lock per session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

__all__ = ["SessionRecord", "SessionStore", "SessionStatus", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """The back end cannot be reached. Maps to UNAVAILABLE; nothing was written."""


@dataclass(frozen=True)
class SessionRecord:
    """One server-held session as stored.

    `state` is the deterministic serialization of `kato.v1.SessionState`. `outbox` holds
    the serialized effects of the last committed transition until the knowledge base has
    them (exactly-once: see runner.py). `replies` maps the newest client request ids to
    when they were applied and the serialized response they got (packed by
    request_ids.py), so a retried request is answered, not re-applied.
    `owner` names the API key that created the session (server/auth.py); like `kb_id`
    and `metadata` it is written at creation and never changes.
    """

    session_id: str
    kb_id: str
    state: bytes
    version: int
    ttl_seconds: int
    expires_at: float
    created_at: float
    metadata: bytes = b""
    outbox: bytes = b""
    owner: str = ""  # name of the API key that created the session ("" with auth off); set once
    replies: Mapping[str, bytes] = field(default_factory=dict)

    def evolve(self, **changes) -> SessionRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class SessionStatus:
    exists: bool
    expired: bool


class SessionStore(Protocol):
    def create(self, record: SessionRecord) -> None:
        """Store a new record (its id is fresh)."""

    def get(self, session_id: str) -> SessionRecord | None:
        """The live record, or None if unknown, deleted or expired. Does not extend the TTL."""

    def status(self, session_id: str) -> SessionStatus:
        """Whether the session exists or has expired. Never extends the TTL."""

    def compare_and_set(self, record: SessionRecord, expected_version: int) -> bool:
        """Write `record` iff the stored version equals `expected_version` and it is live."""

    def touch(self, session_id: str, ttl_seconds: int, expires_at: float) -> bool:
        """Set a live session's TTL and expiry without changing its version."""

    def delete(self, session_id: str) -> bool:
        """Remove the session; False if it was not there."""

    def close(self) -> None:
        """Release connections."""
