"""In-process session store: the embedded default (one server process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kato_grpc.sessions.base import SessionRecord, SessionStatus

__all__ = ["MemorySessionStore"]

# Expired sessions are remembered this long so SessionExists can say "expired".
TOMBSTONE_SECONDS = 86400.0


class MemorySessionStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._clock = clock
        # Guards the dict only for the instant of a read or a compare-and-set; never
        # held while the engine runs, so sessions do not wait for each other.
        self._guard = threading.Lock()

    def _live(self, session_id: str) -> SessionRecord | None:
        record = self._records.get(session_id)
        if record is None or record.expires_at <= self._clock():
            return None
        return record

    def create(self, record: SessionRecord) -> None:
        with self._guard:
            self._records[record.session_id] = record

    def get(self, session_id: str) -> SessionRecord | None:
        with self._guard:
            return self._live(session_id)

    def status(self, session_id: str) -> SessionStatus:
        with self._guard:
            record = self._records.get(session_id)
            if record is None:
                return SessionStatus(exists=False, expired=False)
            now = self._clock()
            if record.expires_at > now:
                return SessionStatus(exists=True, expired=False)
            if record.expires_at + TOMBSTONE_SECONDS < now:
                del self._records[session_id]
                return SessionStatus(exists=False, expired=False)
            return SessionStatus(exists=False, expired=True)

    def compare_and_set(self, record: SessionRecord, expected_version: int) -> bool:
        with self._guard:
            current = self._live(record.session_id)
            if current is None or current.version != expected_version:
                return False
            self._records[record.session_id] = record
            return True

    def touch(self, session_id: str, ttl_seconds: int, expires_at: float) -> bool:
        with self._guard:
            record = self._live(session_id)
            if record is None:
                return False
            self._records[session_id] = record.evolve(ttl_seconds=ttl_seconds, expires_at=expires_at)
            return True

    def delete(self, session_id: str) -> bool:
        with self._guard:
            live = self._live(session_id)
            self._records.pop(session_id, None)
            return live is not None

    def close(self) -> None:
        self._records.clear()
