"""The Prometheus endpoint, scraped from a real server after real calls (kato_grpc/server/metrics.py)."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from tests.support.server import ServerProcess, free_service_port

KATO = "kato.v1.KatoService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def rpc(method: str, code: str = "OK", kind: str = "UNARY_UNARY") -> dict[str, str]:
    return {"grpc_service": KATO, "grpc_method": method, "grpc_type": kind, "grpc_code": code}


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory):
    port = free_port()
    server = ServerProcess(
        ["--data-dir", str(tmp_path_factory.mktemp("metrics-data")), "--metrics-port", str(port)]
    ).start()
    server.metrics_port = port
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(metrics_server):
    with grpc.insecure_channel(metrics_server.target) as channel:
        yield api_grpc.KatoServiceStub(channel)


def observe(stub, state: pb.SessionState, *symbols: str) -> api.ObserveResponse:
    return stub.Observe(api.ObserveRequest(state=state, observation=pb.Observation(strings=list(symbols))), timeout=30)


def test_counters_move_with_calls(metrics_server, stub):
    before = scrape(metrics_server.metrics_port)
    state = pb.SessionState(kb_id=f"metrics-{uuid.uuid4().hex[:8]}")
    for symbol in ("a", "b", "c"):
        state = observe(stub, state, symbol).state
    with pytest.raises(grpc.RpcError):
        stub.Learn(api.LearnRequest(state=pb.SessionState(kb_id="bad kb id!")), timeout=30)
    after = scrape(metrics_server.metrics_port)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("grpc_server_started_total", **{k: v for k, v in rpc("Observe").items() if k != "grpc_code"}) == 3
    assert moved("grpc_server_handled_total", **rpc("Observe")) == 3
    assert moved("grpc_server_handled_total", **rpc("Learn", "INVALID_ARGUMENT")) == 1
    labels = {k: v for k, v in rpc("Observe").items() if k != "grpc_code"}
    assert moved("grpc_server_handling_seconds_count", **labels) == 3
    assert moved("grpc_server_handling_seconds_sum", **labels) > 0
    assert value(after, "kato_grpc_in_flight_calls", grpc_service=KATO, grpc_method="Observe") == 0
    assert moved("kato_session_state_bytes_count", grpc_method="Observe") == 3
    assert moved("kato_session_state_bytes_sum", grpc_method="Observe") >= state.ByteSize()
    assert ("kato_session_cas_conflicts_total", ()) in after
    for lane in ("cpu", "kb", "session"):  # the thread pools: size, busy threads, queue depth
        assert value(after, "kato_lane_threads", lane=lane) >= 1
        assert ("kato_lane_busy_threads", (("lane", lane),)) in after
        assert value(after, "kato_lane_queued_tasks", lane=lane) == 0
    assert ("process_cpu_seconds_total", ()) in after


def test_patterns_per_kb_follow_learn_delete_and_clear(metrics_server, stub):
    kb_id = f"metrics-kb-{uuid.uuid4().hex[:8]}"
    names = []
    for events in ((["a"], ["b"]), (["c"], ["d"])):
        state = metrics_server.sign(pb.SessionState(kb_id=kb_id, stm=[pb.Event(symbols=e) for e in events]))
        names.append(stub.Learn(api.LearnRequest(state=state), timeout=30).pattern_name)
    assert value(scrape(metrics_server.metrics_port), "kato_kb_patterns", kb_id=kb_id) == 2
    stub.DeletePattern(api.DeletePatternRequest(kb_id=kb_id, name=names[0]), timeout=30)
    assert value(scrape(metrics_server.metrics_port), "kato_kb_patterns", kb_id=kb_id) == 1
    stub.ClearKnowledgeBase(api.ClearKnowledgeBaseRequest(kb_id=kb_id), timeout=30)
    assert value(scrape(metrics_server.metrics_port), "kato_kb_patterns", kb_id=kb_id) == 0


def test_server_held_sessions_report_their_stored_size(metrics_server, stub):
    before = scrape(metrics_server.metrics_port)
    session = stub.CreateSession(api.CreateSessionRequest(kb_id=f"metrics-{uuid.uuid4().hex[:8]}"), timeout=30).session
    stub.Observe(
        api.ObserveRequest(session_id=session.session_id, observation=pb.Observation(strings=["x"])), timeout=30
    )
    after = scrape(metrics_server.metrics_port)
    for method in ("CreateSession", "Observe"):
        assert value(after, "kato_session_state_bytes_count", grpc_method=method) > value(
            before, "kato_session_state_bytes_count", grpc_method=method
        )


def test_an_unreachable_back_end_is_counted(tmp_path):
    """Sessions in a Redis nobody listens on: UNAVAILABLE, counted as a back-end error,
    and counted before the status is sent: a scrape right after each reply sees it."""
    port, dead = free_port(), free_port()
    server = ServerProcess(
        ["--data-dir", str(tmp_path), "--metrics-port", str(port), "--redis-url", f"redis://127.0.0.1:{dead}/0"]
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = api_grpc.KatoServiceStub(channel)
            for calls in range(1, 31):
                with pytest.raises(grpc.RpcError) as raised:
                    stub.CreateSession(api.CreateSessionRequest(kb_id="metrics-dead"), timeout=20)
                assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
                samples = scrape(port)
                assert value(samples, "kato_backend_unavailable_total", grpc_method="CreateSession") == calls
                assert value(samples, "grpc_server_handled_total", **rpc("CreateSession", "UNAVAILABLE")) == calls
    finally:
        server.stop()


def test_a_scrape_right_after_any_reply_sees_the_call(metrics_server, stub):
    """Every outcome is counted before its status is sent (an aborted call too), so a
    scrape made as soon as the reply arrives already counts it. A tight loop, many times."""
    kb_id = f"metrics-loop-{uuid.uuid4().hex[:8]}"
    outcomes = [
        ("Observe", "OK", lambda: observe(stub, pb.SessionState(kb_id=kb_id), "a")),
        (
            "Learn",
            "INVALID_ARGUMENT",
            lambda: stub.Learn(api.LearnRequest(state=pb.SessionState(kb_id="bad kb!")), timeout=30),
        ),
        (
            "Learn",
            "FAILED_PRECONDITION",
            lambda: stub.Learn(api.LearnRequest(state=pb.SessionState(kb_id=kb_id)), timeout=30),
        ),
        ("GetSession", "NOT_FOUND", lambda: stub.GetSession(api.GetSessionRequest(session_id="no-such"), timeout=30)),
        ("ListPatterns", "OK", lambda: stub.ListPatterns(api.ListPatternsRequest(kb_id=kb_id), timeout=30)),
    ]
    counted = {
        (method, code): value(scrape(metrics_server.metrics_port), "grpc_server_handled_total", **rpc(method, code))
        for method, code, _ in outcomes
    }
    for round_ in range(40):
        for method, code, call in outcomes:
            try:
                call()
            except grpc.RpcError as error:
                assert error.code().name == code, (method, error)
            counted[method, code] += 1
            seen = value(scrape(metrics_server.metrics_port), "grpc_server_handled_total", **rpc(method, code))
            assert seen == counted[method, code], (round_, method, code)


def test_auth_refusals_are_counted(tmp_path):
    import json

    port = free_port()
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": []}))
    server = ServerProcess(
        ["--data-dir", str(tmp_path / "data"), "--metrics-port", str(port), "--auth-keys-file", str(keys)]
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as raised:
            api_grpc.KatoServiceStub(channel).ListPatterns(api.ListPatternsRequest(kb_id="x"), timeout=30)
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED, raised.value
        samples = scrape(port)
        assert value(samples, "grpc_server_handled_total", **rpc("ListPatterns", "UNAUTHENTICATED")) == 1, sorted(
            key for key in samples if key[0] == "grpc_server_handled_total"
        )
    finally:
        server.stop()


def test_metrics_are_off_by_default(kato_server):
    assert "metrics on" not in "".join(kato_server.output)


def test_each_worker_serves_its_own_metrics_port(tmp_path):
    grpc_port, port = free_service_port(), free_service_port()
    while port + 1 == grpc_port or port == grpc_port:
        port = free_service_port()
    server = ServerProcess(
        ["--data-dir", str(tmp_path), "--workers", "2", "--port", str(grpc_port), "--metrics-port", str(port)]
    ).start()
    try:
        for worker_port in (port, port + 1):
            deadline = time.monotonic() + 120  # a hang guard
            while True:  # the second worker may still be starting
                try:
                    assert ("kato_session_cas_conflicts_total", ()) in scrape(worker_port)
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
    finally:
        server.stop()
