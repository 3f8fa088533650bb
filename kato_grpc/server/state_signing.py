"""Client-held state is the server's word: signed on the way out, verified on the way in.

A client-held `SessionState` travels through the client, so the client could edit it
and make the server learn whatever it likes into a knowledge base other clients share.
The server therefore signs every state it returns and refuses a state whose signature
is missing or does not match, like a session cookie.

The scheme, and why:

- ``signature = HMAC-SHA256(key, DOMAIN + bytes)``, where ``bytes`` is the state with
  ``signature_key_id`` and ``signature`` cleared, serialized by this server with
  ``deterministic=True``. On the way in the server parses the request, clears the two
  fields of the parsed state and serializes it the same way: the signature covers
  exactly the message the servicer then decodes, never bytes it does not read.
- It is a signature over the state's *content*, not over the bytes a client sent. Go
  and Node clients, and grpcurl through JSON, re-encode the messages they received;
  protobuf does not promise byte-identical encodings across languages (map order,
  packed or not, explicit zero values). Parsing and re-serializing deterministically
  on the server makes all lossless encodings of one state verify alike. A carrier
  that changes a value (a double's sign of zero, an unknown field dropped) changes
  the content and is refused, as it should be.
- Keys form a ring (`StateKeyRing`): the first key signs, every key verifies, and
  ``signature_key_id`` names the key that signed. Replicas given the same ring accept
  each other's states; a key is rotated by adding the new one everywhere, then moving
  it first, then (once no client holds an old state worth keeping) removing the old.
- The one unsigned state accepted is a fresh one (`is_fresh`): ``kb_id`` and
  ``config`` only, nothing observed. It holds nothing the client could not ask for
  through the API anyway (a new session with that configuration), and it lets
  ``{"kbId": "x"}`` start a session from grpcurl.
- A refusal is INVALID_ARGUMENT: the state is an argument of the request and it is
  bad; retrying it unchanged cannot succeed. UNAUTHENTICATED is kept for the caller's
  credentials (the API key), so a client can tell "your key is wrong" from "this state
  was altered". The ErrorInfo reason says which: ``STATE_SIGNATURE_MISSING``,
  ``STATE_SIGNATURE_INVALID``, or ``STATE_KEY_UNKNOWN`` (signed by a key this server
  does not hold: retired, or another deployment's).

Key ring file (``--state-keys-file``, JSON, readable by the server only)::

    {"keys": [{"id": "2026-12", "secret": "<64 hex digits>"}, {"id": "2026-06", "secret": "..."}]}

Without the flag the ring is ``<data-dir>/state-keys.json``, created with one random
key on first start (atomically, so workers starting together agree), so a restarted
single server keeps accepting the states it signed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.errors import FieldViolation
from kato_grpc.server.errors import KatoError, rich_status
from kato_grpc.server.handlers import Interceptor, Method

__all__ = [
    "StateKeyRing",
    "StateSignatureInterceptor",
    "is_fresh",
    "load_state_keys",
    "DEFAULT_KEYS_FILE",
    "MIN_SECRET_BYTES",
]

log = logging.getLogger("kato_grpc.state_signing")

DEFAULT_KEYS_FILE = "state-keys.json"
MIN_SECRET_BYTES = 16
_DOMAIN = b"kato.v1.SessionState\x00"  # a signature made for a state is good for nothing else
_SIGNATURE_FIELDS: tuple[Literal["signature_key_id"], Literal["signature"]] = ("signature_key_id", "signature")
_FRESH_FIELDS = frozenset({"kb_id", "config"})
KATO_SERVICE = api.DESCRIPTOR.services_by_name["KatoService"]


def is_fresh(state: pb.SessionState) -> bool:
    """Whether `state` holds only a kb id and a configuration (signature fields ignored).

    Unknown fields are allowed: the server neither reads nor returns them.
    """
    return all(field.name in _FRESH_FIELDS or field.name in _SIGNATURE_FIELDS for field, _ in state.ListFields())


class StateKeyRing:
    """HMAC keys by id; the first one signs, all of them verify."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a state key ring needs at least one key")
        ids = [key_id for key_id, _ in keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"state key ids must be unique: {ids}")
        for key_id, secret in keys:
            if not key_id:
                raise ValueError("a state key id must not be empty")
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"state key {key_id!r} has {len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed"
                )
        self._keys = dict(keys)
        self.signing_key_id = ids[0]

    @classmethod
    def from_file(cls, path: str | Path) -> StateKeyRing:
        """The ring of a keys file; ValueError saying what is wrong with it."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            entries = data["keys"]
            return cls([(str(entry["id"]), bytes.fromhex(entry["secret"])) for entry in entries])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"state keys file {str(path)!r}: {exc}") from None

    def _mac(self, key_id: str, state: pb.SessionState) -> bytes:
        content = state.SerializeToString(deterministic=True)
        return hmac.new(self._keys[key_id], _DOMAIN + content, hashlib.sha256).digest()

    def sign(self, state: pb.SessionState) -> None:
        """Set `state`'s signature fields (any old ones are replaced)."""
        for name in _SIGNATURE_FIELDS:
            state.ClearField(name)
        signature = self._mac(self.signing_key_id, state)
        state.signature_key_id = self.signing_key_id
        state.signature = signature

    def verify(self, state: pb.SessionState, field: str = "state") -> None:
        """Check `state`'s signature; KatoError (INVALID_ARGUMENT) if it does not hold.

        A fresh state (`is_fresh`) needs none.
        """
        key_id, signature = state.signature_key_id, state.signature
        if not key_id and not signature:
            if is_fresh(state):
                return
            raise _refusal(
                "STATE_SIGNATURE_MISSING",
                f"{field}.signature",
                "is missing: send back the state the server returned (only a fresh state, "
                "kb_id and config alone, may be unsigned)",
            )
        for name in _SIGNATURE_FIELDS:
            state.ClearField(name)
        try:
            self._check(state, key_id, signature, field)
        finally:  # the request is left as it came: later readers measure or log it
            state.signature_key_id, state.signature = key_id, signature

    def _check(self, state: pb.SessionState, key_id: str, signature: bytes, field: str) -> None:
        if is_fresh(state):
            return
        if not signature:
            raise _refusal(
                "STATE_SIGNATURE_MISSING",
                f"{field}.signature",
                "is missing: send back the state the server returned (only a fresh state, "
                "kb_id and config alone, may be unsigned)",
            )
        if key_id not in self._keys:
            raise _refusal(
                "STATE_KEY_UNKNOWN",
                f"{field}.signature_key_id",
                f"{key_id[:40]!r} is not a key of this server (retired or another deployment's): start a new session",
            )
        if not hmac.compare_digest(signature, self._mac(key_id, state)):
            raise _refusal(
                "STATE_SIGNATURE_INVALID",
                f"{field}.signature",
                "does not match the state: it was altered after the server returned it",
            )


