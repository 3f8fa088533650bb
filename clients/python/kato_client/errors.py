"""Typed client errors: one class per gRPC status code, rich details already decoded.

`from_rpc_error` turns a failed call into the class of its code, as python-api-core's
`from_grpc_error` does. The error keeps everything the server said:

- `code` and `message` (the status details string);
- `field_violations` from a `google.rpc.BadRequest` detail, and `reason` and `metadata`
  from a `google.rpc.ErrorInfo` detail (``SESSION_NOT_FOUND``, ``{"sessionId": ...}``);
- `retry_delay`, the seconds a `google.rpc.RetryInfo` detail asks to wait before a retry
  (None without one: the server sends it when it sheds a call it is too busy for);
- `details`, every detail message unpacked (unknown types stay `Any`);
- `request_id`, the server's ``x-request-id`` trailing metadata, to find the call in its logs;
- `trailing_metadata`, and the original `grpc.RpcError` as `response` and `__cause__`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
    "REQUEST_ID_HEADER",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "KatoClientError",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "error_class",
    "from_rpc_error",
]

REQUEST_ID_HEADER = "x-request-id"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class KatoClientError(Exception):
    """A failed call. Subclasses fix `code`; see the module docstring for the attributes."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        reason: str = "",
        field_violations: tuple[FieldViolation, ...] = (),
        metadata: dict[str, str] | None = None,
        *,
        details: tuple[Message, ...] = (),
        request_id: str = "",
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
        response: grpc.RpcError | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field_violations = field_violations
        self.metadata = metadata or {}
        self.details = details
        self.retry_delay = next(
            (d.retry_delay.ToNanoseconds() / 1e9 for d in details if isinstance(d, error_details_pb2.RetryInfo)), None
        )
        self.request_id = request_id
        self.trailing_metadata = trailing_metadata
        self.response = response


class Cancelled(KatoClientError):
    code = grpc.StatusCode.CANCELLED


class Unknown(KatoClientError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(KatoClientError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(KatoClientError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(KatoClientError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(KatoClientError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(KatoClientError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(KatoClientError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(KatoClientError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(KatoClientError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(KatoClientError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(KatoClientError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(KatoClientError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(KatoClientError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(KatoClientError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(KatoClientError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[KatoClientError]] = {cls.code: cls for cls in KatoClientError.__subclasses__()}


def error_class(code: grpc.StatusCode) -> type[KatoClientError]:
    """The error class of a status code (every code but OK has one).

    >>> error_class(grpc.StatusCode.NOT_FOUND).__name__
    'NotFound'
    """
    return _BY_CODE.get(code, KatoClientError)


_KNOWN_DETAILS: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.QuotaFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


def _unpack(detail: any_pb2.Any) -> Message:
    for cls in _KNOWN_DETAILS:
        message = cls()
        if detail.Unpack(message):  # False when the detail holds another type
            return message
    return detail


def from_rpc_error(error: grpc.RpcError) -> KatoClientError:
    """The `KatoClientError` subclass of the failed call's code, with its details decoded.

    Raise it ``from error`` so the original stays the cause.
    """
    if not isinstance(error, grpc.Call):  # not a finished call: nothing more to decode
        return Unknown(str(error), response=error)
    status = rpc_status.from_call(error)
    details = tuple(_unpack(detail) for detail in status.details) if status else ()
    violations: list[FieldViolation] = []
    reason, info_metadata = "", {}
    for detail in details:
        if isinstance(detail, error_details_pb2.BadRequest):
            violations += [FieldViolation(v.field, v.description) for v in detail.field_violations]
        elif isinstance(detail, error_details_pb2.ErrorInfo):
            reason, info_metadata = detail.reason, dict(detail.metadata)
    trailing = tuple((key, value) for key, value in error.trailing_metadata() or ())
    request_id = next((value for key, value in trailing if key == REQUEST_ID_HEADER and isinstance(value, str)), "")
    return error_class(error.code())(
        error.details() or "",
        reason,
        tuple(violations),
        info_metadata,
        details=details,
        request_id=request_id,
        trailing_metadata=trailing,
        response=error,
    )
