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
- ``admin``: also ClearKnowledgeBase, ClearAll and ListKnowledgeBases (which names every
  knowledge base, whatever the key's kb id patterns).

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
import contextlib
import enum
import fnmatch
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import grpc

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, as a package before Python 3.11 (a dependency there)
    # mypy checks this branch (python_version = "3.10"); tomli is installed only on 3.10.
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc.server import request_context
from kato_grpc.server.errors import KatoError, rich_status, status_for_exception
from kato_grpc.server.execution import BackendTimeout
from kato_grpc.server.handlers import Interceptor, Method, peek
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
_ADMIN = ("ClearKnowledgeBase", "ClearAll", "ListKnowledgeBases")
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


@dataclass(frozen=True)
class Target:
    """What a request names: a knowledge base (``kind="kb"``), a server-held session
    (``kind="session"``, whose kb id is stored with it), or neither (``kind=""``)."""

    kind: Literal["kb", "session", ""]
    id: str = ""


NO_TARGET = Target("")


@dataclass(frozen=True)
class _Rule:
    """What auth needs to know about one guarded method, worked out once."""

    method: str  # the method's name
    role: Role  # the least role that may call it
    target: Callable[[Any], Target]  # what a request names (of StreamObservations: its first message)
    reads_first_message: bool = False  # StreamObservations: the stream's first message names the target


def _names_nothing(request: Any) -> Target:
    return NO_TARGET


def _from_session_oneof(request: Any) -> Target:
    """The target of a request with the `session` oneof: a client-held state's kb, or a session id."""
    held = request.WhichOneof("session")
    if held == "state":
        return Target("kb", request.state.kb_id)
    if held == "session_id":
        return Target("session", request.session_id)
    return NO_TARGET


def _from_kb_id(request: Any) -> Target:
    return Target("kb", request.kb_id)


def _from_session_id(request: Any) -> Target:
    return Target("session", request.session_id)


def _from_open_message(message: api.StreamObservationsRequest) -> Target:
    """The target of a StreamObservations call: what its first message, ``open``, names."""
    return _from_session_oneof(message.open) if message.WhichOneof("step") == "open" else NO_TARGET


def _target_reader(method: str) -> Callable[[Any], Target]:
    """How to find the knowledge base or session a request of KatoService's `method` names."""
    if method == "StreamObservations":
        return _from_open_message
    service = api.DESCRIPTOR.services_by_name["KatoService"]
    if method not in service.methods_by_name:
        return _names_nothing
    request_type = service.methods_by_name[method].input_type
    if "session" in request_type.oneofs_by_name:
        return _from_session_oneof
    if "kb_id" in request_type.fields_by_name:
        return _from_kb_id
    if "session_id" in request_type.fields_by_name:
        return _from_session_id
    return _names_nothing


def _bearer(metadata: Any) -> str | None:
    """The key of `authorization: Bearer <key>`; "" if the header is malformed, None if absent."""
    for key, value in metadata or ():
        if key == "authorization":
            if not isinstance(value, str):
                return ""
            scheme, _, token = value.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class AuthInterceptor(Interceptor):
    """Authenticates every call to a guarded service and authorises it for its kb id.

    Each call takes the steps of the module docstring in order: authenticate the key,
    authorise the method (the key's role), check the owner of the server-held session
    the call names, authorise the knowledge base. Its plan for a method is a `_Rule`.
    """

    def __init__(self, keys: KeyRing, session_owner: SessionOwner) -> None:
        super().__init__()
        self._keys = keys
        self._session_owner = session_owner

    def prepare(self, method: Method, handler: grpc.RpcMethodHandler) -> _Rule | None:
        if method.service in OPEN_SERVICES:
            return None
        if method.service != KATO_SERVICE:
            return _Rule(method.name, Role.ADMIN, _names_nothing)
        return _Rule(
            method.name,
            METHOD_ROLES.get(method.name, Role.ADMIN),
            _target_reader(method.name),
            reads_first_message=method.name == "StreamObservations",
        )

    # --- one call, by shape ----------------------------------------------------------------------
    async def unary_unary(self, request, context, plan: _Rule, call_next):
        key = await self._authenticate(context)
        target = plan.target(request)
        if not await self._authorise(key, plan, target, context):
            return await _as_unknown_session(plan.method, target.id, context)
        return await call_next(request, context)

    async def stream_stream(self, requests, context, plan: _Rule, call_next):
        key = await self._authenticate(context)
        if plan.reads_first_message:
            peeked = await peek(requests)
            if peeked is None:  # no message: nothing to authorise beyond the method
                await self._authorise(key, plan, NO_TARGET, context)
                return
            first, requests = peeked
            target = plan.target(first)
            if not await self._authorise(key, plan, target, context):
                await _as_unknown_session(plan.method, target.id, context)
        else:
            await self._authorise(key, plan, NO_TARGET, context)
        async with contextlib.aclosing(call_next(requests, context)) as responses:
            async for response in responses:
                yield response

    # Other shapes name no knowledge base: the key and its role are checked.
    async def unary_stream(self, request, context, plan: _Rule, call_next):
        await self._authorise(await self._authenticate(context), plan, NO_TARGET, context)
        async with contextlib.aclosing(call_next(request, context)) as responses:
            async for response in responses:
                yield response

    async def stream_unary(self, requests, context, plan: _Rule, call_next):
        await self._authorise(await self._authenticate(context), plan, NO_TARGET, context)
        return await call_next(requests, context)

    # --- the steps -------------------------------------------------------------------------------
    async def _authenticate(self, context: grpc.aio.ServicerContext) -> ApiKey:
        """The caller's key; UNAUTHENTICATED if it sent none, a malformed one or an unknown one."""
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

    async def _authorise(self, key: ApiKey, rule: _Rule, target: Target, context: grpc.aio.ServicerContext) -> bool:
        """Abort unless `key` may make this call on `target`; then note who makes it.

        False when the call names a server-held session that is another key's: for this
        key it does not exist (the caller answers as for an unknown id).
        """
        await _authorise_method(key, rule, context)
        kb_id = target.id if target.kind == "kb" else None
        if target.kind == "session":
            session = await self._find_session(target.id, context)
            if session is not None:  # None: unknown or expired, the servicer answers NOT_FOUND
                owner, kb_id = session
                if not key.owns(owner):
                    return False
        if kb_id is not None:
            await _authorise_kb(key, kb_id, context)
        _note_caller(key, kb_id or "")
        return True

    async def _find_session(self, session_id: str, context: grpc.aio.ServicerContext) -> tuple[str, str] | None:
        """(owner, kb_id) of the live session `session_id`, or None; UNAVAILABLE if the store does not answer."""
        try:
            return await self._session_owner(session_id)
        except (StoreUnavailable, BackendTimeout) as exc:
            await _deny(context, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", str(exc))


async def _authorise_method(key: ApiKey, rule: _Rule, context: grpc.aio.ServicerContext) -> None:
    """PERMISSION_DENIED unless the key's role is at least the method's."""
    if key.role < rule.role:
        await _deny(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_INSUFFICIENT",
            f"API key {key.name!r} has role {key.role.name.lower()}; {rule.method} needs {rule.role.name.lower()}",
            {"keyName": key.name, "requiredRole": rule.role.name.lower()},
        )


async def _authorise_kb(key: ApiKey, kb_id: str, context: grpc.aio.ServicerContext) -> None:
    """PERMISSION_DENIED unless `kb_id` matches one of the key's patterns."""
    if not key.allows_kb(kb_id):
        await _deny(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "KB_NOT_ALLOWED",
            f"API key {key.name!r} may not use knowledge base {kb_id[:128]!r}",
            {"keyName": key.name, "kbId": kb_id[:128]},
        )


def _note_caller(key: ApiKey, kb_id: str) -> None:
    """Remember the caller for the rest of the call: a new session's owner, the access log."""
    _OWNER.set(key.name)
    info = request_context.current()
    if info is not None:
        info.principal, info.kb_id = key.name, kb_id


async def _as_unknown_session(
    method: str, session_id: str, context: grpc.aio.ServicerContext
) -> api.SessionExistsResponse:
    """Answer as for a session that does not exist: SessionExists says so, any other call is NOT_FOUND."""
    if method == "SessionExists":
        return api.SessionExistsResponse(exists=False, expired=False)
    await context.abort_with_status(rich_status(status_for_exception(SessionNotFound(session_id, False))))


async def _deny(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    reason: str,
    message: str,
    metadata: dict[str, str] | None = None,
) -> NoReturn:
    await context.abort_with_status(rich_status(KatoError(code, reason, message, metadata=metadata)))
