"""Server-held sessions through real server processes, with a real `redis-server`.

Every test talks gRPC to `python -m kato_grpc serve` child processes (ServerProcess);
Redis is Debian's redis-server on an ephemeral loopback port (`--save '' --appendonly no`).
Tests that make sense for the in-process memory store as well are parametrised over it.

About two servers sharing one data directory: each process keeps its own in-memory index
of a knowledge base, loaded from SQLite on first use, and does not yet see what the other
process learns afterwards. Session state lives in Redis, so STM checks (isolation, lost
updates) are exact through either server. Pattern frequencies are read where they are
known to be current: through the one server that did all the learning, or through a server
started after the race, whose index is loaded from the shared SQLite file.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import redis
from kato_client import KatoClient
from kato_client.client import ServerSession
from kato_client.errors import FailedPrecondition, NotFound, Unavailable

from kato_grpc.sessions.redis_store import session_key
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@dataclass
class Deployment:
    """Server processes sharing one session store (and one data directory)."""

    servers: list[ServerProcess]
    clients: list[KatoClient]
    redis_url: str = ""  # empty: in-process memory sessions (one server)
    data_dir: str = ""

    def client(self, k: int) -> KatoClient:
        return self.clients[k % len(self.clients)]

    def hop(self, session: ServerSession, k: int) -> ServerSession:
        """The same session addressed through server k (mod the number of servers)."""
        return ServerSession(self.client(k), session.session_id)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)


def _deploy(stack: ExitStack, data_dir, count: int, redis_url: str = "") -> Deployment:
    args = ["--data-dir", str(data_dir)] + (["--redis-url", redis_url] if redis_url else [])
    servers, clients = [], []
    for _ in range(count):
        server = ServerProcess(args).start()
        stack.callback(server.stop)
        servers.append(server)
        # No client retries: the tests want the first UNAVAILABLE a stopped Redis causes.
        clients.append(stack.enter_context(KatoClient(server.target, retry=None)))
    return Deployment(servers, clients, redis_url, str(data_dir))


@pytest.fixture(scope="module")
def two_servers(shared_redis_server, tmp_path_factory):
    """Two server processes on one Redis and one data directory (never stopped by tests)."""
    with ExitStack() as stack:
        yield _deploy(stack, tmp_path_factory.mktemp("two-servers"), 2, shared_redis_server.url)


@pytest.fixture(params=["memory", "redis"])
def one_server(request, tmp_path):
    """One server process, sessions in process memory or in a fresh Redis."""
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else ""
    with ExitStack() as stack:
        yield _deploy(stack, tmp_path / "data", 1, url)


@pytest.fixture(params=["redis-two-servers", "redis-one-server", "memory-one-server"])
def deployment(request, tmp_path):
    if request.param == "redis-two-servers":
        return request.getfixturevalue("two_servers")
    stack = ExitStack()
    request.addfinalizer(stack.close)
    url = request.getfixturevalue("redis_server").url if request.param.startswith("redis") else ""
    return _deploy(stack, tmp_path / "data", 1, url)


def kb_id(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def flat(stm: list[list[str]]) -> list[str]:
    return [symbol for event in stm for symbol in event]


# --- isolation and lost updates ---------------------------------------------------------------


def test_one_hundred_sessions_on_one_kb_see_only_their_own_events(two_servers):
    """100 sessions, 32 threads, every call alternating between the two servers."""
    kb, count, length = kb_id("iso"), 100, 10
    sessions = [two_servers.client(i).server_session(kb) for i in range(count)]
    # Session i's own symbols; every third event has two (events are sorted sets).
    expected = [
        [sorted({f"s{i:03d}e{j}", f"s{i:03d}x"} if j % 3 == 0 else {f"s{i:03d}e{j}"}) for j in range(length)]
        for i in range(count)
    ]

    def drive(i: int) -> None:
        for j, event in enumerate(expected[i]):
            two_servers.hop(sessions[i], i + j).observe(event)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(drive, range(count)))

    for i, session in enumerate(sessions):
        own = set(flat(expected[i]))
        for k in range(2):  # the same state through either server
            stm = two_servers.hop(session, k).stm()
            foreign = set(flat(stm)) - own
            assert not foreign, f"session {i} sees foreign symbols {sorted(foreign)}"
            assert stm == expected[i], f"session {i} through server {k}"


def test_concurrent_observes_on_one_session_lose_nothing(deployment):
    """50 Observe calls at once on ONE session (spread over the servers): all 50 land."""
    session = deployment.client(0).server_session(kb_id("lost"))
    symbols = [f"u{k:02d}" for k in range(50)]
    gate = threading.Barrier(25)

    def observe(k: int) -> None:
        if k < 25:
            gate.wait()
        deployment.hop(session, k).observe([symbols[k]])

    with ThreadPoolExecutor(25) as pool:
        list(pool.map(observe, range(50)))

    stm = session.stm()
    assert len(stm) == 50 and sorted(flat(stm)) == symbols
    if deployment.redis_url:  # 50 committed transitions, one version each
        stored = deployment.redis().hget(f"kato:session:{{{session.session_id}}}", "version")
        assert int(stored) == 50


# --- exactly-once learn -------------------------------------------------------------------


def _race_learns(deployment: Deployment, session: ServerSession, racers: int) -> list[str]:
    """`racers` Learn calls released together, spread over the servers; the names returned."""
    gate = threading.Barrier(racers)

    def learn(k: int) -> str:
        gate.wait()
        try:
            return deployment.hop(session, k).learn()
        except FailedPrecondition as exc:  # the STM was already learned and emptied
            assert exc.reason == "EMPTY_STM"
            return ""

    with ThreadPoolExecutor(racers) as pool:
        return [name for name in pool.map(learn, range(racers)) if name]


def test_racing_learns_through_two_servers_store_each_pattern_once(two_servers, tmp_path):
    """Ten sessions, each: two events, then 8 Learns racing over both servers. Exactly one
    Learn per session commits; its pattern has frequency 1 in the shared store, read
    through a server started afterwards (its index is loaded from that store)."""
    kb = kb_id("race")
    committed: dict[str, int] = {}
    for i in range(10):
        session = two_servers.client(i).server_session(kb)
        session.observe([f"r{i}a"])
        two_servers.hop(session, i + 1).observe([f"r{i}b"])
        names = _race_learns(two_servers, session, racers=8)
        assert len(names) == 1, f"session {i}: {names}"
        committed[names[0]] = committed.get(names[0], 0) + 1
        assert session.stm() == []

    with ExitStack() as stack:
        fresh = _deploy(stack, two_servers.data_dir, 1, two_servers.redis_url)
        stored = {
            f"PTRN|{p.name}" if not p.name.startswith("PTRN|") else p.name: p.frequency
            for p in fresh.client(0).list_patterns(kb)
        }
    assert stored == committed


def test_racing_learns_on_one_server_count_each_committed_transition(one_server):
    """Five rounds of two events then 8 racing Learns: frequency = Learns that returned a name."""
    session = one_server.client(0).server_session(kb_id("rounds"))
    names: list[str] = []
    for _ in range(5):
        session.observe(["a"])
        session.observe(["b"])
        names += _race_learns(one_server, session, racers=8)
    assert len(names) == 5 and len(set(names)) == 1
    assert one_server.client(0).get_pattern(_kb(session), names[0]).frequency == 5


def _kb(session: ServerSession) -> str:
    return session.info.kb_id


def test_a_learn_retried_with_its_request_id_returns_the_first_reply(deployment):
    """A retry after a lost response (any server) is answered from the session, not re-run."""
    session = deployment.client(0).server_session(kb_id("retry"))
    session.observe(["a"])
    session.observe(["b"])
    name = session.learn(request_id="learn-1")
    assert name.startswith("PTRN|")
    for k in range(3):
        assert deployment.hop(session, k).learn(request_id="learn-1") == name
    assert deployment.client(0).get_pattern(_kb(session), name).frequency == 1

    session.observe(["c"], request_id="obs-1")
    deployment.hop(session, 1).observe(["c"], request_id="obs-1")
    assert session.stm() == [["c"]]

    session.observe(["d"])
    session.clear_stm()
    for symbol in ("a", "b"):
        session.observe([symbol])
    assert session.learn() == name  # a new transition counts again
    assert deployment.client(0).get_pattern(_kb(session), name).frequency == 2


# --- TTL ------------------------------------------------------------------------------------


@pytest.fixture
def redis_server_deployment(redis_server, tmp_path):
    with ExitStack() as stack:
        yield _deploy(stack, tmp_path / "data", 1, redis_server.url)


def test_access_slides_the_expiry_but_session_exists_does_not(redis_server_deployment):
    # The expiry is read from Redis itself (PEXPIRETIME), so no step has to beat a TTL;
    # each sleep only makes sure the clock has moved on (a lower bound, never a race).
    deployment = redis_server_deployment
    session = deployment.client(0).server_session(kb_id("ttl"), ttl_seconds=600)
    redis_client, key = deployment.redis(), session_key(session.session_id)
    created = redis_client.pexpiretime(key)
    time.sleep(0.01)
    session.observe(["a"])
    observed = redis_client.pexpiretime(key)
    assert observed > created  # an access slides the expiry
    time.sleep(0.01)
    status = session.exists()
    assert (status.exists, status.expired) == (True, False)
    assert redis_client.pexpiretime(key) == observed  # SessionExists does not


def test_an_expired_session_is_not_found_and_says_so(one_server):
    session = one_server.client(0).server_session(kb_id("ttl"), ttl_seconds=600)
    session.extend(1)
    time.sleep(1.1)  # past the 1 s TTL: a lower bound only
    status = session.exists()
    assert (status.exists, status.expired) == (False, True)
    with pytest.raises(NotFound) as raised:
        session.stm()
    assert "expired" in str(raised.value)
    assert raised.value.reason == "SESSION_NOT_FOUND"
    assert raised.value.metadata == {"sessionId": session.session_id, "expired": "true"}


def test_extend_session_sets_a_new_ttl_from_now(one_server):
    session = one_server.client(0).server_session(kb_id("extend"), ttl_seconds=1)
    before = time.time()
    extended = session.extend(600)
    assert extended.ttl_seconds == 600
    assert extended.expires_at.ToMilliseconds() >= before * 1000 + 600_000 - 1
    time.sleep(1.1)  # past the TTL it was created with: a lower bound only
    assert session.exists().exists
    assert session.info_now().ttl_seconds == 600


def test_unknown_and_deleted_sessions_are_not_found_and_not_expired(one_server):
    client = one_server.client(0)
    unknown = ServerSession(client, "0" * 32)
    with pytest.raises(NotFound) as raised:
        unknown.observe(["a"])
    assert "does not exist" in str(raised.value) and "expired" not in str(raised.value)
    session = client.server_session(kb_id("deleted"))
    session.delete()
    with pytest.raises(NotFound, match="does not exist or was deleted"):
        session.stm()
    with pytest.raises(NotFound):
        session.delete()
    status = session.exists()
    assert (status.exists, status.expired) == (False, False)


def test_session_keys_in_redis_are_hash_tagged_and_expire_with_the_session(redis_server, tmp_path):
    with ExitStack() as stack:
        deployment = _deploy(stack, tmp_path / "data", 1, redis_server.url)
        session = deployment.client(0).server_session(kb_id("keys"), ttl_seconds=60)
        r = deployment.redis()
        key = f"kato:session:{{{session.session_id}}}"
        assert set(r.keys("*")) == {key.encode(), f"{key}:expired".encode()}
        assert 0 < r.pttl(key) <= 60_000
        r.pexpire(key, 30_000)
        session.exists()
        assert r.pttl(key) <= 30_000  # SessionExists does not extend
        session.observe(["a"])
        assert 30_000 < r.pttl(key) <= 60_000  # an access does
        assert r.hget(key, "kb_id") == session.info.kb_id.encode()


# --- Redis down -------------------------------------------------------------------------------


def test_redis_killed_gives_unavailable_and_the_server_recovers_by_itself(redis_server, tmp_path):
    with ExitStack() as stack:
        deployment = _deploy(stack, tmp_path / "data", 1, redis_server.url)
        client = deployment.client(0)
        session = client.server_session(kb_id("down"))
        session.observe(["a"])

        redis_server.kill()
        calls = [
            lambda: session.observe(["b"]),
            lambda: session.stm(),
            lambda: session.learn(),
            lambda: client.server_session(kb_id("down")),
            lambda: session.exists(),
            lambda: session.delete(),
        ]
        for call in calls:
            with pytest.raises(Unavailable) as raised:
                call()
            assert raised.value.reason == "BACKEND_UNAVAILABLE"
            assert f"Redis at {redis_server.url} did not answer" in str(raised.value)
        # Client-held state needs no session store.
        assert client.session(kb_id("down")).observe(["x"]).state.stm[0].symbols == ["x"]

        redis_server.start()  # same port, and empty: --save ''
        with pytest.raises(NotFound, match="does not exist"):
            session.stm()
        again = client.server_session(kb_id("down"))
        again.observe(["c"])
        assert again.stm() == [["c"]]


def test_a_server_started_while_redis_is_down_serves_once_it_is_up(redis_server, tmp_path):
    redis_server.kill()
    with ExitStack() as stack:
        deployment = _deploy(stack, tmp_path / "data", 1, redis_server.url)
        with pytest.raises(Unavailable):
            deployment.client(0).server_session(kb_id("late"))
        redis_server.start()
        session = deployment.client(0).server_session(kb_id("late"))
        session.observe(["a"])
        assert session.stm() == [["a"]]


def test_a_call_cut_off_by_a_hung_redis_is_retried_exactly_once_with_its_request_id(redis_server, tmp_path):
    """Redis hangs mid-call: the client gets UNAVAILABLE and cannot tell whether its write
    landed. Retrying with the same request_id once Redis answers applies it exactly once."""
    with ExitStack() as stack:
        deployment = _deploy(stack, tmp_path / "data", 1, redis_server.url)
        session = deployment.client(0).server_session(kb_id("hung"))
        session.observe(["a"])
        redis_server.pause()
        try:
            with pytest.raises(Unavailable, match="did not answer"):
                session.observe(["b"], request_id="obs-b")
        finally:
            redis_server.resume()
        session.observe(["b"], request_id="obs-b")
        session.observe(["b"], request_id="obs-b")
        assert session.stm() == [["a"], ["b"]]
