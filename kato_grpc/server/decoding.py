"""Requests that do not decode are INVALID_ARGUMENT, saying what failed, never UNKNOWN.

grpc parses a request with the handler's ``request_deserializer`` before any of our
code runs; when protobuf refuses the bytes, grpc answers UNKNOWN ("Unexpected
DecodeError") and the client cannot tell bad input from a server bug. So
`DecodeInterceptor` gives every handler a deserializer that never raises: bytes that
do not parse become an `Undecodable` value, and the wrapped behavior answers it with
INVALID_ARGUMENT (reason ``UNDECODABLE_REQUEST``, a `BadRequest` naming the field).

protobuf's own error says only "Error parsing message". `diagnose` walks the wire
format once more, only for a request that failed, to say which field and why: a string
that is not valid UTF-8, messages nested deeper than protobuf's limit of 100 (a
`Struct` nested ~33 levels deep reaches it: each level is three messages), a truncated
or malformed body.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from kato_grpc.core.errors import FieldViolation
from kato_grpc.server.errors import KatoError, rich_status
from kato_grpc.server.handlers import Interceptor, Method

__all__ = ["DecodeInterceptor", "Undecodable", "diagnose", "MAX_DEPTH"]

MAX_DEPTH = 100  # protobuf's default recursion limit (upb and the C++ runtime)


@dataclass(frozen=True)
class Undecodable:
    """The bytes of a request that did not parse, and what was wrong with them."""

    field: str
    reason: str

    def error(self, type_name: str) -> KatoError:
        message = (
            f"the request is not a valid {type_name}: {self.field}: {self.reason}"
            if self.field
            else f"the request is not a valid {type_name}: {self.reason}"
        )
        return KatoError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNDECODABLE_REQUEST",
            message,
            (FieldViolation(self.field or "(request)", self.reason),),
        )


class _Malformed(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _varint(data: bytes, pos: int, end: int, field: str) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _Malformed(field, "is truncated or malformed (a varint runs past its end)")


def _walk(
    descriptor: Descriptor | None, data: bytes, pos: int, end: int, path: str, depth: int, group: int | None = None
) -> int:
    """Check the fields in data[pos:end] (or up to the end of `group`); the position reached."""
    if depth > MAX_DEPTH:
        raise _Malformed(path, f"messages are nested deeper than {MAX_DEPTH} levels")
    counts: dict[int, int] = {}
    while pos < end:
        tag, pos = _varint(data, pos, end, path or "(request)")
        number, wire_type = tag >> 3, tag & 7
        field = descriptor.fields_by_number.get(number) if descriptor is not None else None
        name = field.name if field is not None else f"<field {number}>"
        if field is not None and field.is_repeated:
            name = f"{name}[{counts.get(number, 0)}]"
            counts[number] = counts.get(number, 0) + 1
        where = f"{path}.{name}" if path else name
        if number == 0:
            raise _Malformed(path or "(request)", "holds field number 0, which no message has")
        if wire_type == 0:
            _, pos = _varint(data, pos, end, where)
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
            if pos > end:
                raise _Malformed(where, "is truncated")
        elif wire_type == 2:
            length, pos = _varint(data, pos, end, where)
            if pos + length > end:
                raise _Malformed(where, f"is truncated: {length} bytes announced, {end - pos} left")
            if field is not None and field.type == FieldDescriptor.TYPE_STRING:
                try:
                    data[pos : pos + length].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _Malformed(where, f"is not valid UTF-8 (byte {exc.start} of the string)") from None
            elif field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                _walk(field.message_type, data, pos, pos + length, where, depth + 1)
            pos += length
        elif wire_type == 3:  # a group (proto2): its fields are unknown here, its nesting counts
            pos = _walk(None, data, pos, end, where, depth + 1, group=number)
        elif wire_type == 4:
            if group != number:
                raise _Malformed(where, "ends a group that was never started")
            return pos
        else:
            raise _Malformed(where, f"has wire type {wire_type}, which does not exist")
    if group is not None:
        raise _Malformed(path, "is a group that never ends")
    return pos


def diagnose(descriptor: Descriptor, data: bytes) -> Undecodable:
    """Why `data` is not a valid message of `descriptor`: the first problem found."""
    try:
        _walk(descriptor, data, 0, len(data), "", 1)
    except _Malformed as problem:
        return Undecodable(problem.field if problem.field != "(request)" else "", problem.reason)
    return Undecodable("", "the body is not a valid protobuf encoding of it")


def _safe_deserializer(message_class: Any) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except Exception:
            return diagnose(message_class.DESCRIPTOR, data)

    return deserialize


async def _refuse(context: grpc.aio.ServicerContext, request: Undecodable, message_class: Any) -> NoReturn:
    await context.abort_with_status(rich_status(request.error(message_class.DESCRIPTOR.full_name)))


async def _checked(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, message_class: Any
) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            await _refuse(context, request, message_class)
        yield request


class DecodeInterceptor(Interceptor):
    """Answers a request that does not decode with INVALID_ARGUMENT naming what failed.

    It runs before auth: auth reads the knowledge base out of the request, so a body
    that does not decode cannot be authorised either, and is refused as it is. Its plan
    for a method is the method's request message class.
    """

    def prepare(self, method: Method, handler: grpc.RpcMethodHandler) -> Any:
        """The generated message class whose ``FromString`` the handler deserializes with,
        or None (anything else is left alone)."""
        message_class = getattr(handler.request_deserializer, "__self__", None)
        return message_class if hasattr(message_class, "DESCRIPTOR") else None

    def request_deserializer(self, message_class: Any) -> Callable[[bytes], Any]:
        return _safe_deserializer(message_class)

    async def unary_unary(self, request, context, plan, call_next):
        if isinstance(request, Undecodable):
            await _refuse(context, request, plan)
        return await call_next(request, context)

    async def unary_stream(self, request, context, plan, call_next):
        if isinstance(request, Undecodable):
            await _refuse(context, request, plan)
        async with contextlib.aclosing(call_next(request, context)) as responses:
            async for response in responses:
                yield response

    async def stream_unary(self, requests, context, plan, call_next):
        return await call_next(_checked(requests, context, plan), context)

    async def stream_stream(self, requests, context, plan, call_next):
        async with contextlib.aclosing(call_next(_checked(requests, context, plan), context)) as responses:
            async for response in responses:
                yield response
