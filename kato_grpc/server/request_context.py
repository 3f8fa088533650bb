"""Per-call context: a request id, the access log, and the log format.

`RequestContextInterceptor` is the outermost interceptor. For every call it

- takes the caller's ``x-request-id`` metadata (printable ASCII, at most 128 characters)
  or makes one (32 hex digits), keeps it in a `contextvars.ContextVar` for the rest of
  the call, and returns it as ``x-request-id`` trailing metadata, on failures too: the
  servicer and inner interceptors get a context whose ``abort``,
  ``abort_with_status`` and ``set_trailing_metadata`` keep it in whatever trailing
  metadata they send. (Initial metadata would be simpler, but sending it ahead of the
  response costs a separate write: about 12% more CPU per Observe, measured.)
- writes one access-log line when the call ends (logger ``kato_grpc.access``): method,
  status code, duration, request id, the API key name and kb id when auth is on, and
  ``trace_id`` when the call has a trace (tracing.py's span, or with tracing off the
  caller's valid ``traceparent``).
  With ``--access-log`` every call logs at INFO (health and reflection at DEBUG);
  without it, calls log at DEBUG, except those ending with a server-side failure
  (UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS, ABORTED), which log at WARNING, and those
  the client gave up on (CANCELLED, DEADLINE_EXCEEDED: its impatience, not a fault), which
  log at INFO, one line, no traceback. (A line per call costs about 15% of an Observe's
  CPU time, measured.)

Logs never carry symbols, metadata or status messages (which may quote user data)
unless the level is DEBUG. Even at DEBUG, call metadata is logged through an
allow-list (`LOGGED_METADATA_KEYS`: request id, user agent, grpc transport headers);
every other key is logged with its value ``[redacted]``, so a credential is never
logged whatever header carries it.

``--log-format json`` turns every log line of the process into one JSON object per
line: ``ts`` (RFC 3339 UTC), ``level``, ``logger``, ``message``, ``request_id`` (when
logged during a call) and the access-log fields.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

from kato_grpc.server.handlers import Interceptor, Method, around

__all__ = [
    "CallInfo",
    "current",
    "current_request_id",
    "RequestContextInterceptor",
    "configure_logging",
    "JsonFormatter",
    "REQUEST_ID_HEADER",
    "LOG_FORMATS",
    "LOGGED_METADATA_KEYS",
]

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID = 128
LOG_FORMATS = ("text", "json")
QUIET_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)
# Call metadata logged at DEBUG: only these keys show their values. Any other key
# (authorization, x-api-key, cookies, a proxy's own token header...) shows `[redacted]`:
# an allow-list, because a deny-list cannot know every name a credential travels under.
LOGGED_METADATA_KEYS = frozenset(
    {
        REQUEST_ID_HEADER,
        "user-agent",
        "grpc-accept-encoding",
        "grpc-encoding",
        "grpc-timeout",
        "content-type",
        "te",
        ":authority",
        "x-forwarded-for",
        "x-real-ip",
    }
)
SERVER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.ABORTED,
    }
)
CLIENT_GAVE_UP = frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED})

access_log = logging.getLogger("kato_grpc.access")


@dataclass
class CallInfo:
    """What is known about the current call; later interceptors fill in their parts."""

    request_id: str
    method: str
    principal: str = ""  # the API key's name, set by auth
    kb_id: str = ""  # the knowledge base the call was authorised for, set by auth
    state_bytes: int | None = None  # serialized SessionState size, set by state_size
    reason: str = ""  # the ErrorInfo reason the call was refused with, set by errors.rich_status
    trace_id: str = ""  # the call's trace, set by tracing when it is on


_CALL: ContextVar[CallInfo | None] = ContextVar("kato_call", default=None)


def current() -> CallInfo | None:
    """The current call's info, or None outside a call."""
    return _CALL.get()


