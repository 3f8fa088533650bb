"""A back end that stops answering (SIGSTOP) and comes back (SIGCONT), under a real server.

While Redis or ClickHouse is paused: the overall health stays SERVING, the
`kato.v1.KatoService` status turns NOT_SERVING; calls that need the paused back end end
UNAVAILABLE or DEADLINE_EXCEEDED, answered by the server within their deadline, and
change nothing; calls that do not need it keep working within ordinary deadlines. Once
the back end is resumed the service is SERVING again, with no restart.

No assertion reads a clock: each bound is a call's own deadline.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb

SERVICE = "kato.v1.KatoService"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
FAILED_FAST = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
ORDINARY = 10.0  # deadline of a call that must keep working (seconds; generous on a shared machine)


def status(channel: grpc.Channel, service: str = "") -> int:
    return (
        health_pb2_grpc.HealthStub(channel)
        .Check(health_pb2.HealthCheckRequest(service=service), timeout=ORDINARY)
        .status
    )


def wait_for_status(channel: grpc.Channel, wanted: int, within: float = 120.0) -> None:
    give_up = time.monotonic() + within
    while status(channel, SERVICE) != wanted:
        assert time.monotonic() < give_up, (
            f"{SERVICE} never became {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)}"
        )
        time.sleep(0.1)


def observe_request(state: pb.SessionState | None = None, session_id: str = "", *symbols: str) -> api.ObserveRequest:
    observation = pb.Observation(strings=list(symbols))
    if session_id:
        return api.ObserveRequest(session_id=session_id, observation=observation)
    return api.ObserveRequest(state=state, observation=observation)


def answered_by_server(error: grpc.RpcError, back_end: str) -> bool:
    """The status is the server's (it names the back end), not the client's own deadline."""
    return back_end in (error.details() or "")


def test_a_paused_redis_fails_only_the_calls_that_need_it(redis_server, start_server):
    server = start_server(
        "--redis-url", redis_server.url, "--redis-timeout-seconds", "2", "--health-probe-seconds", "0.5"
    )
    with grpc.insecure_channel(server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        session = stub.CreateSession(api.CreateSessionRequest(kb_id="pause-redis"), timeout=ORDINARY).session
        stub.Observe(observe_request(None, session.session_id, "a"), timeout=ORDINARY)
        wait_for_status(channel, SERVING)
        redis_server.pause()
        try:
            wait_for_status(channel, NOT_SERVING)
            assert status(channel) == SERVING  # the process is alive

            # Calls stuck on Redis, in flight while the others run.
            stuck_errors: list[grpc.RpcError] = []

            def stuck_call(i: int) -> None:
                try:
                    stub.Observe(observe_request(None, session.session_id, f"stuck-{i}"), timeout=1.5)
                except grpc.RpcError as error:
                    stuck_errors.append(error)

            with ThreadPoolExecutor(8) as pool:
                stuck = [pool.submit(stuck_call, i) for i in range(16)]
                state = pb.SessionState(kb_id="pause-redis-client-held")
                for symbol in ("x", "y", "z"):  # client-held state needs no Redis
                    state = stub.Observe(observe_request(state, "", symbol), timeout=ORDINARY).state
                assert [list(e.symbols) for e in state.stm] == [["x"], ["y"], ["z"]]
                assert status(channel) == SERVING
                for future in stuck:
                    future.result()
            assert len(stuck_errors) == 16
            assert {e.code() for e in stuck_errors} <= set(FAILED_FAST), {e.code() for e in stuck_errors}

            # With no client deadline the server's ceiling for Redis ends the call.
            with pytest.raises(grpc.RpcError) as raised:
                stub.Observe(observe_request(None, session.session_id, "b"), timeout=60)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE, raised.value
            assert answered_by_server(raised.value, "Redis")
        finally:
            redis_server.resume()
        wait_for_status(channel, SERVING)
        stub.Observe(observe_request(None, session.session_id, "c"), timeout=ORDINARY)
        stm = stub.GetStm(api.GetStmRequest(session_id=session.session_id), timeout=ORDINARY).stm
        assert [list(e.symbols) for e in stm] == [["a"], ["c"]]  # the failed calls changed nothing


def test_a_paused_clickhouse_fails_only_the_calls_that_need_it(clickhouse_server, start_server):
    server = start_server(
        "--clickhouse-url",
        clickhouse_server.url_for("kato_pause"),
        "--kb-timeout-seconds",
        "2",
        "--health-probe-seconds",
        "0.5",
    )
    # Hand-made states with an STM: signed with the server's key, as a state it returned would be.
    learned_before = server.sign(
        pb.SessionState(kb_id="pause-ch", stm=[pb.Event(symbols=["a"]), pb.Event(symbols=["b"])])
    )
    learned_during = server.sign(
        pb.SessionState(kb_id="pause-ch", stm=[pb.Event(symbols=["c"]), pb.Event(symbols=["d"])])
    )
    with grpc.insecure_channel(server.target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        stub.Learn(api.LearnRequest(state=learned_before), timeout=ORDINARY)
        wait_for_status(channel, SERVING)
        clickhouse_server.pause()
        try:
            wait_for_status(channel, NOT_SERVING)
            assert status(channel) == SERVING

            # Server-held sessions live in process memory here: they need no ClickHouse.
            session = stub.CreateSession(api.CreateSessionRequest(kb_id="pause-ch"), timeout=ORDINARY).session
            assert stub.SessionExists(api.SessionExistsRequest(session_id=session.session_id), timeout=ORDINARY).exists

            with pytest.raises(grpc.RpcError) as raised:
                stub.Learn(api.LearnRequest(state=learned_during), timeout=1.5)
            assert raised.value.code() in FAILED_FAST, raised.value
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(api.PredictRequest(state=learned_before), timeout=60)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE, raised.value
            assert answered_by_server(raised.value, "ClickHouse")
            assert stub.SessionExists(api.SessionExistsRequest(session_id=session.session_id), timeout=ORDINARY).exists
        finally:
            clickhouse_server.resume()
        wait_for_status(channel, SERVING)
        names = [
            p.name for p in stub.ListPatterns(api.ListPatternsRequest(kb_id="pause-ch"), timeout=ORDINARY).patterns
        ]
        assert len(names) == 1  # the learn that failed during the pause changed nothing
        name = stub.Learn(api.LearnRequest(state=learned_during), timeout=ORDINARY).pattern_name
        assert (
            stub.GetPattern(api.GetPatternRequest(kb_id="pause-ch", name=name), timeout=ORDINARY).pattern.frequency == 1
        )
