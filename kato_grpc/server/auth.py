"""API keys scoped to knowledge bases: one interceptor authenticates and authorises every call.

Off by default. ``--auth-keys-file PATH`` (a JSON or TOML file) and/or
``--auth-redis-keys`` (the hash ``kato:auth:keys`` in the Redis of ``--redis-url``) turn
it on. A client sends ``authorization: Bearer <key>`` metadata; the server keeps only
SHA-256 digests of keys, never the keys.

A key has a name, a list of kb id patterns (`fnmatch` syntax, case-sensitive:
``team-a-*``, ``shared``, ``*``) and a role:

- ``read``: Predict, GetStm, GetPerceptData, GetCognitionData, GetConfig, GetPattern,
  ListPatterns, GetSymbolStats, GetSymbolAffinity, GetSession, SessionExists;
- ``write``: also Observe, ObserveSequence, StreamObservations, Learn, ClearStm,
  UpdateConfig, UpdatePattern, DeletePattern, FinalizeTraining, CreateSession,
  DeleteSession, ExtendSession, UpdateSessionConfig;
- ``admin``: also ClearKnowledgeBase and ClearAll.

A method missing from that table needs ``admin`` (a unit test keeps the table complete).

Decisions, in the order they are made:

1. Health and reflection are open: no key is asked for.
2. No key, a malformed header or an unknown key: UNAUTHENTICATED. The message never
   repeats the key.
3. A role below the method's: PERMISSION_DENIED.
4. The call's knowledge base: ``kb_id`` of the request, ``state.kb_id`` of a
   client-held session, the stored ``kb_id`` of a server-held session (``session_id``),
   or for StreamObservations the same fields of its first (``open``) message. Outside
   the key's patterns: PERMISSION_DENIED. A request naming neither goes on to the
   servicer, which rejects it as INVALID_ARGUMENT, having touched nothing.
5. A server-held session belongs to the key that created it (the session record's
   ``owner`` is the key's name). For any other key it does not exist: every call on it
   answers NOT_FOUND exactly as for an unknown id (``SESSION_NOT_FOUND``), and
   SessionExists answers ``exists=false``. NOT_FOUND rather than PERMISSION_DENIED
   so that a leaked or guessed id does not even confirm that the session is live.
   Sessions created while auth was off have no owner: only ``admin`` keys may use them.
   Ownership follows the key *name*, so a key rotated under the same name keeps its
   sessions.

Keys file (JSON: a list, or an object with a ``keys`` list; TOML: ``[[keys]]`` tables)::

    {"keys": [{"name": "team-a-writer", "key_sha256": "<64 hex>", "kb_ids": ["team-a-*", "shared"], "role": "write"}]}

The file is read at start (an invalid file stops the server) and again on SIGHUP
(an invalid file is logged and the keys in use are kept); open connections are not
touched. In Redis, ``HSET kato:auth:keys <sha256 hex> '{"kb_ids": [...], "role": "read", "name": "..."}'``
(``name`` optional: ``redis:<first 12 hex digits>`` by default). Redis entries are
cached for `REDIS_CACHE_SECONDS` (SIGHUP empties the cache); the file wins over Redis
for the same digest.
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import hashlib
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import tomllib

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc.server import request_context
from kato_grpc.server.errors import KatoError, rich_status, status_for_exception
from kato_grpc.server.execution import BackendTimeout
from kato_grpc.server.handlers import CachedWrapper, split_method, wrap_handler
from kato_grpc.sessions.base import StoreUnavailable
from kato_grpc.sessions.runner import SessionNotFound

__all__ = [
    "Role",
    "ApiKey",
    "KeyRing",
    "KeyFileError",
    "AuthUnavailable",
    "AuthInterceptor",
    "METHOD_ROLES",
    "OPEN_SERVICES",
    "REDIS_KEYS_HASH",
    "hash_key",
    "load_keys_file",
    "parse_keys",
    "current_owner",
    "session_owner_from",
    "keyring_from_settings",
]

log = logging.getLogger("kato_grpc.auth")

KATO_SERVICE = api.DESCRIPTOR.services_by_name["KatoService"].full_name
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)
REDIS_KEYS_HASH = "kato:auth:keys"
REDIS_CACHE_SECONDS = 5.0
REDIS_CACHE_ENTRIES = 10_000
_DIGEST = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"name", "key_sha256", "kb_ids", "role"}


class Role(enum.IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: Any) -> Role:
        try:
            return cls[str(text).upper()]
        except KeyError:
            raise ValueError(f"role {text!r} must be read, write or admin") from None


_READ = (
    "Predict",
    "GetStm",
    "GetPerceptData",
    "GetCognitionData",
    "GetConfig",
    "GetPattern",
    "ListPatterns",
    "GetSymbolStats",
    "GetSymbolAffinity",
    "GetSession",
    "SessionExists",
)
_WRITE = (
    "Observe",
    "ObserveSequence",
    "StreamObservations",
    "Learn",
    "ClearStm",
    "UpdateConfig",
    "UpdatePattern",
    "DeletePattern",
    "FinalizeTraining",
    "CreateSession",
    "DeleteSession",
    "ExtendSession",
    "UpdateSessionConfig",
)
_ADMIN = ("ClearKnowledgeBase", "ClearAll")
METHOD_ROLES: dict[str, Role] = {
    **{m: Role.READ for m in _READ},
    **{m: Role.WRITE for m in _WRITE},
    **{m: Role.ADMIN for m in _ADMIN},
}


@dataclass(frozen=True)
class ApiKey:
    """A key as the server knows it: its name, kb id patterns and role (never the key)."""

    name: str
    kb_patterns: tuple[str, ...]
    role: Role

    def allows_kb(self, kb_id: str) -> bool:
        return any(fnmatch.fnmatchcase(kb_id, pattern) for pattern in self.kb_patterns)

    def owns(self, owner: str) -> bool:
        """Whether a session recorded with `owner` is this key's ("" = created with auth off)."""
        return owner == self.name if owner else self.role is Role.ADMIN


