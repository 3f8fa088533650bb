"""The `SessionStore` contract, run unchanged against the memory store and a real Redis;
then the compare-and-set runner under real concurrency over each (its store calls on a
thread pool, as the server runs them).

Redis runs as a real `redis-server` (fixture `redis_server`), never a mock. Threads in one
process race for real here: redis-py releases the GIL while it waits on the socket.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis.crc import key_slot

from kato_grpc.core import engine
from kato_grpc.core.errors import EmptyStmError
from kato_grpc.core.model import Observation, Outcome
from kato_grpc.kb import MemoryStore
from kato_grpc.server.execution import InlineSessionStore, Lane, OffloadedSessionStore
from kato_grpc.server.state_codec import STATE_CODEC
from kato_grpc.sessions.base import SessionRecord, StoreUnavailable
from kato_grpc.sessions.memory import MemorySessionStore
from kato_grpc.sessions.redis_store import RedisSessionStore, redact_url, session_key, tombstone_key
from kato_grpc.sessions.runner import SessionNotFound, SessionRunner

KB = "kb-sessions"


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        s = MemorySessionStore()
    else:
        s = RedisSessionStore.from_url(request.getfixturevalue("redis_server").url)
    yield s
    s.close()


def record(session_id: str = "s1", ttl: int = 60, version: int = 0, **changes) -> SessionRecord:
    now = time.time()
    base = SessionRecord(
        session_id=session_id,
        kb_id=KB,
        state=b"\x00state\xff",
        version=version,
        ttl_seconds=ttl,
        expires_at=now + ttl,
        created_at=now,
    )
    return base.evolve(**changes)


# --- the contract ---------------------------------------------------------------------------


def test_a_created_record_reads_back_byte_for_byte(store):
    created = record(
        metadata=b"\x01meta", outbox=b'[{"clear":true}]', replies={"r1": b"\x00\xff", "r2": b""}, owner="key-é"
    )
    store.create(created)
    assert store.get("s1") == created


def test_unknown_session_is_neither_live_nor_expired(store):
    assert store.get("nope") is None
    assert (store.status("nope").exists, store.status("nope").expired) == (False, False)
    assert store.get("") is None and not store.delete("")


def test_compare_and_set_needs_the_version_it_read(store):
    store.create(record())
    assert store.compare_and_set(record(version=1, state=b"one"), expected_version=0)
    assert not store.compare_and_set(record(version=1, state=b"stale"), expected_version=0)
    assert store.get("s1").state == b"one" and store.get("s1").version == 1


def test_two_writers_from_one_version_exactly_one_wins(store):
    store.create(record())
    read = store.get("s1")
    results = [store.compare_and_set(read.evolve(version=1, state=who), read.version) for who in (b"a", b"b")]
    assert results == [True, False]
    assert store.get("s1").state == b"a"


def test_compare_and_set_on_a_missing_session_writes_nothing(store):
    assert not store.compare_and_set(record(version=1), expected_version=0)
    assert store.get("s1") is None


def test_replies_keep_their_order(store):
    replies = {f"r{i}": bytes([i]) * i for i in range(10, 0, -1)}
    store.create(record(replies=replies))
    assert list(store.get("s1").replies.items()) == list(replies.items())


def test_a_transition_keeps_what_creation_fixed(store):
    store.create(record(metadata=b"meta", owner="alice"))
    store.compare_and_set(
        record(version=1, state=b"new", outbox=b"[]", replies={"r": b"1"}, metadata=b"meta", owner="alice"), 0
    )
    got = store.get("s1")
    assert (got.kb_id, got.metadata, got.owner, got.state, got.outbox, got.replies) == (
        KB,
        b"meta",
        "alice",
        b"new",
        b"[]",
        {"r": b"1"},
    )


def test_touch_sets_the_ttl_but_not_the_version(store):
    store.create(record(ttl=60))
    assert store.touch("s1", 120, time.time() + 120)
    got = store.get("s1")
    assert (got.version, got.ttl_seconds) == (0, 120)
    assert not store.touch("other", 120, time.time() + 120)


def expire_now(store, session_id: str) -> None:
    """Move a live session's expiry into the past: no test waits for a TTL to run out."""
    assert store.touch(session_id, 1, time.time() - 1)
    time.sleep(0.01)  # a lower bound only: Redis holds an expiry of at least 1 ms


