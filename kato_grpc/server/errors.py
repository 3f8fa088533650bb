"""One place that turns domain exceptions into gRPC statuses with rich details.

Every rejection carries a message naming the field and the reason, a
`google.rpc.BadRequest` listing every field violation, and an `ErrorInfo` whose
`reason` is an UPPER_SNAKE code a client can branch on (AIP-193). A refusal the
client should retry later (the server is overloaded) also carries a
`google.rpc.RetryInfo` with the delay to wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import overload

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from kato_grpc.core.errors import EmptyStmError, FieldViolation, LimitExceeded, NotFoundError, ValidationError
from kato_grpc.server import request_context
from kato_grpc.server.execution import Overloaded

__all__ = ["KatoError", "rich_status", "status_message", "status_for_exception", "DOMAIN"]

DOMAIN = "kato.v1"


class KatoError(Exception):
    """A service-level failure with its gRPC code, reason and optional violations."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        violations: Iterable[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})
        self.retry_delay = retry_delay  # seconds: sent as RetryInfo (None: none sent)


def _pack(message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def rich_status(error: KatoError) -> grpc.Status:
    """A `grpc.Status` carrying BadRequest (when there are violations) and ErrorInfo;
    the reason is noted on the current call for the metrics."""
    info = request_context.current()
    if info is not None:
        info.reason = error.reason
    return rpc_status.to_status(status_message(error))


def status_message(error: KatoError) -> status_pb2.Status:
    """The `google.rpc.Status` of an error, with BadRequest and ErrorInfo details."""
    details = []
    if error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.violations
                    ]
                )
            )
        )
    details.append(_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)))
    if error.retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(error.retry_delay * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=getattr(code_pb2, error.code.name), message=error.message, details=details)


@overload
def status_for_exception(
    exc: KatoError | Overloaded | ValidationError | EmptyStmError | NotFoundError,
) -> KatoError: ...
@overload
def status_for_exception(exc: BaseException) -> KatoError | None: ...
def status_for_exception(exc: BaseException) -> KatoError | None:
    """Map a domain exception to a `KatoError`, or None if it is not a domain error."""
    if isinstance(exc, KatoError):
        return exc
    if isinstance(exc, Overloaded):
        return KatoError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, exc.reason, str(exc), metadata=exc.metadata, retry_delay=exc.retry_after
        )
    if isinstance(exc, LimitExceeded):
        return KatoError(grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED", str(exc), exc.violations)
    if isinstance(exc, ValidationError):
        return KatoError(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", str(exc), exc.violations)
    if isinstance(exc, EmptyStmError):
        return KatoError(grpc.StatusCode.FAILED_PRECONDITION, "EMPTY_STM", str(exc))
    if isinstance(exc, NotFoundError):
        reason = getattr(exc, "reason", "NOT_FOUND")
        return KatoError(grpc.StatusCode.NOT_FOUND, reason, str(exc), metadata=getattr(exc, "metadata", None))
    return None


def map_exception(exc: BaseException) -> KatoError | None:
    """The status a call ends with for `exc`: a domain error, a back end's trouble, a
    passed deadline, a replayed request; None for anything else (a bug: re-raised)."""
    from kato_grpc.server.execution import BackendTimeout, DeadlineExceeded
    from kato_grpc.sessions.base import StoreUnavailable
    from kato_grpc.sessions.request_ids import RequestAlreadyApplied
    from kato_grpc.sessions.runner import ConflictExhausted

    if isinstance(exc, ConflictExhausted):
        return KatoError(grpc.StatusCode.ABORTED, "CONFLICT", str(exc))
    if isinstance(exc, (StoreUnavailable, BackendTimeout)):
        return KatoError(grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", str(exc))
    if isinstance(exc, DeadlineExceeded):
        return KatoError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", str(exc))
    if isinstance(exc, RequestAlreadyApplied):
        return KatoError(grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ALREADY_APPLIED", str(exc), metadata=exc.metadata)
    return status_for_exception(exc)