def _refusal(reason: str, field: str, why: str) -> KatoError:
    return KatoError(grpc.StatusCode.INVALID_ARGUMENT, reason, f"{field}: {why}", (FieldViolation(field, why),))


def _create_default_keys(path: Path) -> None:
    """Write a one-key ring to `path` unless it exists (atomic: link, never overwrite)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ring = {"keys": [{"id": f"local-{secrets.token_hex(4)}", "secret": secrets.token_hex(32)}]}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(ring, out)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: keep theirs
            _publish(temporary, path)
            log.warning(
                "created a state signing key in %s: give every replica the same file "
                "(--state-keys-file) so they accept each other's client-held states",
                path,
            )
    finally:
        os.unlink(temporary)


def _publish(temporary: Path, path: Path) -> None:
    """Make `temporary` appear as `path`, complete, unless `path` exists (FileExistsError)."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: create exclusively, then write
        with open(path, "xb") as out:
            out.write(temporary.read_bytes())


def load_state_keys(settings) -> StateKeyRing:
    """The ring of ``--state-keys-file``, or the data directory's (created on first start)."""
    if settings.state_keys_file:
        return StateKeyRing.from_file(settings.state_keys_file)
    path = Path(settings.data_dir) / DEFAULT_KEYS_FILE
    if not path.exists():
        _create_default_keys(path)
    return StateKeyRing.from_file(path)


@dataclass(frozen=True)
class _Plan:
    """Where a KatoService method carries a session state."""

    takes_state: bool  # its request has the `session` oneof, whose `state` is client-held
    returns_state: bool  # its response has a `state` field


async def _verify(keys: StateKeyRing, state: pb.SessionState, field: str, context: grpc.aio.ServicerContext) -> None:
    """Abort the call with INVALID_ARGUMENT unless `state`'s signature holds."""
    try:
        keys.verify(state, field)
    except KatoError as error:
        await context.abort_with_status(rich_status(error))


class StateSignatureInterceptor(Interceptor):
    """Verifies the client-held state of every request and signs the state of every response."""

    def __init__(self, keys: StateKeyRing) -> None:
        super().__init__()
        self._keys = keys

    def prepare(self, method: Method, handler: grpc.RpcMethodHandler) -> _Plan | None:
        if method.service != KATO_SERVICE.full_name:
            return None
        descriptor = KATO_SERVICE.methods_by_name[method.name]
        return _Plan(
            takes_state="session" in descriptor.input_type.oneofs_by_name,
            returns_state="state" in descriptor.output_type.fields_by_name,
        )

    async def unary_unary(self, request, context, plan: _Plan, call_next):
        if plan.takes_state and request.WhichOneof("session") == "state":
            await _verify(self._keys, request.state, "state", context)
        response = await call_next(request, context)
        if plan.returns_state and response is not None and response.HasField("state"):
            self._keys.sign(response.state)
        return response

    async def stream_stream(self, requests, context, plan: _Plan, call_next):
        async with contextlib.aclosing(call_next(self._verified(requests, context), context)) as responses:
            async for response in responses:
                if response.HasField("closed"):
                    self._keys.sign(response.closed.state)
                yield response

    async def _verified(self, requests, context: grpc.aio.ServicerContext):
        """The stream's messages, the first one's client-held state verified as it is read."""
        first = True
        async for message in requests:
            if first and message.WhichOneof("step") == "open" and message.open.WhichOneof("session") == "state":
                await _verify(self._keys, message.open.state, "open.state", context)
            first = False
            yield message