def test_expiry_then_tombstone(store):
    store.create(record(ttl=60))
    assert store.status("s1").exists
    expire_now(store, "s1")
    assert store.get("s1") is None
    status = store.status("s1")
    assert (status.exists, status.expired) == (False, True)
    assert not store.compare_and_set(record(version=1), expected_version=0)
    assert not store.touch("s1", 60, time.time() + 60)


def test_delete_forgets_the_session_entirely(store):
    store.create(record())
    assert store.delete("s1")
    assert not store.delete("s1")
    status = store.status("s1")
    assert store.get("s1") is None and (status.exists, status.expired) == (False, False)


def test_concurrent_increments_lose_nothing(store):
    """16 threads x 25 read-modify-write loops on one record: every increment lands."""
    store.create(record(state=b"0"))

    def increment() -> int:
        conflicts = 0
        while True:
            current = store.get("s1")
            updated = current.evolve(version=current.version + 1, state=str(int(current.state) + 1).encode())
            if store.compare_and_set(updated, current.version):
                return conflicts
            conflicts += 1

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: increment(), range(400)))
    final = store.get("s1")
    assert (final.version, final.state) == (400, b"400")


# --- Redis specifics ------------------------------------------------------------------------


def test_keys_carry_the_session_id_as_hash_tag(redis_server):
    store = RedisSessionStore.from_url(redis_server.url)
    store.create(record("abc123"))
    assert session_key("abc123") == "kato:session:{abc123}"
    assert tombstone_key("abc123") == "kato:session:{abc123}:expired"
    assert sorted(store.client.keys("*")) == [b"kato:session:{abc123}", b"kato:session:{abc123}:expired"]
    fields = store.client.hgetall("kato:session:{abc123}")
    assert set(fields) == {
        b"state",
        b"version",
        b"kb_id",
        b"ttl_seconds",
        b"expires_at",
        b"created_at",
        b"metadata",
        b"owner",
        b"outbox",
        b"replies",
        b"writer",
    }
    assert 0 < store.client.pttl("kato:session:{abc123}") <= 60_000
    assert 86_400_000 < store.client.pttl("kato:session:{abc123}:expired") <= 86_460_000
    # the hash tag puts both keys in the slot of the bare id: one Cluster node, one script
    assert key_slot(b"kato:session:{abc123}") == key_slot(b"kato:session:{abc123}:expired") == key_slot(b"abc123")
    store.close()


def test_reads_never_extend_the_ttl(redis_server):
    store = RedisSessionStore.from_url(redis_server.url)
    store.create(record("s1", ttl=60))
    before = store.client.pttl(session_key("s1"))
    for _ in range(3):
        store.get("s1")
        store.status("s1")
    assert store.client.pttl(session_key("s1")) <= before
    store.close()


def test_a_compare_and_set_resent_after_a_lost_reply_recognises_its_own_write(redis_server, monkeypatch):
    """The CAS script is retry-safe: the same writer token at the new version reports success."""
    store = RedisSessionStore.from_url(redis_server.url)
    store.create(record())
    monkeypatch.setattr(store, "_new_writer", lambda: "fixedtoken")
    assert store.compare_and_set(record(version=1), 0)
    assert store.compare_and_set(record(version=1), 0)  # as a re-send would
    monkeypatch.setattr(store, "_new_writer", lambda: "othertoken")
    assert not store.compare_and_set(record(version=1), 0)  # another writer still loses
    store.close()


def test_unreachable_redis_raises_store_unavailable_naming_the_address_not_the_password(redis_server):
    store = RedisSessionStore.from_url(redis_server.url)
    store.create(record("before"))  # the pool now holds a connection the crash will break
    with_password = RedisSessionStore.from_url(f"redis://kato:s3cret@127.0.0.1:{redis_server.port}/0")
    redis_server.kill()
    for call in (
        lambda s: s.get("s1"),
        lambda s: s.create(record()),
        lambda s: s.status("s1"),
        lambda s: s.compare_and_set(record(version=1), 0),
        lambda s: s.touch("s1", 1, time.time() + 1),
        lambda s: s.delete("s1"),
    ):
        for each in (store, with_password):
            with pytest.raises(StoreUnavailable) as raised:
                call(each)
            assert f"Redis at redis://127.0.0.1:{redis_server.port}/0 did not answer" in str(raised.value)
            assert "s3cret" not in str(raised.value) and "kato" not in str(raised.value)
    redis_server.start()  # same port, empty (--save '')
    assert store.get("before") is None  # back by itself: same store object, no restart
    store.create(record())
    assert store.get("s1").version == 0
    store.close()
    with_password.close()


