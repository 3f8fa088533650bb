"""Every error class of SPEC.md §10 through a real server, and "a rejected call changes nothing".

Each case checks the status code (as the client's typed error), the message naming the
field, the decoded `google.rpc.BadRequest` field violations and the `ErrorInfo` reason;
then that the knowledge base and both sessions (client-held and server-held) are
exactly as before the call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from kato_client import KatoClient
from kato_client.client import ServerSession, Session
from kato_client.errors import FailedPrecondition, InvalidArgument, KatoClientError, NotFound, ResourceExhausted

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api

ABSENT = "0" * 40  # a well-formed pattern name no KB holds


@dataclass
class World:
    """A KB with two patterns, a client-held and a server-held session with non-empty STMs."""

    client: KatoClient
    kb_id: str
    local: Session
    held: ServerSession
    pattern: str

    @classmethod
    def build(cls, client: KatoClient, kb_id: str) -> World:
        local = client.session(kb_id, config={"recall_threshold": 0.2})
        local.observe(["a"], emotives={"joy": 1.0}, metadata={"source": "test"})
        local.observe(["b"], vectors=[[0.5, 0.25]])
        pattern = local.learn()
        local.observe(["a"])
        held = client.server_session(kb_id)
        held.observe_sequence([{"strings": ["x", "y"]}, {"strings": ["z"]}], learn_at_end=True)
        held.observe(["x"], emotives={"calm": 0.5})
        return cls(client, kb_id, local, held, pattern)

    def snapshot(self) -> dict[str, object]:
        """Everything a rejected call must leave unchanged, as bytes."""

        def raw(message) -> bytes:
            return message.SerializeToString(deterministic=True)

        return {
            "symbol_stats": raw(self.client.symbol_stats(self.kb_id)),
            "patterns": [raw(p) for p in self.client.list_patterns(self.kb_id)],
            "client_state": raw(self.local.state),
            "client_predict": raw(self.local.predict()),
            "held_cognition": raw(self.held.cognition()),
            "held_config": raw(self.held.config()),
            "held_percept": raw(self.held.percept()),
        }


@dataclass(frozen=True)
class Rejection:
    call: Callable[[World], object]
    error: type[KatoClientError]
    reason: str
    field: str | None = None  # the BadRequest field violation, also named in the message
    names: str | None = None  # a value the message must name (when there is no field)


def list_patterns(kb_id: str, page_size: int = 0, page_token: str = "") -> Callable[[World], object]:
    return lambda w: w.client.call(
        "ListPatterns",
        api.ListPatternsRequest(kb_id=w.kb_id if kb_id == "" else kb_id, page_size=page_size, page_token=page_token),
    )


def token_of_another_kb(w: World) -> str:
    other = w.client.session(w.kb_id + "-other")
    for event in ("p", "q", "r"):
        other.observe([event])
        other.observe([event + "2"])
        other.learn()
    return w.client.call("ListPatterns", api.ListPatternsRequest(kb_id=w.kb_id + "-other", page_size=1)).next_page_token


CASES = {
    "config value, client-held": Rejection(
        lambda w: w.local.configure({"recall_threshold": 1.5}),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "config.recall_threshold",
    ),
    "config value, server-held": Rejection(
        lambda w: w.held.configure({"recall_threshold": -0.1}),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "config.recall_threshold",
    ),
    "config value at CreateSession": Rejection(
        lambda w: w.client.server_session(w.kb_id, config={"recall_threshold": math.nan}),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "config.recall_threshold",
    ),
    "config enum": Rejection(
        lambda w: w.local.configure({"stm_mode": "SIDEWAYS"}), InvalidArgument, "INVALID_ARGUMENT", "config.stm_mode"
    ),
    "kb_id of a KB call": Rejection(
        lambda w: w.client.symbol_stats("no spaces"), InvalidArgument, "INVALID_ARGUMENT", "kb_id"
    ),
    "kb_id of a client-held state": Rejection(
        lambda w: w.client.session("a/b").observe(["x"]), InvalidArgument, "INVALID_ARGUMENT", "state.kb_id"
    ),
    "kb_id at CreateSession": Rejection(
        lambda w: w.client.server_session("k" * 129), InvalidArgument, "INVALID_ARGUMENT", "kb_id"
    ),
    "non-finite vector, client-held": Rejection(
        lambda w: w.local.observe(["c"], vectors=[[0.5, math.inf]]),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "observation.vectors[0]",
    ),
    "non-finite vector, server-held": Rejection(
        lambda w: w.held.observe(["c"], vectors=[[math.nan, 1.0]]),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "observation.vectors[0]",
    ),
    "vector of another dimension": Rejection(
        lambda w: w.local.observe(["c"], vectors=[[1.0, 2.0, 3.0]]),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "observation.vectors[0]",
    ),
    "non-finite emotive": Rejection(
        lambda w: w.held.observe(["c"], emotives={"joy": math.nan}),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "observation.emotives['joy']",
    ),
    "one bad item of ObserveSequence": Rejection(
        lambda w: w.local.observe_sequence(
            [{"strings": ["c"]}, {"strings": ["d"]}, {"strings": ["e"], "vectors": [[math.nan, 0.0]]}],
            learn_after_each=True,
            learn_at_end=True,
        ),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "observations[2].vectors[0]",
    ),
    "neither state nor session_id": Rejection(
        lambda w: w.client.call("Observe", api.ObserveRequest()), InvalidArgument, "INVALID_ARGUMENT", "session"
    ),
    "Learn on an empty STM": Rejection(
        lambda w: w.client.session(w.kb_id).learn(), FailedPrecondition, "EMPTY_STM", names="empty"
    ),
    "Learn on an empty STM, server-held": Rejection(
        lambda w: w.client.server_session(w.kb_id).learn(), FailedPrecondition, "EMPTY_STM", names="empty"
    ),
    "GetPattern of an unknown pattern": Rejection(
        lambda w: w.client.get_pattern(w.kb_id, ABSENT), NotFound, "PATTERN_NOT_FOUND", names=ABSENT
    ),
    "DeletePattern of an unknown pattern": Rejection(
        lambda w: w.client.delete_pattern(w.kb_id, "PTRN|" + ABSENT), NotFound, "PATTERN_NOT_FOUND", names=ABSENT
    ),
    "UpdatePattern of an unknown pattern": Rejection(
        lambda w: w.client.update_pattern(w.kb_id, ABSENT, frequency=3), NotFound, "PATTERN_NOT_FOUND", names=ABSENT
    ),
    "bad pattern name": Rejection(
        lambda w: w.client.get_pattern(w.kb_id, "PTRN|xyz"), InvalidArgument, "INVALID_ARGUMENT", "name"
    ),
    "upper-case pattern name": Rejection(
        lambda w: w.client.delete_pattern(w.kb_id, w.pattern.upper()), InvalidArgument, "INVALID_ARGUMENT", "name"
    ),
    "UpdatePattern frequency 0": Rejection(
        lambda w: w.client.update_pattern(w.kb_id, w.pattern, frequency=0),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "frequency",
    ),
    "UpdatePattern unknown mask path": Rejection(
        lambda w: w.client.call(
            "UpdatePattern",
            api.UpdatePatternRequest(
                kb_id=w.kb_id, name=w.pattern, frequency=2, update_mask={"paths": ["frequency", "name"]}
            ),
        ),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "update_mask",
    ),
    "ListPatterns negative page_size": Rejection(
        list_patterns("", page_size=-1), InvalidArgument, "INVALID_ARGUMENT", "page_size"
    ),
    "ListPatterns garbage page_token": Rejection(
        list_patterns("", page_token="not-a-token"), InvalidArgument, "INVALID_ARGUMENT", "page_token"
    ),
    "ListPatterns page_token of another KB": Rejection(
        lambda w: list_patterns("", page_token=token_of_another_kb(w))(w),
        InvalidArgument,
        "INVALID_ARGUMENT",
        "page_token",
    ),
    "Observe on an unknown session": Rejection(
        lambda w: ServerSession(w.client, "no-such-session").observe(["c"]),
        NotFound,
        "SESSION_NOT_FOUND",
        names="no-such-session",
    ),
    "Predict on an unknown session": Rejection(
        lambda w: ServerSession(w.client, "no-such-session").predict(),
        NotFound,
        "SESSION_NOT_FOUND",
        names="no-such-session",
    ),
    "DeleteSession of an unknown session": Rejection(
        lambda w: ServerSession(w.client, "no-such-session").delete(),
        NotFound,
        "SESSION_NOT_FOUND",
        names="no-such-session",
    ),
}


def check_rejected(world: World, case: Rejection) -> KatoClientError:
    before = world.snapshot()
    state_sent = world.local.state.SerializeToString(deterministic=True)
    with pytest.raises(case.error) as caught:
        case.call(world)
    error = caught.value
    assert error.reason == case.reason
    if case.field is not None:
        assert case.field in error.message
        assert [v.field for v in error.field_violations] == [case.field]
        assert error.field_violations[0].description
    if case.names is not None:
        assert case.names in error.message
    assert world.local.state.SerializeToString(deterministic=True) == state_sent
    assert world.snapshot() == before
    return error


@pytest.fixture
def world(client: KatoClient, kb_id: str) -> World:
    return World.build(client, kb_id)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rejected_call_names_the_field_and_changes_nothing(world, case):
    check_rejected(world, case)


def test_not_found_pattern_carries_its_name_in_error_info(world):
    error = check_rejected(world, CASES["GetPattern of an unknown pattern"])
    assert error.metadata == {"kbId": world.kb_id, "patternName": ABSENT}


def test_config_error_names_value_and_range(world):
    error = check_rejected(world, CASES["config value, client-held"])
    assert "1.5" in error.message and "[0.0, 1.0]" in error.message


# --- server limits ---------------------------------------------------------------------
LIMIT_FLAGS = ("--max-symbol-bytes", "16", "--max-request-bytes", "65536", "--max-observations-per-sequence", "3")


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    from tests.support.server import ServerProcess

    server = ServerProcess(["--data-dir", str(tmp_path_factory.mktemp("kato-limited")), *LIMIT_FLAGS]).start()
    yield server
    server.stop()


@pytest.fixture
def limited_world(limited_server, kb_id):
    with KatoClient(limited_server.target) as kato:
        yield World.build(kato, kb_id)


def test_symbol_at_the_byte_limit_is_accepted(limited_world):
    limited_world.held.observe(["é" * 8])  # 16 UTF-8 bytes


@pytest.mark.parametrize("held", [False, True], ids=["client-held", "server-held"])
def test_symbol_over_max_symbol_bytes_is_resource_exhausted(limited_world, held):
    session = limited_world.held if held else limited_world.local
    error = check_rejected(
        limited_world,
        Rejection(
            lambda w: session.observe(["ok", "é" * 8 + "a"]),
            ResourceExhausted,
            "LIMIT_EXCEEDED",
            "observation.strings[1]",
        ),
    )
    assert "17 bytes" in error.message and "max_symbol_bytes=16" in error.message


def test_sequence_over_max_observations_per_sequence_is_resource_exhausted(limited_world):
    error = check_rejected(
        limited_world,
        Rejection(
            lambda w: w.local.observe_sequence([{"strings": [s]} for s in "cdef"], learn_at_end=True),
            ResourceExhausted,
            "LIMIT_EXCEEDED",
            "observations",
        ),
    )
    assert "max_observations_per_sequence=3" in error.message


def test_request_over_max_request_bytes_is_resource_exhausted(limited_world):
    symbols = [f"s{i:08d}" for i in range(8000)]  # ~88 kB on the wire, over the 64 KiB limit
    with pytest.raises(ResourceExhausted) as caught:
        limited_world.held.observe(symbols)
    assert "larger than max" in caught.value.message
    check_rejected(
        limited_world, Rejection(lambda w: w.local.observe(symbols), ResourceExhausted, "", names="larger than max")
    )


def test_a_response_may_be_larger_than_max_request_bytes(limited_world):
    """The limit is on requests: learned patterns must never be acknowledged with an error."""
    held = limited_world.client.server_session(limited_world.kb_id)
    symbols = [f"s{i:05d}" for i in range(4000)]  # ~36 kB requests; predictions repeat them
    held.observe(symbols)
    held.observe(["end"])
    learned = held.learn()
    held.observe(symbols)
    response = held.observe(["end"], return_predictions=True)
    assert response.ByteSize() > 65536
    assert response.predictions[0].name == learned.removeprefix("PTRN|")
