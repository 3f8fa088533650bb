"""A request that does not decode is INVALID_ARGUMENT saying what failed, never UNKNOWN (issue 13).

Raw bytes through a generic channel against the shared real server: invalid UTF-8 in a
string field, metadata nested 60 and 5,000 levels deep, garbage and truncated bodies,
and an undecodable message in the middle of a stream. The server stays healthy.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import types_pb2 as pb


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def nested_metadata(levels: int) -> bytes:
    """An ObserveRequest whose observation.metadata is {"a": {"a": ... {}}}, `levels` deep."""
    struct = b""
    for _ in range(levels):
        entry = _len_field(1, b"a") + _len_field(2, _len_field(5, struct))  # key, Value{struct_value}
        struct = _len_field(1, entry)  # Struct.fields
    request = api.ObserveRequest(state=pb.SessionState(kb_id="undecodable")).SerializeToString()
    return request + _len_field(3, _len_field(4, struct))  # observation.metadata


def bad_utf8_strings() -> bytes:
    observation = _len_field(1, b"fine") + _len_field(1, b"\xc3\x28")
    return api.ObserveRequest(state=pb.SessionState(kb_id="undecodable")).SerializeToString() + _len_field(
        3, observation
    )


@pytest.fixture(scope="module")
def channel(kato_server):
    with grpc.insecure_channel(kato_server.target) as channel:
        yield channel


def raw_call(channel, method: str, body: bytes) -> grpc.RpcError:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as raised:
        call(body, timeout=30)
    return raised.value


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    for detail in rpc_status.from_call(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return [(v.field, v.description) for v in bad.field_violations]
    return []


@pytest.mark.parametrize(
    "method, body, field, why",
    [
        ("/kato.v1.KatoService/Observe", bad_utf8_strings(), "observation.strings[1]", "not valid UTF-8"),
        ("/kato.v1.KatoService/GetPattern", _len_field(1, b"kb\xff"), "kb_id", "not valid UTF-8"),
        ("/kato.v1.KatoService/Observe", nested_metadata(60), "observation.metadata", "nested deeper than 100"),
        ("/kato.v1.KatoService/Observe", nested_metadata(5000), "observation.metadata", "nested deeper than 100"),
        ("/kato.v1.KatoService/Learn", b"\xff\xff\xff\xff", "", "truncated or malformed"),
        ("/kato.v1.KatoService/Learn", _len_field(1, b"\x0a\x05ab"), "state.kb_id", "truncated"),
        ("/kato.v1.KatoService/CreateSession", b"\x0b\x14", "kb_id", "never started"),
        ("/grpc.health.v1.Health/Check", b"\x0a\x01\xff", "service", "not valid UTF-8"),
    ],
)
def test_an_undecodable_request_is_invalid_argument_naming_what_failed(channel, method, body, field, why):
    error = raw_call(channel, method, body)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert why in error.details() and "is not a valid" in error.details()
    found = violations(error) if method.startswith("/kato") else [(field, why)]
    assert found and found[0][0].startswith(field or "(request)") and why in found[0][1], found


def test_an_undecodable_stream_message_ends_the_stream_with_invalid_argument(channel):
    stream = channel.stream_stream(
        "/kato.v1.KatoService/StreamObservations", request_serializer=None, response_deserializer=None
    )
    opening = api.StreamObservationsRequest(open=api.StreamOpen(state=pb.SessionState(kb_id="undecodable")))
    bad = _len_field(2, _len_field(1, b"\xed\xa0\x80"))  # observation.strings[0]: a UTF-16 surrogate
    responses = stream(iter([opening.SerializeToString(), bad]), timeout=30)
    assert api.StreamObservationsResponse.FromString(next(responses)).HasField("opened")
    with pytest.raises(grpc.RpcError) as raised:
        next(responses)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "observation.strings[0]: is not valid UTF-8" in raised.value.details()


def test_the_server_stays_healthy(channel):
    raw_call(channel, "/kato.v1.KatoService/Observe", nested_metadata(5000))
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
