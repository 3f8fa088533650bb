"""Server-held sessions are as durable as Redis is configured to be, and the server says so.

With an append-only file (`appendfsync always`) every acknowledged session write survives
a Redis crash (SIGKILL) and restart; without persistence every session is lost. At start-up
the server logs a warning for a Redis without an append-only file and reports the mode as
`kato_session_store_persistence{mode}` (sessions/redis_durability.py).
"""

from __future__ import annotations

import socket
import urllib.request

import grpc
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.sessions.redis_durability import check_persistence
from tests.support.redis import RedisServer, RedisUnavailable
from tests.support.requirements import missing
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e  # starts `kato-grpc serve` processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_redis(tmp_path):
    started: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        try:
            server = RedisServer(tmp_path / f"redis-{len(started)}", extra_args=extra_args).start()
        except RedisUnavailable as exc:
            missing(f"a real Redis ({exc})")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_kato(tmp_path):
    started: list[ServerProcess] = []

    def start(redis_url: str, *flags: str) -> ServerProcess:
        server = ServerProcess(
            ["--data-dir", str(tmp_path / f"kato-{len(started)}"), "--redis-url", redis_url, *flags]
        ).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_check_persistence_reads_the_mode_of_a_real_redis(start_redis):
    server = start_redis()
    client = redis.Redis.from_url(server.url)
    try:
        assert check_persistence(client, "test").mode == "none"
        client.config_set("save", "3600 1")
        assert check_persistence(client, "test").mode == "rdb"
        client.config_set("appendonly", "yes")
        assert check_persistence(client, "test").mode == "aof-everysec"
        client.config_set("appendfsync", "always")
        persistence = check_persistence(client, "test")
        assert persistence.mode == "aof-always" and persistence.durable
    finally:
        client.config_set("appendonly", "no")  # nothing left to write at shutdown
        client.config_set("save", "")
        client.close()


def acknowledged_session(target: str) -> tuple[str, list[list[str]]]:
    with grpc.insecure_channel(target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        session_id = stub.CreateSession(api.CreateSessionRequest(kb_id="durable"), timeout=30).session.session_id
        for symbol in ("a", "b", "c"):
            stub.Observe(
                api.ObserveRequest(session_id=session_id, observation=pb.Observation(strings=[symbol])), timeout=30
            )
    return session_id, [["a"], ["b"], ["c"]]


def stm_after_restart(target: str, session_id: str):
    with grpc.insecure_channel(target) as channel:
        stub = api_grpc.KatoServiceStub(channel)
        try:
            return [list(e.symbols) for e in stub.GetStm(api.GetStmRequest(session_id=session_id), timeout=30).stm]
        except grpc.RpcError as error:
            return error.code()


def test_with_an_append_only_file_acknowledged_sessions_survive_a_redis_crash(start_redis, start_kato):
    store = start_redis("--appendonly", "yes", "--appendfsync", "always")
    kato = start_kato(store.url)
    session_id, stm = acknowledged_session(kato.target)
    store.restart()  # SIGKILL, then the same port and directory: the append-only file is replayed
    assert stm_after_restart(kato.target, session_id) == stm
    assert "has no append-only file" not in "".join(kato.output)


def test_without_persistence_sessions_are_lost_and_the_server_warns(start_redis, start_kato):
    store = start_redis()
    metrics_port = _free_port()
    kato = start_kato(store.url, "--metrics-port", str(metrics_port))
    assert "has no append-only file" in "".join(kato.output)
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).read().decode()
    modes = {
        s.labels["mode"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "kato_session_store_persistence"
    }
    assert modes == {"none": 1.0}
    session_id, _ = acknowledged_session(kato.target)
    store.restart()
    assert stm_after_restart(kato.target, session_id) is grpc.StatusCode.NOT_FOUND
