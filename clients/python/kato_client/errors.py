"""Typed client errors: one class per gRPC code, rich details already decoded."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
    "KatoClientError", "InvalidArgument", "NotFound", "FailedPrecondition", "Aborted",
    "ResourceExhausted", "Unavailable", "DeadlineExceeded", "Unauthenticated", "PermissionDenied",
    "FieldViolation", "from_rpc_error",
]


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class KatoClientError(Exception):
    """A failed call: `code`, `message`, `reason` (ErrorInfo) and `field_violations`."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, reason: str = "", field_violations: tuple[FieldViolation, ...] = (),
                 metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field_violations = field_violations
        self.metadata = metadata or {}


class InvalidArgument(KatoClientError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(KatoClientError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(KatoClientError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(KatoClientError):
    code = grpc.StatusCode.ABORTED


class ResourceExhausted(KatoClientError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(KatoClientError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(KatoClientError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(KatoClientError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(KatoClientError):
    code = grpc.StatusCode.PERMISSION_DENIED


_BY_CODE = {cls.code: cls for cls in KatoClientError.__subclasses__()}


def from_rpc_error(error: grpc.RpcError) -> KatoClientError:
    """Decode a `grpc.RpcError` into the matching `KatoClientError` subclass."""
    violations: list[FieldViolation] = []
    reason, metadata = "", {}
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    cls = _BY_CODE.get(code, KatoClientError)
    exc = cls(error.details() if isinstance(error, grpc.Call) else str(error), reason, tuple(violations), metadata)
    if cls is KatoClientError:
        exc.code = code
    return exc