def test_redact_url_drops_credentials_and_query():
    assert redact_url("redis://u:p@h:1/2?password=x") == "redis://h:1/2"
    assert redact_url("rediss://:p@[::1]:6380") == "rediss://[::1]:6380"
    assert redact_url("unix:///run/redis.sock?password=x") == "unix:///run/redis.sock"


# --- the runner under real concurrency ------------------------------------------------------


@pytest.fixture
def kb():
    store = MemoryStore()
    yield store
    store.close()


@pytest.fixture
def runner(store, kb):
    """The runner as the server builds it: Redis calls on a lane of 16 threads, the
    in-process store called inline."""
    lane = Lane("session", 16)

    async def apply(kb_id, effects, origin):
        kb.apply(kb_id, effects, origin)

    adapted = InlineSessionStore(store) if isinstance(store, MemorySessionStore) else OffloadedSessionStore(store, lane)
    yield SessionRunner(adapted, apply, STATE_CODEC)
    lane.close()


def observing(kb: MemoryStore, symbol: str):
    async def step(state):
        return engine.observe(state, Observation(strings=(symbol,)), kb.view(KB))

    return step


async def learning(state):
    return engine.learn(state)


def test_concurrent_observes_on_one_session_all_land(runner, kb):
    async def scenario():
        session = (await runner.create(engine.new_session(KB), 60, b"")).session_id
        symbols = [f"e{i:03d}" for i in range(200)]
        in_flight = asyncio.Semaphore(8)  # 8 writers at a time on one session

        async def observe(symbol: str) -> None:
            async with in_flight:
                await runner.transact(session, observing(kb, symbol), lambda o: None)

        await asyncio.gather(*(observe(s) for s in symbols))
        stm = runner.state_of(await runner.load(session)).stm
        assert sorted(symbol for event in stm for symbol in event) == symbols
        assert (await runner.load(session)).version == 200

    asyncio.run(scenario())


def test_racing_learns_count_each_committed_transition_once(runner, kb):
    """Each round: two events, then 12 Learns at once. One commits the pattern; the rest
    find the STM empty (FAILED_PRECONDITION). The frequency is the number of rounds."""

    async def scenario():
        session = (await runner.create(engine.new_session(KB), 60, b"")).session_id
        learned: list[str] = []
        rounds, racers = 8, 12
        for _ in range(rounds):
            for symbol in ("a", "b"):
                await runner.transact(session, observing(kb, symbol), lambda o: None)

            async def race() -> str:
                try:
                    return (await runner.transact(session, learning, lambda o: o.result))[0]
                except EmptyStmError:
                    return ""

            names = [name for name in await asyncio.gather(*(race() for _ in range(racers))) if name]
            assert len(names) == 1
            learned += names
        pattern = kb.get_pattern(KB, learned[0])
        assert pattern.frequency == len(learned) == rounds

    asyncio.run(scenario())


def test_a_repeated_request_id_is_answered_not_reapplied(runner, kb):
    class Reply:
        def __init__(self, outcome: Outcome) -> None:
            self.name = outcome.result

        def SerializeToString(self, deterministic: bool = False) -> bytes:
            return self.name.encode()

    async def scenario():
        session = (await runner.create(engine.new_session(KB), 60, b"")).session_id
        for symbol in ("a", "b"):
            await runner.transact(session, observing(kb, symbol), lambda o: None)
        first, replay = await runner.transact(session, learning, Reply, request_id="req-1")
        again, replayed = await runner.transact(session, learning, Reply, request_id="req-1")
        assert replay is None and again is None and replayed == first.name.encode()
        assert kb.get_pattern(KB, first.name).frequency == 1
        assert (await runner.load(session)).version == 3

    asyncio.run(scenario())


def test_an_unknown_or_expired_session_says_which(runner, store):
    async def scenario():
        with pytest.raises(SessionNotFound, match="does not exist") as unknown:
            await runner.load("missing")
        assert unknown.value.metadata == {"sessionId": "missing", "expired": "false"}
        session = (await runner.create(engine.new_session(KB), 1, b"")).session_id
        expire_now(store, session)
        with pytest.raises(SessionNotFound, match="has expired") as expired:
            await runner.load(session)
        assert expired.value.metadata["expired"] == "true"

    asyncio.run(scenario())
