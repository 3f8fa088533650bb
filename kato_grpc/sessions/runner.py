"""Server-held sessions: load, run the pure core, compare-and-set, apply effects once.

Every method is a coroutine: the store and the effects are reached asynchronously (the
server runs a blocking store on a thread pool: server/execution.py), and `step` is
awaited, so the engine can run off the event loop.

Exactly once, across two stores
-------------------------------
A transition changes two stores that share no transaction: the session store (the
state) and the knowledge store (the patterns its effects learn or clear). It still
counts every transition exactly once, in four steps:

1. **Commit the state with its effects.** `transact` runs the step on the loaded state
   and writes the new state, version + 1, in one compare-and-set on the old version.
   The same write puts the step's effects in the record's `outbox`, and the call's
   reply under its `request_id` (request_ids.py). On a conflict nothing was written and
   the step is re-run on the fresh state: the core is pure, so a re-run is safe.
2. **Apply the effects under an origin.** Only then are the effects sent to the
   knowledge store as `apply(kb_id, effects, origin=(session_id, version))`. The store
   writes them together with the highest version it applied for that session, and
   skips an origin at or below it (the `origin` argument of `KnowledgeStore.apply`).
3. **Repair on the next load.** If the process dies between 1 and 2, the outbox is
   still in the record. `load`, which every call on the session goes through, applies
   it again under the same origin: applied if it was lost, skipped if it was not. The
   outbox is replaced by the next transition's, never needs deleting.
4. **Answer a retry from the record.** A retried call with the same `request_id` finds
   its reply (the record's recent replies, or the ledger beside the store) and gets it
   back without running the step again.

A client-held call has no session record: the servicer gives its effects the origin
("request:" + a digest of method, request id and state, 1), so a retried call with a
`request_id` is applied once and answered by re-running the pure step. Without a
`request_id`, a retried client-held call is applied again: the client chose not to
name it.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kato_grpc.core.errors import NotFoundError
from kato_grpc.core.model import Outcome, SessionState
from kato_grpc.sessions.base import SessionRecord, SessionStatus
from kato_grpc.sessions.effects_codec import decode_effects, encode_effects
from kato_grpc.sessions.request_ids import (
    DEFAULT_WINDOW_SECONDS,
    RECENT_REPLIES,
    MemoryLedger,
    RequestLedger,
    recall,
    remember,
)

__all__ = ["SessionRunner", "ConflictExhausted", "SessionNotFound"]


class SessionNotFound(NotFoundError):
    """Unknown, deleted or expired; the message and `metadata["expired"]` say which."""

    reason = "SESSION_NOT_FOUND"

    def __init__(self, session_id: str, expired: bool, why: str = "") -> None:
        why = why or ("has expired" if expired else "does not exist or was deleted")
        super().__init__(f"session {session_id!r} {why}")
        self.metadata = {"sessionId": session_id, "expired": "true" if expired else "false"}


class ConflictExhausted(Exception):
    """Every compare-and-set attempt lost to a concurrent writer. Maps to ABORTED."""


@dataclass(frozen=True)
class Codec:
    """How session state crosses the store boundary (protobuf bytes in production)."""

    encode: Callable[[SessionState], bytes]
    decode: Callable[[bytes], SessionState]


def conflict_backoff(first: float = 0.0005, ceiling: float = 0.05, multiplier: float = 2.0) -> Iterator[float]:
    """Pauses between compare-and-set attempts that lost to another writer.

    Exponential with full jitter, the shape of google.api_core's retry: writers that
    collided spread out instead of colliding again in lockstep, and a session changed by
    many callers at once costs a few short waits instead of 64 attempts back to back.
    The jitter moves only when an attempt is made, never what it computes."""
    delay = first
    while True:
        yield random.uniform(0.0, delay)
        delay = min(delay * multiplier, ceiling)


class SessionRunner:
    def __init__(
        self,
        store: Any,  # a SessionStore whose methods are coroutines (server/execution.py adapts one)
        apply_effects: Callable[[str, tuple, tuple[str, int]], Awaitable[None]],
        codec: Codec,
        *,
        default_ttl: int = 3600,
        auto_extend: bool = True,
        max_attempts: int = 64,
        clock: Callable[[], float] = time.time,
        owner_of_call: Callable[[], str] = lambda: "",
        request_ids: RequestLedger | None = None,
        request_window_seconds: float = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        self._store = store
        self._apply_effects = apply_effects
        self._codec = codec
        self.default_ttl = default_ttl
        self._auto_extend = auto_extend
        self._max_attempts = max_attempts
        self._clock = clock
        self._owner_of_call = owner_of_call  # the API key name a new session belongs to (server/auth.py)
        self.conflicts = 0  # CAS conflicts seen (for metrics)
        self._request_ids = request_ids if request_ids is not None else MemoryLedger(clock)
        self._request_window = request_window_seconds

    # --- lifecycle ---------------------------------------------------------------------
    async def create(self, state: SessionState, ttl_seconds: int, metadata: bytes) -> SessionRecord:
        now = self._clock()
        record = SessionRecord(
            session_id=secrets.token_hex(16),
            kb_id=state.kb_id,
            state=self._codec.encode(state),
            version=0,
            ttl_seconds=ttl_seconds,
            expires_at=now + ttl_seconds,
            created_at=now,
            metadata=metadata,
            owner=self._owner_of_call(),
        )
        await self._store.create(record)
        return record

    async def load(self, session_id: str) -> SessionRecord:
        """The live record, with any unapplied outbox repaired first. Does not extend."""
        record = await self._store.get(session_id)
        if record is None:
            raise SessionNotFound(session_id, (await self._store.status(session_id)).expired)
        if record.outbox:
            await self._apply_effects(record.kb_id, decode_effects(record.outbox), (session_id, record.version))
        return record

    def state_of(self, record: SessionRecord) -> SessionState:
        return self._codec.decode(record.state)

    # --- transitions -----------------------------------------------------------------
    async def transact(
        self,
        session_id: str,
        step: Callable[[SessionState], Awaitable[Outcome]],
        respond: Callable[[Outcome], Any],
        request_id: str = "",
        ttl_seconds: int | None = None,
    ) -> tuple[Any, bytes | None]:
        """Run `step` on the session's state and commit it.

        Returns (response, None) for a fresh transition, or (None, reply bytes) when
        `request_id` was already answered. Raises what `step` raises, with nothing written,
        and `RequestAlreadyApplied` for a request applied before whose reply is gone.
        """
        backoff = conflict_backoff()
        for _ in range(self._max_attempts):
            record = await self.load(session_id)
            # The ledger (Redis) is reached only once the record's recent replies are full.
            off_loop = len(record.replies) >= RECENT_REPLIES
            if request_id:
                earlier = await self._maybe_off_loop(
                    off_loop, recall, record.replies, self._request_ids, session_id, request_id, self._clock()
                )
                if earlier is not None:
                    return None, earlier
            state = self._codec.decode(record.state)
            outcome = await step(state)
            version = record.version + 1
            response = respond(outcome)
            replies: Mapping[str, bytes] = record.replies
            if request_id:
                replies = await self._maybe_off_loop(
                    off_loop,
                    remember,
                    replies,
                    self._request_ids,
                    session_id,
                    request_id,
                    response.SerializeToString(deterministic=True),
                    self._clock(),
                    max(self._request_window, record.ttl_seconds),
                )
            ttl = ttl_seconds if ttl_seconds is not None else record.ttl_seconds
            updated = record.evolve(
                state=self._codec.encode(replace(outcome.state, version=version)),
                version=version,
                ttl_seconds=ttl,
                expires_at=self._clock() + ttl if self._auto_extend or ttl_seconds else record.expires_at,
                outbox=encode_effects(outcome.effects),
                replies=replies,
            )
            if await self._store.compare_and_set(updated, record.version):
                if outcome.effects:
                    await self._apply_effects(record.kb_id, outcome.effects, (session_id, version))
                return response, None
            self.conflicts += 1
            await asyncio.sleep(next(backoff))
        raise ConflictExhausted(f"session {session_id!r} is being changed concurrently; retry the call")

    @staticmethod
    async def _maybe_off_loop(off_loop: bool, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)`, on a worker thread when it may wait on the network."""
        return await asyncio.to_thread(fn, *args) if off_loop else fn(*args)

    async def access(self, session_id: str) -> SessionRecord:
        """The live record of a read-only call; slides its expiry when auto-extend is on."""
        record = await self.load(session_id)
        if self._auto_extend:
            expires_at = self._clock() + record.ttl_seconds
            await self._store.touch(session_id, record.ttl_seconds, expires_at)
            record = record.evolve(expires_at=expires_at)
        return record

    async def read(self, session_id: str) -> SessionState:
        """The session's state for a read-only call (an access: see `access`)."""
        return self.state_of(await self.access(session_id))

    async def extend(self, session_id: str, ttl_seconds: int) -> SessionRecord:
        """Set the TTL and slide the expiry to now + TTL."""
        record = await self.load(session_id)
        expires_at = self._clock() + ttl_seconds
        if not await self._store.touch(session_id, ttl_seconds, expires_at):
            await self.load(session_id)  # it expired in between: raises NOT_FOUND saying so
        return record.evolve(ttl_seconds=ttl_seconds, expires_at=expires_at)

    async def exists(self, session_id: str) -> SessionStatus:
        """Whether the session is live or has expired; never extends the TTL."""
        return await self._store.status(session_id)

    async def delete(self, session_id: str) -> None:
        if not await self._store.delete(session_id):
            await self.load(session_id)  # raises the right NOT_FOUND message
            raise SessionNotFound(session_id, False, "does not exist")