class KeyFileError(ValueError):
    """The keys file cannot be used; the message says which entry and why."""


class AuthUnavailable(Exception):
    """The key store (Redis) did not answer. Maps to UNAVAILABLE."""


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored (``printf %s KEY | sha256sum``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse_entry(entry: Any, where: str, *, digest: str | None = None) -> tuple[str, ApiKey]:
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where}: must be a table/object, not {type(entry).__name__}")
    allowed = _FIELDS if digest is None else _FIELDS - {"key_sha256"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise KeyFileError(f"{where}: unknown field(s) {', '.join(unknown)}; fields are {', '.join(sorted(allowed))}")
    name = entry.get("name", "" if digest is None else f"redis:{digest[:12]}")
    if not isinstance(name, str) or not name.strip():
        raise KeyFileError(f"{where}: name must be a non-empty string")
    if digest is None:
        digest = str(entry.get("key_sha256", "")).lower()
        if not _DIGEST.fullmatch(digest):
            raise KeyFileError(
                f"{where} ({name}): key_sha256 must be 64 hex digits (the SHA-256 of the key, not the key)"
            )
    patterns = entry.get("kb_ids")
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise KeyFileError(f"{where} ({name}): kb_ids must be a non-empty list of kb ids or patterns")
    try:
        role = Role.parse(entry.get("role"))
    except ValueError as exc:
        raise KeyFileError(f"{where} ({name}): {exc}") from None
    return digest, ApiKey(name=name, kb_patterns=tuple(patterns), role=role)


def parse_keys(entries: Iterable[Any]) -> dict[str, ApiKey]:
    """Digest → key for a list of key entries; names and digests must be unique."""
    keys: dict[str, ApiKey] = {}
    names: set[str] = set()
    for i, entry in enumerate(entries):
        digest, key = _parse_entry(entry, f"keys[{i}]")
        if digest in keys:
            raise KeyFileError(f"keys[{i}] ({key.name}): the same key_sha256 as {keys[digest].name!r}")
        if key.name in names:
            raise KeyFileError(f"keys[{i}]: name {key.name!r} is used twice (names own sessions: keep them unique)")
        keys[digest] = key
        names.add(key.name)
    return keys


def load_keys_file(path: str | Path) -> dict[str, ApiKey]:
    """The keys of a JSON or TOML (``.toml``) keys file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read keys file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(
            f"keys file {str(path)!r} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}"
        ) from None
    if isinstance(data, dict):
        extra = sorted(set(data) - {"keys"})
        if extra:
            raise KeyFileError(
                f"keys file {str(path)!r}: unknown top-level field(s) {', '.join(extra)}; expected `keys`"
            )
        data = data.get("keys", [])
    if not isinstance(data, list):
        raise KeyFileError(f"keys file {str(path)!r}: expected a list of keys")
    try:
        return parse_keys(data)
    except KeyFileError as exc:
        raise KeyFileError(f"keys file {str(path)!r}: {exc}") from None


class KeyRing:
    """Where keys are looked up: the keys file (reloaded on SIGHUP), then Redis."""

    def __init__(
        self,
        path: str = "",
        redis_client: Any = None,
        *,
        where: str = "redis",
        cache_seconds: float = REDIS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._file_keys: dict[str, ApiKey] = load_keys_file(path) if path else {}
        self._redis = redis_client
        self._where = where
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self.reloads = 0

    def __len__(self) -> int:
        return len(self._file_keys)

    def reload(self) -> bool:
        """Re-read the keys file and forget cached Redis entries; keep the old keys on error."""
        self._cache = {}
        if not self._path:
            return True
        try:
            keys = load_keys_file(self._path)
        except KeyFileError as exc:
            log.error("keys not reloaded, keeping the %d in use: %s", len(self._file_keys), exc)
            return False
        self._file_keys = keys
        self.reloads += 1
        log.info("reloaded %d API keys from %s", len(keys), self._path)
        return True

    def lookup_local(self, key: str) -> tuple[bool, ApiKey | None]:
        """(True, entry or None) when the file or the cache decides, without I/O; else (False, None)."""
        digest = hash_key(key)
        found = self._file_keys.get(digest)
        if found is not None or self._redis is None:
            return True, found
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > self._clock():
            return True, cached[1]
        return False, None

    def lookup(self, key: str) -> ApiKey | None:
        """The key's entry, or None when it is unknown. Raises AuthUnavailable if Redis is down."""
        digest = hash_key(key)
        found = self._file_keys.get(digest)
        if found is not None or self._redis is None:
            return found
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._from_redis(digest)
        if len(self._cache) >= REDIS_CACHE_ENTRIES:
            self._cache = {}
        self._cache[digest] = (now + self._cache_seconds, found)
        return found

    def _from_redis(self, digest: str) -> ApiKey | None:
        import redis

        try:
            raw = self._redis.hget(REDIS_KEYS_HASH, digest)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise AuthUnavailable(
                f"API key store unavailable: Redis at {self._where} did not answer "
                f"({type(exc).__name__}); retry the call"
            ) from None
        if raw is None:
            return None
        try:
            return _parse_entry(json.loads(raw), f"{REDIS_KEYS_HASH}[{digest[:12]}…]", digest=digest)[1]
        except (KeyFileError, ValueError) as exc:
            log.warning("ignoring malformed API key entry in Redis: %s", exc)
            return None


def keyring_from_settings(settings: Any) -> KeyRing | None:
    """The key ring the settings ask for, or None when auth is off."""
    redis_client, where = None, "redis"
    if getattr(settings, "auth_redis_keys", False):
        if not settings.redis_url:
            raise ValueError("--auth-redis-keys needs --redis-url (the Redis holding kato:auth:keys)")
        import redis

        from kato_grpc.sessions.redis_store import redact_url

        redis_client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
        where = redact_url(settings.redis_url)
    if not settings.auth_keys_file and redis_client is None:
        return None
    return KeyRing(settings.auth_keys_file, redis_client, where=where)


# --- the caller, for the rest of the call ----------------------------------------------------

_OWNER: ContextVar[str] = ContextVar("kato_auth_owner", default="")


def current_owner() -> str:
    """The name of the API key making the current call ("" with auth off): a new session's owner."""
    return _OWNER.get()


SessionOwner = Callable[[str], "Awaitable[tuple[str, str] | None]"]


def session_owner_from(store: Any) -> SessionOwner:
    """`session_id -> (owner, kb_id)` of a live session in `store` (an async store), or None."""

    async def owner(session_id: str) -> tuple[str, str] | None:
        if not session_id:
            return None
        record = await store.get(session_id)
        return None if record is None else (getattr(record, "owner", ""), record.kb_id)

    return owner


# --- the interceptor -----------------------------------------------------------------------------

Target = tuple[str, str]  # ("kb", kb_id) or ("session", session_id)


def _target_reader(method: str) -> Callable[[Any], Target | None]:
    """How to find the knowledge base or session a request of `method` names."""
    service = api.DESCRIPTOR.services_by_name["KatoService"]
    descriptor = service.methods_by_name[method].input_type if method in service.methods_by_name else None
    if descriptor is None:
        return lambda request: None
    if "session" in descriptor.oneofs_by_name:

        def from_oneof(request) -> Target | None:
            held = request.WhichOneof("session")
            if held == "state":
                return "kb", request.state.kb_id
            if held == "session_id":
                return "session", request.session_id
            return None

        return from_oneof
    if "kb_id" in descriptor.fields_by_name:
        return lambda request: ("kb", request.kb_id)
    if "session_id" in descriptor.fields_by_name:
        return lambda request: ("session", request.session_id)
    return lambda request: None


def _open_target(message: api.StreamObservationsRequest) -> Target | None:
    if message.WhichOneof("step") != "open":
        return None
    held = message.open.WhichOneof("session")
    if held == "state":
        return "kb", message.open.state.kb_id
    if held == "session_id":
        return "session", message.open.session_id
    return None


def _bearer(metadata) -> str | None:
    """The key of `authorization: Bearer <key>`; "" if the header is malformed, None if absent."""
    for key, value in metadata or ():
        if key == "authorization":
            if not isinstance(value, str):
                return ""
            scheme, _, token = value.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class _Hidden(Exception):
    """The session is another key's: answer as if it did not exist."""


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call to a guarded service and authorises it for its kb id."""

    def __init__(self, keys: KeyRing, session_owner: SessionOwner) -> None:
        self._keys = keys
        self._session_owner = session_owner
        self._wrapped = CachedWrapper(self._build)

    async def intercept_service(self, continuation, handler_call_details):
        return self._wrapped(handler_call_details.method, await continuation(handler_call_details))

    # --- decisions -------------------------------------------------------------------------
    async def _authenticate(self, context: grpc.aio.ServicerContext) -> ApiKey:
        token = _bearer(context.invocation_metadata())
        if token is None:
            await _deny(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "API_KEY_MISSING",
                "missing API key: send metadata `authorization: Bearer <key>`",
            )
        if not token:
            await _deny(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "API_KEY_MALFORMED",
                "the authorization metadata must read `Bearer <key>`",
            )
        try:
            known, key = self._keys.lookup_local(token)
            if not known:  # ask Redis off the event loop
                key = await asyncio.to_thread(self._keys.lookup, token)
        except AuthUnavailable as exc:
            await _deny(context, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", str(exc))
        if key is None:
            await _deny(context, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID", "unknown API key")
        return key

    async def _authorize(
        self, key: ApiKey, method: str, required: Role, target: Target | None, context: grpc.aio.ServicerContext
    ) -> None:
        """Return if `key` may make this call; abort otherwise, or raise `_Hidden`."""
        if key.role < required:
            await _deny(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "ROLE_INSUFFICIENT",
                f"API key {key.name!r} has role {key.role.name.lower()}; {method} needs {required.name.lower()}",
                {"keyName": key.name, "requiredRole": required.name.lower()},
            )
        kb_id, check_kb = "", target is not None
        if target is not None:
            kind, value = target
            if kind == "session":
                try:
                    found = await self._session_owner(value)
                except (StoreUnavailable, BackendTimeout) as exc:
                    await _deny(context, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", str(exc))
                if found is None:
                    check_kb = False  # unknown or expired: the servicer answers NOT_FOUND
                else:
                    owner, kb_id = found
                    if not key.owns(owner):
                        raise _Hidden(value)
            else:
                kb_id = value
            if check_kb and not key.allows_kb(kb_id):
                await _deny(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "KB_NOT_ALLOWED",
                    f"API key {key.name!r} may not use knowledge base {kb_id[:128]!r}",
                    {"keyName": key.name, "kbId": kb_id[:128]},
                )
        _OWNER.set(key.name)
        info = request_context.current()
        if info is not None:
            info.principal, info.kb_id = key.name, kb_id

    async def _hide(self, method: str, session_id: str, context: grpc.aio.ServicerContext):
        if method == "SessionExists":
            return api.SessionExistsResponse(exists=False, expired=False)
        await context.abort_with_status(rich_status(status_for_exception(SessionNotFound(session_id, False))))

    # --- wrapping -----------------------------------------------------------------------------
    def _build(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, method = split_method(full_method)
        if service in OPEN_SERVICES:
            return handler
        required = METHOD_ROLES.get(method, Role.ADMIN) if service == KATO_SERVICE else Role.ADMIN
        read_target = _target_reader(method) if service == KATO_SERVICE else (lambda request: None)

        def wrap(behavior, kind: str):
            if kind == "unary_unary":

                async def unary(request, context):
                    key = await self._authenticate(context)
                    try:
                        await self._authorize(key, method, required, read_target(request), context)
                    except _Hidden as hidden:
                        return await self._hide(method, str(hidden), context)
                    return await behavior(request, context)

                return unary
            if kind == "stream_stream" and method == "StreamObservations":

                async def stream(request_iterator, context):
                    key = await self._authenticate(context)
                    messages = request_iterator.__aiter__()
                    try:
                        first = await messages.__anext__()
                    except StopAsyncIteration:
                        await self._authorize(key, method, required, None, context)
                        return
                    try:
                        await self._authorize(key, method, required, _open_target(first), context)
                    except _Hidden as hidden:
                        await self._hide(method, str(hidden), context)

                    async def replay():
                        yield first
                        async for message in messages:
                            yield message

                    async for response in behavior(replay(), context):
                        yield response

                return stream
            # Any other shape: the key and its role are checked; there is no kb id to read.
            if inspect.isasyncgenfunction(behavior):

                async def streaming(request, context):
                    key = await self._authenticate(context)
                    await self._authorize(key, method, required, None, context)
                    async for response in behavior(request, context):
                        yield response

                return streaming

            async def single(request, context):
                key = await self._authenticate(context)
                await self._authorize(key, method, required, None, context)
                return await behavior(request, context)

            return single

        return wrap_handler(handler, wrap)


async def _deny(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    reason: str,
    message: str,
    metadata: dict[str, str] | None = None,
):
    await context.abort_with_status(rich_status(KatoError(code, reason, message, metadata=metadata)))