def current_request_id() -> str:
    info = _CALL.get()
    return info.request_id if info is not None else ""


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id_in(metadata) -> str:
    """The trace id of a valid W3C ``traceparent`` in the metadata, or "" (tracing off or on)."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            match = _TRACEPARENT.fullmatch(value.strip())
            if match and match.group(1) != "0" * 32:
                return match.group(1)
    return ""


def _valid_request_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable()


def _incoming_request_id(metadata) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and _valid_request_id(value):
            return value
    return secrets.token_hex(16)


def _safe_metadata(metadata) -> list[tuple[str, str]]:
    """The call's metadata for a log line: values of `LOGGED_METADATA_KEYS` only."""
    return [
        (
            key,
            (value if isinstance(value, str) else f"<{len(value)} bytes>")
            if key in LOGGED_METADATA_KEYS
            else "[redacted]",
        )
        for key, value in metadata or ()
    ]


class RequestContextInterceptor(Interceptor):
    """Gives each call a request id and writes its access-log line."""

    def __init__(self, logger: logging.Logger = access_log, *, every_call: bool = False) -> None:
        super().__init__()
        self._log = logger
        self._every_call = every_call

    def wrap(self, method: Method, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        full_name, name = method.full_name, method.name
        level = logging.INFO if self._every_call and method.service not in QUIET_SERVICES else logging.DEBUG
        log = self._log

        async def start(context: grpc.aio.ServicerContext):
            metadata = context.invocation_metadata()
            info = CallInfo(request_id=_incoming_request_id(metadata), method=full_name)
            _CALL.set(info)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "call started",
                    extra={"method": full_name, "metadata": _safe_metadata(metadata), "peer": context.peer()},
                )
            return info, time.perf_counter()

        def inner_context(context: grpc.aio.ServicerContext, token) -> _KeepingContext:
            return _KeepingContext(context, ((REQUEST_ID_HEADER, token[0].request_id),))

        def finish(context: grpc.aio.ServicerContext, token, code: grpc.StatusCode) -> None:
            info, started = token
            line_level = (
                logging.WARNING
                if code in SERVER_FAILURES
                else max(level, logging.INFO)
                if code in CLIENT_GAVE_UP
                else level
            )
            if not log.isEnabledFor(line_level):
                return
            fields: dict[str, Any] = {
                "method": full_name,
                "code": code.name,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            if info.principal:
                fields["key_name"] = info.principal
            if info.kb_id:
                fields["kb_id"] = info.kb_id
            if info.state_bytes is not None:
                fields["state_bytes"] = info.state_bytes
            trace_id = info.trace_id or trace_id_in(context.invocation_metadata())
            if trace_id:
                fields["trace_id"] = trace_id
            if log.isEnabledFor(logging.DEBUG) and code is not grpc.StatusCode.OK:
                fields["details"] = context.details()
            log.log(line_level, "%s %s %.1fms", name, code.name, fields["duration_ms"], extra=fields)

        return around(handler, start, finish, inner_context)


class _KeepingContext:
    """A call's servicer context that keeps `extra` in any trailing metadata sent.

    ``abort`` sends the status at once, so the request id must be in the trailing
    metadata it is given; everything else is the wrapped context's.
    """

    __slots__ = ("_context", "_extra")

    def __init__(self, context: grpc.aio.ServicerContext, extra: tuple[tuple[str, str], ...]) -> None:
        self._context = context
        self._extra = extra
        context.set_trailing_metadata(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_trailing_metadata(self, trailing_metadata) -> None:
        self._context.set_trailing_metadata((*trailing_metadata, *self._extra))

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        # Empty trailing metadata makes grpc send what was set before, extra included.
        await self._context.abort(code, details, (*trailing_metadata, *self._extra) if trailing_metadata else ())

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)


# --- log formats ---------------------------------------------------------------------------

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the call's request id and any `extra=` fields included."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """The classic line, then the call's request id and any `extra=` fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        ]
        request_id = current_request_id()
        if request_id and "request_id" not in record.__dict__:
            fields.insert(0, f"request_id={request_id}")
        return f"{line} {' '.join(fields)}" if fields else line


def configure_logging(level: str, log_format: str = "text", stream=None) -> None:
    """Set the root logger's level and format (`text` or `json`), replacing its handlers."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
