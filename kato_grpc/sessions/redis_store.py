"""Server-held sessions in Redis (redis-py): one hash per session, written by Lua scripts.

Key layout. Every key of a session carries the hash tag ``{<session id>}``, so all of a
session's keys hash to one Redis Cluster slot and a script may touch them together:

``kato:session:{<id>}``
    A hash that expires with the session (``PEXPIRE``, milliseconds). Its fields:

    - ``state``: the serialized ``kato.v1.SessionState`` (deterministic protobuf bytes).
    - ``version``: the compare-and-set token, a decimal integer (0 at creation).
    - ``kb_id``: the knowledge base the session reads and writes.
    - ``ttl_seconds``: the session's TTL, a decimal integer.
    - ``expires_at``, ``created_at``: Unix seconds as decimal floats (informational;
      Redis's own key expiry is what ends a session).
    - ``metadata``: the serialized ``google.protobuf.Struct`` given at CreateSession, or empty.
    - ``owner``: the name of the API key that created the session (server/auth.py), or empty.
    - ``outbox``: the effects of the last committed transition (effects_codec JSON), or
      empty; see runner.py for how they reach the knowledge base exactly once.
    - ``replies``: JSON ``[[request_id, base64(serialized response)], ...]``, oldest first.
    - ``writer``: names the write that produced this version (a random per-store prefix
      and a counter), so a compare-and-set re-sent after a lost reply recognises its own
      write instead of reporting a conflict.

``kato:session:{<id>}:expired``
    A tombstone (value ``1``) whose expiry is refreshed with the session's and outlives it
    by a day, so SessionExists can answer ``expired=true`` once the hash is gone.
    DeleteSession removes both keys.

Every write is one Lua script, hence atomic: a compare-and-set checks that the session
exists and that its version is the expected one, then writes the fields a transition
changes (all but ``kb_id``, ``created_at``, ``metadata`` and ``owner``, fixed at
creation) and the expiry, or writes nothing. Reads (``get``, ``status``) never extend a TTL.

The store connects with a standalone client (``redis://``, ``rediss://``, ``unix://``);
the layout is ready for a Cluster client, which this module does not configure.

Redis unreachable (refused, timed out, read-only replica) raises `StoreUnavailable`
naming the Redis address without credentials. The connection pool has short socket
timeouts and reconnects by itself once Redis is back; a command is re-sent at most once,
immediately, and only on a connection error (a pooled connection that a restarted Redis
dropped), never on a timeout.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kato_grpc.sessions.base import SessionRecord, SessionStatus, StoreUnavailable

__all__ = ["RedisSessionStore", "session_key", "tombstone_key", "redact_url", "TOMBSTONE_SECONDS"]

KEY_PREFIX = "kato:session:"
TOMBSTONE_SECONDS = 86400  # how long after expiry SessionExists still says "expired"
SOCKET_CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0

_READ_FIELDS = (
    "state",
    "version",
    "kb_id",
    "ttl_seconds",
    "expires_at",
    "created_at",
    "metadata",
    "outbox",
    "replies",
    "owner",
)
_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError)


def session_key(session_id: str) -> str:
    """``kato:session:{<id>}``: the session's hash (hash tag = the id)."""
    return f"{KEY_PREFIX}{{{session_id}}}"


def tombstone_key(session_id: str) -> str:
    """``kato:session:{<id>}:expired``: remembers an expired session for a day."""
    return f"{session_key(session_id)}:expired"


def redact_url(url: str) -> str:
    """The URL without user, password or query string, fit for an error message.

    >>> redact_url("redis://user:secret@cache.internal:6380/2?password=x")
    'redis://cache.internal:6380/2'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# KEYS[1] session hash, KEYS[2] tombstone.
# ARGV: writer token, expiry ms, tombstone expiry ms, then field/value pairs.
_CREATE = """
local found = redis.call('HGET', KEYS[1], 'writer')
if found then
  if found == ARGV[1] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1
