"""Retried requests are answered, not applied twice, for a stated time (AIP-155).

A server-held call with a `request_id` is remembered for a window (``--request-id-window-seconds``,
default 24 h, and never less than the session's TTL) after it was applied. A retry inside the
window is never applied again: it gets the first reply, or, when that reply is no longer kept,
ALREADY_EXISTS (reason ``REQUEST_ALREADY_APPLIED``) saying when it was applied.

Two places keep request ids, so that neither a crash nor a busy session breaks the promise:

- the session record's `replies`: the newest `RECENT_REPLIES` ids with their replies,
  written by the same compare-and-set as the state they produced. Atomic: a call is
  applied if and only if its id is there. Each value is `_pack`ed: when it was applied,
  then the reply.
- a `RequestLedger` beside the session store: an id leaving the record (the 17th newer id
  pushes it out) is written there first, with its reply when it is at most
  `MAX_LEDGER_REPLY_BYTES`, and expires at the end of its window. It is written before
  the compare-and-set that drops it from the record, so an id is always in one or the
  other (a failed compare-and-set leaves a ledger entry for an id that was applied anyway).

The record stays small (16 replies, rewritten by every call) however many ids a session
sends; the ledger holds the rest, one expiring entry each, never rewritten.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, cast

import redis

from kato_grpc.sessions.base import StoreUnavailable

__all__ = [
    "Applied",
    "RequestLedger",
    "MemoryLedger",
    "RedisLedger",
    "RequestAlreadyApplied",
    "recall",
    "remember",
    "RECENT_REPLIES",
    "DEFAULT_WINDOW_SECONDS",
    "MAX_LEDGER_REPLY_BYTES",
]

RECENT_REPLIES = 16
DEFAULT_WINDOW_SECONDS = 86400
MAX_LEDGER_REPLY_BYTES = 64 * 1024
_MAGIC = b"KRID"  # never the start of a reply: 0x4B would be field 9 starting a group


@dataclass(frozen=True)
class Applied:
    """A request id's memory: when it was applied, and its reply if still kept."""

    applied_at: float
    reply: bytes | None


class RequestAlreadyApplied(Exception):
    """A retry of a request applied earlier whose reply is no longer kept. Maps to ALREADY_EXISTS."""

    def __init__(self, session_id: str, request_id: str, applied_at: float) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(applied_at))
        super().__init__(
            f"request_id {request_id[:64]!r} was already applied to session {session_id!r} at {when};"
            " its reply is no longer kept, so it is not applied again: read the session instead"
        )
        self.metadata = {"sessionId": session_id, "requestId": request_id[:128], "appliedAt": when}


def _pack(entry: Applied) -> bytes:
    return _MAGIC + struct.pack(">d", entry.applied_at) + (b"" if entry.reply is None else b"\x01" + entry.reply)


def _unpack(value: bytes, now: float) -> Applied:
    if not value.startswith(_MAGIC):  # written before request ids had a time: count it as new
        return Applied(now, value)
    (applied_at,) = struct.unpack(">d", value[4:12])
    return Applied(applied_at, value[13:] if len(value) > 12 else None)


class RequestLedger(Protocol):
    """Request ids that left their session record, each until its window ends."""

    def get(self, session_id: str, request_id: str) -> Applied | None:
        """The id's entry, or None if it was never applied or its window has passed."""

    def put(self, session_id: str, entries: Mapping[str, Applied], expires_at: Mapping[str, float]) -> None:
        """Keep `entries` until their `expires_at` (epoch seconds). Idempotent."""

    def close(self) -> None:
        """Release connections."""


def recall(
    replies: Mapping[str, bytes], ledger: RequestLedger, session_id: str, request_id: str, now: float
) -> bytes | None:
    """The first reply to `request_id` if it was applied; None if it never was.

    Raises `RequestAlreadyApplied` when it was applied but its reply is no longer kept.
    """
    kept = replies.get(request_id)
    if kept is not None:
        return _unpack(kept, now).reply or b""
    if len(replies) < RECENT_REPLIES:
        return None  # the record never overflowed: nothing went to the ledger
    earlier = ledger.get(session_id, request_id)
    if earlier is None:
        return None
    if earlier.reply is None:
        raise RequestAlreadyApplied(session_id, request_id, earlier.applied_at)
    return earlier.reply


def remember(
    replies: Mapping[str, bytes],
    ledger: RequestLedger,
    session_id: str,
    request_id: str,
    reply: bytes,
    now: float,
    window_seconds: float,
) -> dict[str, bytes]:
    """The record's new `replies` with `request_id` added; ids pushed out go to the ledger first."""
    kept = [*replies.items(), (request_id, _pack(Applied(now, reply)))]
    evicted, kept = kept[:-RECENT_REPLIES], kept[-RECENT_REPLIES:]
    if evicted:
        entries = {}
        for rid, value in evicted:
            entry = _unpack(value, now)
            if entry.reply is not None and len(entry.reply) > MAX_LEDGER_REPLY_BYTES:
                entry = Applied(entry.applied_at, None)
            entries[rid] = entry
        ledger.put(session_id, entries, {rid: entry.applied_at + window_seconds for rid, entry in entries.items()})
    return dict(kept)


class MemoryLedger:
    """The ledger of the in-process session store."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[Applied, float]] = OrderedDict()
        self._clock = clock
        self._guard = threading.Lock()

    def get(self, session_id: str, request_id: str) -> Applied | None:
        with self._guard:
            found = self._entries.get((session_id, request_id))
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def put(self, session_id: str, entries: Mapping[str, Applied], expires_at: Mapping[str, float]) -> None:
        now = self._clock()
        with self._guard:
            for rid, entry in entries.items():
                self._entries[(session_id, rid)] = (entry, expires_at[rid])
                self._entries.move_to_end((session_id, rid))
            # Entries arrive roughly in expiry order (one window for all): drop the expired head.
            while self._entries:
                key, (_, expiry) = next(iter(self._entries.items()))
                if expiry > now:
                    break
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self._entries.clear()


class RedisLedger:
    """One key per remembered id, ``kato:session:{<id>}:request:<sha256 of the request id>``,
    expiring with its window; in the session's hash slot (Redis Cluster)."""

    def __init__(self, client: redis.Redis, where: str = "redis") -> None:
        self._client = client
        self._where = where

    @classmethod
    def from_url(cls, url: str, where: str) -> RedisLedger:
        """A ledger with a connection pool of its own on the session store's Redis (lazy connect)."""
        return cls(redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0), where)

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def _key(session_id: str, request_id: str) -> str:
        return f"kato:session:{{{session_id}}}:request:{hashlib.sha256(request_id.encode()).hexdigest()}"

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError) as exc:
            raise StoreUnavailable(
                f"session store unavailable: Redis at {self._where} did not answer "
                f"({type(exc).__name__}); nothing was applied, retry the call"
            ) from None

    def get(self, session_id: str, request_id: str) -> Applied | None:
        with self._reachable():
            # redis-py types a reply as `Awaitable | value` (one API for sync and async clients).
            value = cast("bytes | None", self._client.get(self._key(session_id, request_id)))
        return None if value is None else _unpack(value, time.time())

    def put(self, session_id: str, entries: Mapping[str, Applied], expires_at: Mapping[str, float]) -> None:
        with self._reachable():
            pipe = self._client.pipeline(transaction=False)
            for rid, entry in entries.items():
                pipe.set(self._key(session_id, rid), _pack(entry), pxat=int(expires_at[rid] * 1000))
            pipe.execute()
