"""Knowledge bases in a real ClickHouse, through real server processes.

Every test talks gRPC to `python -m kato_grpc serve --clickhouse-url ...` child processes
(ServerProcess); ClickHouse is Debian's clickhouse-server on ephemeral loopback ports
(tests/support/clickhouse.py), skipped when not installed. Sessions are client-held, so
the same session can hop from one replica to the other between two calls.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from contextlib import ExitStack

import pytest
from kato_client import KatoClient
from kato_client.client import Session
from kato_client.errors import KatoClientError, NotFound, Unavailable

from tests.support.server import ServerProcess
from tests.support.state_keys import write_state_keys

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _serve(stack: ExitStack, url: str, data_dir, state_keys=None) -> tuple[ServerProcess, KatoClient]:
    flags = ["--state-keys-file", str(state_keys)] if state_keys else []
    server = ServerProcess(["--data-dir", str(data_dir), "--clickhouse-url", url, *flags]).start()
    stack.callback(server.stop)
    client = KatoClient(server.target, timeout=20, retry=None)  # the tests want the first UNAVAILABLE
    stack.callback(client.close)
    return server, client


@pytest.fixture
def replicas(clickhouse_url, tmp_path):
    """Two server processes sharing one ClickHouse database and one state key ring, so a
    client-held session may hop between them: (client A, client B)."""
    write_state_keys(tmp_path / "state-keys.json", "replicas")
    with ExitStack() as stack:
        _, a = _serve(stack, clickhouse_url, tmp_path / "a", tmp_path / "state-keys.json")
        _, b = _serve(stack, clickhouse_url, tmp_path / "b", tmp_path / "state-keys.json")
        yield a, b


def _kb() -> str:
    return f"kb-{uuid.uuid4().hex[:8]}"


def _learn(client: KatoClient, kb_id: str, *events: list[str], emotives=None) -> str:
    session = client.session(kb_id)
    for event in events:
        session.observe(event, emotives=emotives)
    name = session.learn()
    assert name.startswith("PTRN|")
    return name


def _hop(session: Session, client: KatoClient) -> Session:
    """The same client-held session, its next call going to another replica."""
    return Session(client, session.state)


def _predicted(client: KatoClient, kb_id: str, *events: list[str]) -> list[str]:
    session = client.session(kb_id)
    for event in events:
        session.observe(event)
    return [p.name for p in session.predict().predictions]


def _bare(name: str) -> str:
    return name.removeprefix("PTRN|")


def test_learn_through_one_replica_is_predicted_through_the_other_on_the_next_call(replicas):
    a, b = replicas
    kb = _kb()
    session = a.session(kb)
    session.observe(["hello"])
    session.observe(["world"])
    name = session.learn()
    # The very next call of the same session goes to B.
    moved = _hop(session, b)
    moved.observe(["hello"])
    assert [_bare(p.name) for p in moved.predict().predictions] == [_bare(name)]
    assert b.get_pattern(kb, name).frequency == 1
    # And back: a re-learn through B is counted once, and A sees it at once.
    _learn(b, kb, ["hello"], ["world"])
    assert a.get_pattern(kb, name).frequency == 2
    assert [(s.symbol, s.frequency, s.pattern_member_frequency) for s in a.symbol_stats(kb).symbol_stats] == [
        ("hello", 2, 1),
        ("world", 2, 1),
    ]


def test_delete_through_one_replica_is_gone_on_the_other(replicas):
    a, b = replicas
    kb = _kb()
    gone = _learn(a, kb, ["a"], ["b"], ["c"])
    kept = _learn(a, kb, ["a"], ["x"])
    assert {_bare(n) for n in _predicted(b, kb, ["a"], ["b"])} == {_bare(gone), _bare(kept)}
    b.delete_pattern(kb, gone)
    with pytest.raises(NotFound):
        a.get_pattern(kb, gone)
    assert [_bare(n) for n in _predicted(a, kb, ["a"], ["b"])] == [_bare(kept)]
    assert [p.name for p in a.list_patterns(kb)] == [kept]
    assert [s.symbol for s in a.symbol_stats(kb).symbol_stats] == ["a", "x"]


def test_update_and_clear_through_one_replica_show_on_the_other(replicas):
    a, b = replicas
    kb = _kb()
    name = _learn(a, kb, ["a"], ["b"], emotives={"joy": 1.0})
    b.update_pattern(kb, name, frequency=7, metadata={"k": ["y", "x"]})
    pattern = a.get_pattern(kb, name)
    assert pattern.frequency == 7 and list(pattern.metadata["k"].values) == ["x", "y"]
    assert a.symbol_affinity(kb, "a") == {"a": {"joy": 1.0}}
    a.clear_knowledge_base(kb)
    assert list(b.list_patterns(kb)) == [] and b.symbol_stats(kb).total_unique_patterns == 0
    # Learning after the clear starts the pattern afresh, on both replicas.
    _learn(b, kb, ["a"], ["b"])
    assert a.get_pattern(kb, name).frequency == 1


def test_kb_ids_are_isolated(replicas):
    a, b = replicas
    one, two = _kb(), _kb()
    abc = _learn(a, one, ["a"], ["b"], ["c"], emotives={"joy": 2.0})
    xy = _learn(b, two, ["x"], ["y"])
    for client in (a, b):
        assert [p.name for p in client.list_patterns(one)] == [abc]
        assert [p.name for p in client.list_patterns(two)] == [xy]
        assert [s.symbol for s in client.symbol_stats(two).symbol_stats] == ["x", "y"]
        assert client.symbol_affinity(two, "a") in ({}, {"a": {}}) and client.symbol_affinity(two) == {}
        assert _predicted(client, two, ["a"], ["b"]) == []
        with pytest.raises(NotFound):
            client.get_pattern(two, abc)
    b.clear_knowledge_base(two)
    assert a.get_pattern(one, abc).frequency == 1 and list(a.list_patterns(two)) == []


def test_acknowledged_learns_survive_kill_9_of_the_service(clickhouse_url, tmp_path):
    kb = _kb()
    acked: list[str] = []
    with ExitStack() as stack:
        server, client = _serve(stack, clickhouse_url, tmp_path / "a")
        twice = _learn(client, kb, ["p"], ["q"])
        _learn(client, kb, ["p"], ["q"])

        def learn_until_killed() -> None:
            for i in range(100_000):
                try:
                    acked.append(_learn(client, kb, [f"s{i}"], ["t"], emotives={"joy": i / 7}))
                except KatoClientError:
                    return

        learner = threading.Thread(target=learn_until_killed)
        learner.start()
        deadline = time.monotonic() + 120  # a hang guard
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop(signal.SIGKILL)  # mid-stream, no shutdown
        learner.join(30)
    assert len(acked) >= 20
    with ExitStack() as stack:
        _, client = _serve(stack, clickhouse_url, tmp_path / "b")
        names = {p.name for p in client.list_patterns(kb)}
        assert set(acked) | {twice} <= names
        assert len(names) <= len(acked) + 2  # at most the one in flight beyond the acked
        assert client.get_pattern(kb, twice).frequency == 2
        i = len(acked) - 1
        assert list(client.get_pattern(kb, acked[i]).emotives[0].values.values()) == [i / 7]


def test_clickhouse_down_gives_unavailable_then_recovers_by_itself(clickhouse_server, tmp_path):
    kb = _kb()
    with ExitStack() as stack:
        _, client = _serve(stack, clickhouse_server.url, tmp_path)
        name = _learn(client, kb, ["a"], ["b"])
        clickhouse_server.kill()
        for call in (
            lambda: _predicted(client, kb, ["a"]),
            lambda: _learn(client, kb, ["c"], ["d"]),
            lambda: client.get_pattern(kb, name),
        ):
            with pytest.raises(Unavailable) as caught:
                call()
            assert f"ClickHouse at 127.0.0.1:{clickhouse_server.tcp_port}" in caught.value.message
            assert caught.value.reason == "BACKEND_UNAVAILABLE"
        clickhouse_server.start()
        # No restart of the service: the next call reconnects.
        assert [_bare(n) for n in _predicted(client, kb, ["a"])] == [_bare(name)]
        _learn(client, kb, ["a"], ["b"])
        assert client.get_pattern(kb, name).frequency == 2


def test_service_started_before_clickhouse_serves_once_it_is_up(clickhouse_server, tmp_path):
    clickhouse_server.kill()
    kb = _kb()
    with ExitStack() as stack:
        _, client = _serve(stack, clickhouse_server.url, tmp_path)
        with pytest.raises(Unavailable):
            client.symbol_stats(kb)
        clickhouse_server.start()
        name = _learn(client, kb, ["a"], ["b"])
        assert client.get_pattern(kb, name).frequency == 1
