"""Request ids and structured logs (kato_grpc/server/request_context.py), on real servers."""

from __future__ import annotations

import json
import re
import uuid

import grpc
import pytest
from grpc_status import rpc_status

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from tests.support.server import ServerProcess

SECRET_SYMBOL = "symbol-that-must-not-be-logged"


def observe(target: str, request_id: str | None = None, symbol: str = SECRET_SYMBOL):
    metadata = [("x-request-id", request_id)] if request_id else None
    with grpc.insecure_channel(target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        return stub.Observe.with_call(
            api.ObserveRequest(
                state=pb.SessionState(kb_id=f"log-{uuid.uuid4().hex[:8]}"), observation=pb.Observation(strings=[symbol])
            ),
            metadata=metadata,
            timeout=30,
        )


def json_lines(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in server.output if line.startswith("{")]


def wait_for_line(server: ServerProcess, needle: str) -> None:
    server.wait_for_output(needle)


@pytest.fixture(scope="module")
def json_server(tmp_path_factory):
    server = ServerProcess(
        ["--data-dir", str(tmp_path_factory.mktemp("json-logs")), "--log-format", "json", "--access-log", "true"]
    ).start()
    yield server
    server.stop()


def test_a_request_id_is_made_and_returned(kato_server):
    _, call = observe(kato_server.target)
    (request_id,) = [v for k, v in call.trailing_metadata() if k == "x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)


def test_the_callers_request_id_is_kept(kato_server):
    _, call = observe(kato_server.target, "req-abc-123")
    trailing = [tuple(m) for m in call.trailing_metadata()]
    assert ("x-request-id", "req-abc-123") in trailing
    assert "x-kato-state-bytes" in dict(trailing)  # both survive


def test_a_failed_call_returns_its_request_id_too(kato_server):
    with grpc.insecure_channel(kato_server.target) as channel, pytest.raises(grpc.RpcError) as raised:
        api_grpc.KatoServiceStub(channel).ListPatterns(
            api.ListPatternsRequest(kb_id="no spaces allowed"), metadata=[("x-request-id", "req-failed-1")]
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ("x-request-id", "req-failed-1") in [tuple(m) for m in raised.value.trailing_metadata()]
    # The rich error details are still there.
    status = rpc_status.from_call(raised.value)
    assert status is not None and status.details


def test_a_stream_returns_its_request_id(kato_server):
    with grpc.insecure_channel(kato_server.target) as channel:
        call = api_grpc.KatoServiceStub(channel).StreamObservations(
            iter([api.StreamObservationsRequest(open=api.StreamOpen(state=pb.SessionState(kb_id="log-stream")))]),
            metadata=[("x-request-id", "req-s")],
        )
        assert [a.WhichOneof("answer") for a in call] == ["opened", "closed"]
        assert ("x-request-id", "req-s") in [tuple(m) for m in call.trailing_metadata()]


def test_an_invalid_request_id_is_replaced(kato_server):
    _, call = observe(kato_server.target, "x" * 200)
    (request_id,) = [v for k, v in call.trailing_metadata() if k == "x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)


def test_json_logs_carry_the_request_id_and_no_symbols(json_server):
    observe(json_server.target, "req-json-1")
    wait_for_line(json_server, "req-json-1")
    (line,) = [entry for entry in json_lines(json_server) if entry.get("request_id") == "req-json-1"]
    assert line["logger"] == "kato_grpc.access"
    assert line["level"] == "INFO"
    assert line["method"] == "/kato.v1.KatoService/Observe"
    assert line["code"] == "OK"
    assert line["duration_ms"] >= 0
    assert line["state_bytes"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert SECRET_SYMBOL not in "".join(json_server.output)


def test_every_line_is_json(json_server):
    observe(json_server.target, "req-json-2")
    wait_for_line(json_server, "req-json-2")
    for line in json_server.output:
        if not line.startswith("kato-grpc "):  # the supervisor lines: "listening on", "stopped"
            json.loads(line)


def test_error_details_are_logged_only_at_debug(tmp_path):
    """A status message may quote user input: INFO logs the code, DEBUG the message too."""
    bad = "x" * 20 + " not a kb id"
    for level, expect in (("INFO", False), ("DEBUG", True)):
        server = ServerProcess(
            ["--data-dir", str(tmp_path / level), "--log-level", level, "--access-log", "true"]
        ).start()
        try:
            with grpc.insecure_channel(server.target) as channel:
                stub = api_grpc.KatoServiceStub(channel)
                with pytest.raises(grpc.RpcError):
                    stub.ListPatterns(api.ListPatternsRequest(kb_id=bad), metadata=[("x-request-id", f"req-{level}")])
                # A fence: its line is logged after every line of the call above.
                stub.ListPatterns(api.ListPatternsRequest(kb_id="fence"), metadata=[("x-request-id", f"fence-{level}")])
            wait_for_line(server, f"fence-{level}")
            assert (bad in "".join(server.output)) is expect
        finally:
            server.stop()


def test_an_unknown_log_format_stops_the_server_at_start(tmp_path):
    with pytest.raises(RuntimeError, match="--log-format 'xml' must be one of text, json"):
        ServerProcess(["--data-dir", str(tmp_path), "--log-format", "xml"]).start(timeout=20)


def test_without_the_access_log_only_server_failures_are_logged(tmp_path):
    """The default: no line per call; a back end that does not answer is a WARNING."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    server = ServerProcess(["--data-dir", str(tmp_path), "--redis-url", f"redis://127.0.0.1:{dead}/0"]).start()
    try:
        observe(server.target, "req-quiet")
        with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as raised:
            api_grpc.KatoServiceStub(channel).CreateSession(
                api.CreateSessionRequest(kb_id="log-dead"), metadata=[("x-request-id", "req-down")], timeout=20
            )
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        wait_for_line(server, "req-down")
        (line,) = [line for line in server.output if "req-down" in line]
        assert "WARNING kato_grpc.access CreateSession UNAVAILABLE" in line
        assert "req-quiet" not in "".join(server.output)
    finally:
        server.stop()
