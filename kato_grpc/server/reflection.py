"""Server reflection that serves the API reference: descriptors with their comments.

grpcio-reflection answers from the default descriptor pool, which re-serialises each
file without its source info (so ``grpcurl describe`` shows no comments) and cannot
find a method by its full name (``describe kato.v1.KatoService.Observe`` fails with
"Symbol not found"). This servicer answers from serialized `FileDescriptorProto`s
instead: ours with their comments (`kato_grpc._proto.serialized_files`), plus those of
the health and reflection services, indexed by every symbol a client may ask for.

It speaks both ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``: the two protos
are the same messages under another package, so one handler serves both, and the v1
file descriptor is the v1alpha one renamed.

>>> index = DescriptorIndex.default()
>>> index.file_containing_symbol("kato.v1.KatoService.Observe")[0]
'kato/v1/kato_service.proto'
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import grpc
from google.protobuf import descriptor_pb2, duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2 as ref

from kato_grpc._proto import serialized_files

__all__ = ["DescriptorIndex", "ReflectionServicer", "enable_server_reflection", "SERVICE_NAMES"]

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
SERVICE_NAMES = (V1, V1ALPHA)

FileProto = descriptor_pb2.FileDescriptorProto


def _file_of(module_descriptor) -> FileProto:
    proto = FileProto()
    module_descriptor.CopyToProto(proto)
    return proto


def _v1_reflection_file() -> FileProto:
    """The v1 reflection proto: the v1alpha one under the v1 package."""
    file = _file_of(ref.DESCRIPTOR)
    file.name, file.package = "grpc/reflection/v1/reflection.proto", "grpc.reflection.v1"
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    for field in (f for message in file.message_type for f in message.field if f.type_name):
        field.type_name = field.type_name.replace(old, new)
    for method in (m for service in file.service for m in service.method):
        method.input_type, method.output_type = (
            method.input_type.replace(old, new),
            method.output_type.replace(old, new),
        )
    return file


def _symbols(file: FileProto) -> Iterator[str]:
    """Every full name defined by a file: messages, fields, oneofs, enums, values, services, methods."""
    prefix = f"{file.package}." if file.package else ""

    def enums(scope: str, items) -> Iterator[str]:
        for enum in items:
            yield scope + enum.name
            yield from (scope + value.name for value in enum.value)  # values live beside their enum

    def messages(scope: str, items) -> Iterator[str]:
        for message in items:
            name = scope + message.name
            yield name
            yield from (f"{name}.{part.name}" for part in (*message.field, *message.oneof_decl, *message.extension))
            yield from enums(name + ".", message.enum_type)
            yield from messages(name + ".", message.nested_type)

    yield from messages(prefix, file.message_type)
    yield from enums(prefix, file.enum_type)
    yield from (prefix + ext.name for ext in file.extension)
    for service in file.service:
        yield prefix + service.name
        yield from (f"{prefix}{service.name}.{method.name}" for method in service.method)


def _extensions(file: FileProto) -> Iterator[tuple[str, int]]:
    """(extended message, field number) of every extension a file declares."""

    def nested(items) -> Iterator[descriptor_pb2.FieldDescriptorProto]:
        for message in items:
            yield from message.extension
            yield from nested(message.nested_type)

    for ext in (*file.extension, *nested(file.message_type)):
        yield ext.extendee.lstrip("."), ext.number


class DescriptorIndex:
    """Serialized file descriptors, found by file name, symbol or extension."""

    def __init__(self, files: Iterable[bytes]) -> None:
        self._bytes: dict[str, bytes] = {}
        self._deps: dict[str, list[str]] = {}
        self._by_symbol: dict[str, str] = {}
        self._by_extension: dict[tuple[str, int], str] = {}
        for data in files:
            file = FileProto.FromString(data)
            if file.name in self._bytes:
                continue
            self._bytes[file.name] = data
            self._deps[file.name] = list(file.dependency)
            self._by_symbol.update(dict.fromkeys(_symbols(file), file.name))
            self._by_extension.update(dict.fromkeys(_extensions(file), file.name))

    @classmethod
    def default(cls) -> DescriptorIndex:
        """Our protos with comments, then the health and reflection protos, and the
        error-detail protos so clients (grpcurl) can decode BadRequest and ErrorInfo."""
        extra = (
            _file_of(health_pb2.DESCRIPTOR),
            _file_of(ref.DESCRIPTOR),
            _v1_reflection_file(),
            _file_of(duration_pb2.DESCRIPTOR),
            _file_of(error_details_pb2.DESCRIPTOR),
        )
        return cls([*serialized_files().values(), *(f.SerializeToString(deterministic=True) for f in extra)])

    def _with_dependencies(self, name: str) -> list[str]:
        """`name` first, then every file it imports, transitively, each once."""
        order: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop(0)
            if current not in order and current in self._bytes:
                order.append(current)
                pending.extend(self._deps[current])
        return order

    def file_by_filename(self, name: str) -> list[str]:
        return self._with_dependencies(name) if name in self._bytes else []

    def file_containing_symbol(self, symbol: str) -> list[str]:
        name = self._by_symbol.get(symbol.lstrip("."))
        return self._with_dependencies(name) if name else []

    def file_containing_extension(self, extendee: str, number: int) -> list[str]:
        name = self._by_extension.get((extendee.lstrip("."), number))
        return self._with_dependencies(name) if name else []

    def extension_numbers(self, extendee: str) -> list[int]:
        return sorted(n for (base, n) in self._by_extension if base == extendee.lstrip("."))

    def serialized(self, names: Iterable[str]) -> list[bytes]:
        return [self._bytes[name] for name in names]


def _error(request: ref.ServerReflectionRequest, code: grpc.StatusCode, message: str) -> ref.ServerReflectionResponse:
    return ref.ServerReflectionResponse(
        original_request=request, error_response=ref.ErrorResponse(error_code=code.value[0], error_message=message)
    )


class ReflectionServicer:
    """Answers ServerReflectionInfo (v1 and v1alpha) from a `DescriptorIndex`."""

    def __init__(self, service_names: Iterable[str], index: DescriptorIndex | None = None) -> None:
        self._services = sorted(set(service_names))
        self._index = index or DescriptorIndex.default()

    def answer(self, request: ref.ServerReflectionRequest) -> ref.ServerReflectionResponse:
        """The response to one reflection request."""
        kind = request.WhichOneof("message_request")
        if kind == "list_services":
            return ref.ServerReflectionResponse(
                original_request=request,
                list_services_response=ref.ListServiceResponse(
                    service=[ref.ServiceResponse(name=name) for name in self._services]
                ),
            )
        if kind == "all_extension_numbers_of_type":
            base = request.all_extension_numbers_of_type
            return ref.ServerReflectionResponse(
                original_request=request,
                all_extension_numbers_response=(
                    ref.ExtensionNumberResponse(
                        base_type_name=base, extension_number=self._index.extension_numbers(base)
                    )
                ),
            )
        if kind == "file_by_filename":
            names, wanted = self._index.file_by_filename(request.file_by_filename), request.file_by_filename
        elif kind == "file_containing_symbol":
            names, wanted = (
                self._index.file_containing_symbol(request.file_containing_symbol),
                request.file_containing_symbol,
            )
        elif kind == "file_containing_extension":
            ext = request.file_containing_extension
            names = self._index.file_containing_extension(ext.containing_type, ext.extension_number)
            wanted = f"extension {ext.extension_number} of {ext.containing_type}"
        else:
            return _error(request, grpc.StatusCode.INVALID_ARGUMENT, "no request set in message_request")
        if not names:
            return _error(request, grpc.StatusCode.NOT_FOUND, f"{wanted} not found")
        return ref.ServerReflectionResponse(
            original_request=request,
            file_descriptor_response=ref.FileDescriptorResponse(file_descriptor_proto=self._index.serialized(names)),
        )

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[ref.ServerReflectionRequest], context
    ) -> AsyncIterator[ref.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)


def enable_server_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> ReflectionServicer:
    """Serve reflection (v1 and v1alpha) for `service_names` and itself on `server`."""
    servicer = ReflectionServicer([*service_names, *SERVICE_NAMES])
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=ref.ServerReflectionRequest.FromString,
        response_serializer=ref.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler}) for name in SERVICE_NAMES)
    )
    return servicer