"""

# ARGV: expected version, new version, writer token, expiry ms, tombstone expiry ms,
# then field/value pairs (including version and writer).
_COMPARE_AND_SET = """
local current = redis.call('HMGET', KEYS[1], 'version', 'writer')
if current[1] == ARGV[2] and current[2] == ARGV[3] then return 1 end
if current[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
return 1
"""

# ARGV: ttl seconds, expires_at, expiry ms, tombstone expiry ms. The version is unchanged.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ttl_seconds', ARGV[1], 'expires_at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
return 1
"""

# The tombstone goes only with a live session: deleting an expired one changes nothing,
# so the NOT_FOUND that follows can still say "expired".
_DELETE = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""

_STATUS = """
return {redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2])}
"""


def _encode_replies(replies: Mapping[str, bytes]) -> bytes:
    pairs = [[rid, base64.b64encode(reply).decode("ascii")] for rid, reply in replies.items()]
    return json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8") if pairs else b""


def _decode_replies(data: bytes) -> dict[str, bytes]:
    if not data:
        return {}
    return {rid: base64.b64decode(reply) for rid, reply in json.loads(data.decode("utf-8"))}


class RedisSessionStore:
    """A `SessionStore` over one Redis (or any Redis-compatible server)."""

    def __init__(self, client: redis.Redis, where: str = "redis", clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._where = where
        self._clock = clock
        self._writer_prefix = secrets.token_hex(8)  # unique per store; a counter per write
        self._writes = itertools.count()
        self._create = client.register_script(_CREATE)
        self._cas = client.register_script(_COMPARE_AND_SET)
        self._touch = client.register_script(_TOUCH)
        self._delete = client.register_script(_DELETE)
        self._status = client.register_script(_STATUS)

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time, **options) -> RedisSessionStore:
        """A store on ``redis://[user:password@]host:port/db`` (also ``rediss://``, ``unix://``).

        Connects lazily: a server started while Redis is down answers UNAVAILABLE until
        Redis is reachable, then serves without a restart.
        """
        settings = {
            "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
            # One immediate re-send on a connection error only: a pooled connection that a
            # restarted Redis dropped is replaced; a down Redis fails fast.
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            **options,
        }
        return cls(redis.Redis.from_url(url, **settings), where=redact_url(url), clock=clock)

    @property
    def client(self) -> redis.Redis:
        return self._client

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except _UNREACHABLE as exc:
            raise StoreUnavailable(
                f"session store unavailable: Redis at {self._where} did not answer "
                f"({type(exc).__name__}: {exc}); retry the call"
            ) from None

    def _new_writer(self) -> str:
        return f"{self._writer_prefix}.{next(self._writes)}"

    def _expiry_ms(self, expires_at: float) -> tuple[int, int]:
        ms = max(1, round((expires_at - self._clock()) * 1000))
        return ms, ms + TOMBSTONE_SECONDS * 1000

    @staticmethod
    def _mutable_fields(record: SessionRecord, writer: str) -> list[bytes | str]:
        """What a transition may change; kb_id, created_at, metadata and owner are set at creation."""
        return [
            "state",
            record.state,
            "version",
            str(record.version),
            "ttl_seconds",
            str(record.ttl_seconds),
            "expires_at",
            repr(float(record.expires_at)),
            "outbox",
            record.outbox,
            "replies",
            _encode_replies(record.replies),
            "writer",
            writer,
        ]

    @classmethod
    def _all_fields(cls, record: SessionRecord, writer: str) -> list[bytes | str]:
        return [
            "kb_id",
            record.kb_id,
            "created_at",
            repr(float(record.created_at)),
            "metadata",
            record.metadata,
            "owner",
            record.owner,
            *cls._mutable_fields(record, writer),
        ]

    # --- SessionStore -------------------------------------------------------------------
    def create(self, record: SessionRecord) -> None:
        writer = self._new_writer()
        ms, tomb_ms = self._expiry_ms(record.expires_at)
        keys = [session_key(record.session_id), tombstone_key(record.session_id)]
        with self._reachable():
            created = self._create(keys=keys, args=[writer, ms, tomb_ms, *self._all_fields(record, writer)])
        if not created:
            raise ValueError(f"session {record.session_id!r} already exists")

    def get(self, session_id: str) -> SessionRecord | None:
        if not session_id:
            return None
        with self._reachable():
            # redis-py types a reply as `Awaitable | value` (one API for sync and async clients).
            values = cast("list[Any]", self._client.hmget(session_key(session_id), list(_READ_FIELDS)))
        state, version, kb_id, ttl, expires_at, created_at, metadata, outbox, replies, owner = values
        if version is None:
            return None
        return SessionRecord(
            session_id=session_id,
            kb_id=kb_id.decode("utf-8"),
            state=state,
            version=int(version),
            ttl_seconds=int(ttl),
            expires_at=float(expires_at),
            created_at=float(created_at),
            metadata=metadata or b"",
            outbox=outbox or b"",
            replies=_decode_replies(replies or b""),
            owner=(owner or b"").decode("utf-8"),
        )

    def status(self, session_id: str) -> SessionStatus:
        if not session_id:
            return SessionStatus(exists=False, expired=False)
        with self._reachable():
            live, tombstone = self._status(keys=[session_key(session_id), tombstone_key(session_id)])
        return SessionStatus(exists=bool(live), expired=not live and bool(tombstone))

    def compare_and_set(self, record: SessionRecord, expected_version: int) -> bool:
        """Write the record's state, version, TTL, expiry, outbox and replies iff the stored
        version is `expected_version` (kb_id, created_at, metadata and owner never change)."""
        if not record.session_id:
            return False
        writer = self._new_writer()
        ms, tomb_ms = self._expiry_ms(record.expires_at)
        keys = [session_key(record.session_id), tombstone_key(record.session_id)]
        args = [str(expected_version), str(record.version), writer, ms, tomb_ms, *self._mutable_fields(record, writer)]
        with self._reachable():
            return bool(self._cas(keys=keys, args=args))

    def touch(self, session_id: str, ttl_seconds: int, expires_at: float) -> bool:
        if not session_id:
            return False
        ms, tomb_ms = self._expiry_ms(expires_at)
        keys = [session_key(session_id), tombstone_key(session_id)]
        with self._reachable():
            return bool(self._touch(keys=keys, args=[str(ttl_seconds), repr(float(expires_at)), ms, tomb_ms]))

    def delete(self, session_id: str) -> bool:
        if not session_id:
            return False
        with self._reachable():
            return bool(self._delete(keys=[session_key(session_id), tombstone_key(session_id)]))

    def close(self) -> None:
        self._client.close()
