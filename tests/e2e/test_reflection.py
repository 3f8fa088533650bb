"""Server reflection, asked directly: both protocol versions, comments included."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as ref

Request = ref.ServerReflectionRequest


def ask(target: str, service: str, *requests: Request) -> list[ref.ServerReflectionResponse]:
    """Send `requests` on one ServerReflectionInfo stream of `service`; the responses in order."""
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=Request.SerializeToString,
            response_deserializer=ref.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=10))


def files(response: ref.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in response.file_descriptor_response.file_descriptor_proto
    ]


@pytest.mark.parametrize("service", ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
def test_both_versions_answer_every_kind_of_request(kato_server, service):
    listed, method, field, enum_value, by_file, extension, numbers = ask(
        kato_server.target,
        service,
        Request(list_services=""),
        Request(file_containing_symbol="kato.v1.KatoService.Observe"),
        Request(file_containing_symbol="kato.v1.Observation.strings"),
        Request(file_containing_symbol="grpc.health.v1.HealthCheckResponse.SERVING"),
        Request(file_by_filename="kato/v1/types.proto"),
        Request(
            file_containing_extension=ref.ExtensionRequest(
                containing_type="google.protobuf.FieldOptions", extension_number=1052
            )
        ),
        Request(all_extension_numbers_of_type="google.protobuf.FieldOptions"),
    )
    assert [s.name for s in listed.list_services_response.service] == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "kato.v1.KatoService",
    ]

    first, *dependencies = files(method)
    assert first.name == "kato/v1/kato_service.proto"
    assert first.source_code_info.location, "comments (source info) must be served"
    assert {"kato/v1/types.proto", "google/api/field_behavior.proto"} <= {d.name for d in dependencies}

    assert files(field)[0].name == "kato/v1/types.proto"
    assert files(enum_value)[0].package == "grpc.health.v1"
    assert files(by_file)[0].name == "kato/v1/types.proto"
    assert files(extension)[0].name == "google/api/field_behavior.proto"
    assert 1052 in numbers.all_extension_numbers_response.extension_number


def test_unknown_symbols_and_files_are_not_found(kato_server):
    for response in ask(
        kato_server.target,
        "grpc.reflection.v1.ServerReflection",
        Request(file_containing_symbol="kato.v1.Nope"),
        Request(file_by_filename="nope.proto"),
        Request(
            file_containing_extension=ref.ExtensionRequest(containing_type="kato.v1.Observation", extension_number=99)
        ),
    ):
        assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
        assert response.error_response.error_message.endswith("not found")


def test_the_v1_reflection_service_describes_itself(kato_server):
    (response,) = ask(
        kato_server.target,
        "grpc.reflection.v1.ServerReflection",
        Request(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    )
    (file,) = files(response)
    assert file.package == "grpc.reflection.v1"
    assert file.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_reflection_answers_over_a_small_max_request_bytes(start_server):
    """Descriptors with comments are ~160 kB: the request limit must not cap responses."""
    server = start_server("--max-request-bytes", "65536")
    (response,) = ask(
        server.target, "grpc.reflection.v1.ServerReflection", Request(file_containing_symbol="kato.v1.KatoService")
    )
    assert response.ByteSize() > 65536
    assert files(response)[0].name == "kato/v1/kato_service.proto"
