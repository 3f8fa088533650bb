"""What a request must hold before any work starts: ids, names, page tokens, sizes.

Each check raises `ValidationError` naming the field and the reason; none touches a
store. The servicer calls them first, so a bad request changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from typing import Any

import grpc

from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.errors import FieldViolation, ValidationError
from kato_grpc.core.learning import PATTERN_PREFIX, strip_prefix
from kato_grpc.server.errors import KatoError

_KB_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_NAME = re.compile(r"[0-9a-f]{40}")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_TTL_SECONDS = 2_592_000
MAX_REQUEST_ID_CHARS = 128


def validate_kb_id(kb_id: str, field: str = "kb_id") -> str:
    if not _KB_ID.fullmatch(kb_id or ""):
        raise ValidationError(FieldViolation(field, f"{kb_id[:40]!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -"))
    return kb_id


def bare_pattern_name(name: str, field: str = "name") -> str:
    bare = strip_prefix(name)
    if not _NAME.fullmatch(bare):
        raise ValidationError(
            FieldViolation(field, f"{name[:60]!r} must be 40 lowercase hex digits, optionally prefixed PTRN|")
        )
    return bare


def request_id_of(request) -> str:
    """The request's `request_id` ("" for none or a request without one), at most 128 characters."""
    request_id = getattr(request, "request_id", "")
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise ValidationError(
            FieldViolation(
                "request_id", f"{len(request_id)} characters exceed {MAX_REQUEST_ID_CHARS} (a UUID4 is recommended)"
            )
        )
    return request_id


def predicts_nothing(state: pb.SessionState) -> bool:
    """Whether a client-held state's session has predictions turned off (its Observe is short)."""
    return state.config.HasField("process_predictions") and not state.config.process_predictions


def client_origin(request, request_id: str) -> tuple[str, int] | None:
    """The key under which the knowledge base counts a client-held call's effects once.

    A client-held call is identified by its request id together with the method and the
    state it carries (its signature, or the fresh state itself): a retry sends both again,
    and two clients that happen to pick the same id never share a key.
    """
    if not request_id:
        return None
    identity = request.state.signature or request.state.SerializeToString(deterministic=True)
    digest = hashlib.sha256(b"\0".join((request.DESCRIPTOR.full_name.encode(), request_id.encode(), identity)))
    return "request:" + digest.hexdigest()[:40], 1


def pattern_not_found(kb_id: str, name: str) -> KatoError:
    return KatoError(
        grpc.StatusCode.NOT_FOUND,
        "PATTERN_NOT_FOUND",
        f"pattern {PATTERN_PREFIX}{name} is not in knowledge base {kb_id!r}",
        metadata={"kbId": kb_id, "patternName": name},
    )


def page_token(kb_id: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"kb": kb_id, "after": after}).encode()).decode()


def read_page_token(token: str, kb_id: str) -> str:
    if not token:
        return ""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["kb"] == kb_id:
            return str(data["after"])
    except (ValueError, KeyError, TypeError):
        pass
    raise ValidationError(
        FieldViolation(
            "page_token", f"is not a token this server issued for kb_id {kb_id!r}; pass next_page_token unchanged"
        )
    )


def page_size_of(request: Any) -> int:
    """A List call's page size: the default for 0, at most MAX_PAGE_SIZE."""
    if request.page_size < 0:
        raise ValidationError(FieldViolation("page_size", f"{request.page_size} must not be negative"))
    return int(min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE))


def ttl_of(ttl_seconds: int) -> int:
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValidationError(FieldViolation("ttl_seconds", f"{ttl_seconds} must be in [1, {MAX_TTL_SECONDS}]"))
    return ttl_seconds


PATTERN_FIELDS = frozenset({"frequency", "emotives", "metadata"})


def pattern_update_paths(request: Any) -> frozenset[str]:
    """The fields an UpdatePattern request replaces (its mask, else the fields it sets), checked."""
    if request.HasField("update_mask"):
        paths = set(request.update_mask.paths)
    else:
        present = {
            "frequency": request.frequency != 0,
            "emotives": len(request.emotives) > 0,
            "metadata": len(request.metadata) > 0,
        }
        paths = {path for path, given in present.items() if given}
    if "*" in paths:  # the proto documents `*` as all three
        paths = paths - {"*"} | PATTERN_FIELDS
    violations = [
        FieldViolation("update_mask", f"unknown path {p!r}; paths are frequency, emotives, metadata or *")
        for p in sorted(paths - PATTERN_FIELDS)
    ]
    if "frequency" in paths and request.frequency < 1:
        violations.append(FieldViolation("frequency", f"{request.frequency} must be >= 1"))
    if "emotives" in paths:
        if len(request.emotives) > 100:
            violations.append(FieldViolation("emotives", f"{len(request.emotives)} entries exceed 100"))
        for i, entry in enumerate(request.emotives):
            for key, value in entry.values.items():
                if not key or not math.isfinite(value):
                    violations.append(
                        FieldViolation(
                            f"emotives[{i}]", f"{key!r}: {value!r} needs a non-empty name and a finite value"
                        )
                    )
    if not paths:
        violations.append(FieldViolation("update_mask", "nothing to update: set frequency, emotives or metadata"))
    if violations:
        raise ValidationError(violations)
    return frozenset(paths)


def session_id_of(request: Any) -> str:
    """A session call's server-held session id; the `session` oneof must be set."""
    if request.WhichOneof("session") is None:
        raise ValidationError(FieldViolation("session", "set either state (client-held) or session_id (server-held)"))
    return str(request.session_id)
