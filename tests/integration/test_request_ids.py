"""A request_id is honoured for a stated time, not a count (issue 13; sessions/request_ids.py).

Against real servers (in-process sessions, and Redis): a retry after many newer requests
is still answered with its first reply and not applied again; a retry whose reply was too
large to keep is ALREADY_EXISTS, still not applied; a client-held Learn retried with its
request id and state stores nothing twice. With an injected clock, the window's end is
where an id is forgotten, and never sooner than the session's TTL.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core import engine
from kato_grpc.core.model import Observation
from kato_grpc.kb.memory import MemoryStore
from kato_grpc.server.execution import InlineSessionStore
from kato_grpc.server.state_codec import STATE_CODEC
from kato_grpc.sessions.memory import MemorySessionStore
from kato_grpc.sessions.request_ids import (
    MAX_LEDGER_REPLY_BYTES,
    RECENT_REPLIES,
    MemoryLedger,
    RequestAlreadyApplied,
)
from kato_grpc.sessions.runner import SessionRunner
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e  # starts `kato-grpc serve` processes


@pytest.fixture(scope="module", params=["memory", "redis"])
def stub(request, tmp_path_factory):
    flags = ["--data-dir", str(tmp_path_factory.mktemp("request-ids"))]
    if request.param == "redis":
        flags += ["--redis-url", request.getfixturevalue("shared_redis_server").url]
    server = ServerProcess(flags).start()
    with grpc.insecure_channel(server.target) as channel:
        yield api_grpc.KatoServiceStub(channel)
    server.stop()


def kb() -> str:
    return f"rid-{uuid.uuid4().hex[:10]}"


def observe(stub, session_id: str, symbol: str, request_id: str) -> api.ObserveResponse:
    return stub.Observe(
        api.ObserveRequest(session_id=session_id, observation=pb.Observation(strings=[symbol]), request_id=request_id),
        timeout=30,
    )


def test_a_retry_after_many_newer_requests_gets_its_first_reply(stub):
    kb_id = kb()
    session_id = stub.CreateSession(api.CreateSessionRequest(kb_id=kb_id), timeout=30).session.session_id
    for symbol in ("a", "b"):
        observe(stub, session_id, symbol, f"obs-{symbol}")
    learned = stub.Learn(api.LearnRequest(session_id=session_id, request_id="learn-1"), timeout=30)
    replies = [observe(stub, session_id, f"s{i}", f"obs-{i}") for i in range(3 * RECENT_REPLIES)]
    assert stub.Learn(api.LearnRequest(session_id=session_id, request_id="learn-1"), timeout=30) == learned
    assert observe(stub, session_id, "s0", "obs-0") == replies[0]  # not observed twice: same time, same length
    pattern = stub.GetPattern(api.GetPatternRequest(kb_id=kb_id, name=learned.pattern_name), timeout=30).pattern
    assert pattern.frequency == 1
    stm = stub.GetStm(api.GetStmRequest(session_id=session_id), timeout=30).stm
    assert [e.symbols[0] for e in stm] == [f"s{i}" for i in range(3 * RECENT_REPLIES)]


def test_a_retry_whose_reply_was_not_kept_is_already_exists_and_not_applied(stub):
    session_id = stub.CreateSession(api.CreateSessionRequest(kb_id=kb()), timeout=30).session.session_id
    # 4000 empty observations answer with 4000 results: a reply over MAX_LEDGER_REPLY_BYTES.
    big = api.ObserveSequenceRequest(
        session_id=session_id,
        request_id="big",
        observations=[pb.Observation(unique_id=f"u{i:020d}") for i in range(4000)],
    )
    assert stub.ObserveSequence(big, timeout=60).ByteSize() > MAX_LEDGER_REPLY_BYTES
    assert stub.ObserveSequence(big, timeout=60).results[-1].time == 4000  # kept in the record: answered
    for i in range(RECENT_REPLIES):
        observe(stub, session_id, f"s{i}", f"obs-{i}")
    before = stub.GetCognitionData(api.GetCognitionDataRequest(session_id=session_id), timeout=30)
    with pytest.raises(grpc.RpcError) as raised:
        stub.ObserveSequence(big, timeout=60)
    error = raised.value
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS, error.details()
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in rpc_status.from_call(error).details)
    assert info.reason == "REQUEST_ALREADY_APPLIED" and info.metadata["requestId"] == "big"
    assert stub.GetCognitionData(api.GetCognitionDataRequest(session_id=session_id), timeout=30) == before
    assert before.time == 4000 + RECENT_REPLIES


def test_a_client_held_learn_retried_with_its_request_id_is_stored_once(stub):
    kb_id = kb()
    state = pb.SessionState(kb_id=kb_id)
    for symbol in ("a", "b"):
        state = stub.Observe(
            api.ObserveRequest(state=state, observation=pb.Observation(strings=[symbol])), timeout=30
        ).state
    first = stub.Learn(api.LearnRequest(state=state, request_id="learn-c"), timeout=30)
    again = stub.Learn(api.LearnRequest(state=state, request_id="learn-c"), timeout=30)
    assert again == first
    name = first.pattern_name
    assert stub.GetPattern(api.GetPatternRequest(kb_id=kb_id, name=name), timeout=30).pattern.frequency == 1
    stub.Learn(api.LearnRequest(state=state, request_id="learn-d"), timeout=30)  # a new request: learned again
    stub.Learn(api.LearnRequest(state=state), timeout=30)  # no id: learned again
    assert stub.GetPattern(api.GetPatternRequest(kb_id=kb_id, name=name), timeout=30).pattern.frequency == 3


def test_a_request_id_over_128_characters_is_invalid(stub):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Learn(api.LearnRequest(state=pb.SessionState(kb_id=kb()), request_id="r" * 129), timeout=30)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "request_id" in raised.value.details()


# --- the window, with an injected clock ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class SyncRunner:
    """The (async) runner as the server builds it over the in-process store, driven call by
    call from these synchronous tests."""

    def __init__(self, store: MemorySessionStore, kb_store: MemoryStore, **kwargs) -> None:
        async def apply(kb_id, effects, origin):
            kb_store.apply(kb_id, effects, origin)

        self._runner = SessionRunner(InlineSessionStore(store), apply, STATE_CODEC, **kwargs)

    def create(self, state, ttl_seconds, metadata):
        return asyncio.run(self._runner.create(state, ttl_seconds, metadata))

    def transact(self, session_id, step, respond, request_id=""):
        async def stepped(state):
            return step(state)

        return asyncio.run(self._runner.transact(session_id, stepped, respond, request_id))

    def access(self, session_id):
        return asyncio.run(self._runner.access(session_id))

    def load(self, session_id):
        return asyncio.run(self._runner.load(session_id))


class Reply:
    def __init__(self, outcome) -> None:
        self.text = f"{outcome.result}".encode() * (outcome.state.time or 1)

    def SerializeToString(self, deterministic: bool = False) -> bytes:
        return self.text


@pytest.mark.parametrize("ttl, window", [(60, 600), (900, 600)])
def test_an_id_is_remembered_for_its_window_and_never_less_than_the_ttl(ttl, window):
    clock, kb_store = Clock(), MemoryStore()
    ledger = MemoryLedger(clock)
    runner = SyncRunner(
        MemorySessionStore(clock), kb_store, clock=clock, request_ids=ledger, request_window_seconds=window
    )
    session = runner.create(engine.new_session("k"), ttl, b"").session_id

    def observe_step(symbol):
        return lambda state: engine.observe(state, Observation(strings=(symbol,)), kb_store.view("k"))

    runner.transact(session, observe_step("first"), Reply, request_id="first")
    for i in range(RECENT_REPLIES):  # push "first" out of the record, into the ledger
        clock.now += 1
        runner.transact(session, observe_step(f"s{i}"), Reply, request_id=f"r{i}")
    assert len(ledger) == 1
    remembered = max(window, ttl)

    def advance_to(moment: float) -> None:
        while clock.now < moment:  # accessed every half TTL: the session stays alive
            clock.now = min(moment, clock.now + ttl / 2)
            runner.access(session)

    advance_to(1_000_000.0 + remembered - 1)
    assert runner.transact(session, observe_step("first"), Reply, request_id="first")[0] is None  # answered
    advance_to(1_000_000.0 + remembered + 1)
    response, replay = runner.transact(session, observe_step("first"), Reply, request_id="first")
    assert replay is None and response is not None  # the window has passed: a new request


def test_an_evicted_reply_too_large_to_keep_raises_already_applied():
    clock, kb_store = Clock(), MemoryStore()
    runner = SyncRunner(MemorySessionStore(clock), kb_store, clock=clock)
    session = runner.create(engine.new_session("k"), 3600, b"").session_id

    class Big:
        def __init__(self, outcome) -> None:
            pass

        def SerializeToString(self, deterministic: bool = False) -> bytes:
            return b"x" * (MAX_LEDGER_REPLY_BYTES + 1)

    step = lambda state: engine.observe(state, Observation(strings=("a",)), kb_store.view("k"))  # noqa: E731
    runner.transact(session, step, Big, request_id="big")
    for i in range(RECENT_REPLIES):
        runner.transact(session, step, Big, request_id=f"r{i}")
    version = runner.load(session).version
    with pytest.raises(RequestAlreadyApplied, match="already applied"):
        runner.transact(session, step, Big, request_id="big")
    assert runner.load(session).version == version
