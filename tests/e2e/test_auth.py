"""API keys scoped to knowledge bases, against a real server (kato_grpc/server/auth.py).

Every rule is shown allowed and refused: authentication (no key, malformed, unknown),
roles (every RPC for every role), kb id patterns (kb_id, client-held state, server-held
session, stream), session ownership, open health and reflection, reload on SIGHUP
without dropping a connection, and keys kept in Redis.
"""

from __future__ import annotations

import hashlib
import json
import queue
import secrets
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.server.auth import METHOD_ROLES, REDIS_KEYS_HASH, Role
from tests.support.server import ServerProcess
from tests.support.state_keys import write_state_keys
from tests.support.waiting import HANG_GUARD, wait_until

DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PATTERN = "0" * 40


@dataclass(frozen=True)
class Key:
    name: str
    secret: str
    role: str
    kb_ids: tuple[str, ...]

    def entry(self) -> dict:
        return {
            "name": self.name,
            "key_sha256": hashlib.sha256(self.secret.encode()).hexdigest(),
            "kb_ids": list(self.kb_ids),
            "role": self.role,
        }

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.secret}"),)


def make_key(name: str, role: str, *kb_ids: str) -> Key:
    return Key(name, f"kato-{name}-{secrets.token_urlsafe(18)}", role, kb_ids)


KEYS = {
    key.name: key
    for key in (
        make_key("reader-a", "read", "team-a-*"),
        make_key("writer-a", "write", "team-a-*", "shared"),
        make_key("writer-a2", "write", "team-a-*"),
        make_key("admin-a", "admin", "team-a-*"),
        make_key("writer-b", "write", "team-b-*"),
    )
}
ROLE_KEYS = {"read": KEYS["reader-a"], "write": KEYS["writer-a"], "admin": KEYS["admin-a"]}
STATE_KEYS: list = []  # the auth server's state signing ring, set by its fixture


def write_keys(path: Path, keys) -> Path:
    path.write_text(json.dumps({"keys": [key.entry() for key in keys]}, indent=2))
    return path


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth")
    keys_file = write_keys(workdir / "keys.json", KEYS.values())
    STATE_KEYS[:] = [write_state_keys(workdir / "state-keys.json", "auth-test")]
    server = ServerProcess(
        [
            "--data-dir",
            str(workdir / "data"),
            "--auth-keys-file",
            str(keys_file),
            "--state-keys-file",
            str(workdir / "state-keys.json"),
            "--log-level",
            "DEBUG",
        ]
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def channel(auth_server):
    with grpc.insecure_channel(auth_server.target) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return api_grpc.KatoServiceStub(channel)


def kb(prefix: str = "team-a") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def call(stub, method: str, request, key: Key | None = None, metadata=()):
    """The response, or the grpc.RpcError the call ended with."""
    md = tuple(metadata) + (key.metadata if key else ())
    try:
        return getattr(stub, method)(request, metadata=md or None, timeout=15)
    except grpc.RpcError as error:
        return error


def code(outcome) -> grpc.StatusCode:
    return outcome.code() if isinstance(outcome, grpc.RpcError) else grpc.StatusCode.OK


def reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def state(kb_id: str, *events: list[str]) -> pb.SessionState:
    """A client-held state holding `events`, signed as the auth server signs."""
    made = pb.SessionState(kb_id=kb_id, stm=[pb.Event(symbols=e) for e in events])
    if events:
        STATE_KEYS[0].sign(made)
    return made


def request_for(method: str, kb_id: str, session_id: str = "no-such-session"):
    """A small valid-looking request of `method` on `kb_id` (client-held where there is a choice)."""
    s = state(kb_id, ["a", "b"])
    builders = {
        "Observe": lambda: api.ObserveRequest(state=s, observation=pb.Observation(strings=["x"])),
        "ObserveSequence": lambda: api.ObserveSequenceRequest(state=s, observations=[pb.Observation(strings=["y"])]),
        "Learn": lambda: api.LearnRequest(state=s),
        "Predict": lambda: api.PredictRequest(state=s),
        "ClearStm": lambda: api.ClearStmRequest(state=s),
        "ClearAll": lambda: api.ClearAllRequest(state=s),
        "GetStm": lambda: api.GetStmRequest(state=s),
        "GetPerceptData": lambda: api.GetPerceptDataRequest(state=s),
        "GetCognitionData": lambda: api.GetCognitionDataRequest(state=s),
        "UpdateConfig": lambda: api.UpdateConfigRequest(state=s, config=pb.SessionConfig(max_predictions=5)),
        "GetConfig": lambda: api.GetConfigRequest(state=s),
        "GetPattern": lambda: api.GetPatternRequest(kb_id=kb_id, name=PATTERN),
        "ListPatterns": lambda: api.ListPatternsRequest(kb_id=kb_id),
        "UpdatePattern": lambda: api.UpdatePatternRequest(kb_id=kb_id, name=PATTERN, frequency=2),
        "DeletePattern": lambda: api.DeletePatternRequest(kb_id=kb_id, name=PATTERN),
        "GetSymbolStats": lambda: api.GetSymbolStatsRequest(kb_id=kb_id),
        "GetSymbolAffinity": lambda: api.GetSymbolAffinityRequest(kb_id=kb_id),
        "ClearKnowledgeBase": lambda: api.ClearKnowledgeBaseRequest(kb_id=kb_id),
        "FinalizeTraining": lambda: api.FinalizeTrainingRequest(kb_id=kb_id),
        "ListKnowledgeBases": lambda: api.ListKnowledgeBasesRequest(),
        "CreateSession": lambda: api.CreateSessionRequest(kb_id=kb_id),
        "GetSession": lambda: api.GetSessionRequest(session_id=session_id),
        "DeleteSession": lambda: api.DeleteSessionRequest(session_id=session_id),
        "ExtendSession": lambda: api.ExtendSessionRequest(session_id=session_id, ttl_seconds=60),
        "UpdateSessionConfig": lambda: api.UpdateSessionConfigRequest(
            session_id=session_id, config=pb.SessionConfig(max_predictions=5)
        ),
        "SessionExists": lambda: api.SessionExistsRequest(session_id=session_id),
    }
    return builders[method]()


UNARY_METHODS = sorted(m for m in METHOD_ROLES if m != "StreamObservations")


def stream(stub, key: Key | None, opened: api.StreamOpen, *steps: api.StreamObservationsRequest):
    """All answers of a StreamObservations call, or the error it ended with."""
    messages = [api.StreamObservationsRequest(open=opened), *steps]
    try:
        return list(stub.StreamObservations(iter(messages), metadata=key.metadata if key else None, timeout=15))
    except grpc.RpcError as error:
        return error


def observation(*symbols: str) -> api.StreamObservationsRequest:
    return api.StreamObservationsRequest(observation=pb.Observation(strings=list(symbols)))


# --- open services -------------------------------------------------------------------------


def test_health_needs_no_key(channel):
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="kato.v1.KatoService"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_no_key(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    assert "kato.v1.KatoService" in {s.name for s in answer.list_services_response.service}


# --- authentication -------------------------------------------------------------------------


def test_a_call_without_a_key_is_unauthenticated(stub):
    error = call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb()))
    assert code(error) is UNAUTHENTICATED
    assert reason(error) == "API_KEY_MISSING"
    assert "authorization: Bearer" in error.details()


def test_an_unknown_key_is_unauthenticated_and_not_echoed(stub):
    secret = "kato-guessed-" + secrets.token_hex(12)
    error = call(
        stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb()), metadata=[("authorization", f"Bearer {secret}")]
    )
    assert code(error) is UNAUTHENTICATED
    assert reason(error) == "API_KEY_INVALID"
    assert secret not in error.details()
    assert secret not in repr(error.trailing_metadata())


def test_a_malformed_authorization_header_is_unauthenticated(stub):
    key = KEYS["writer-a"]
    error = call(
        stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb()), metadata=[("authorization", f"Basic {key.secret}")]
    )
    assert code(error) is UNAUTHENTICATED
    assert reason(error) == "API_KEY_MALFORMED"
    assert key.secret not in error.details()


def test_a_known_key_is_authenticated(stub):
    assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb()), KEYS["reader-a"])) is grpc.StatusCode.OK


def test_the_key_is_never_echoed_or_logged(stub, auth_server):
    """Refusals of every kind name the key's name, never the key; the DEBUG log redacts it."""
    key = KEYS["reader-a"]
    outcomes = [
        call(stub, "Observe", request_for("Observe", kb()), key),  # role
        call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb("team-b")), key),  # kb
        call(stub, "GetSession", api.GetSessionRequest(session_id="x"), key),  # not found
    ]
    other_secret = f"kato-other-{secrets.token_urlsafe(18)}"  # a credential under a header auth does not read
    call(
        stub,
        "ListPatterns",
        api.ListPatternsRequest(kb_id=kb()),
        key,
        metadata=[("x-api-key", other_secret), ("x-request-id", "req-logged")],
    )
    for outcome in outcomes:
        assert isinstance(outcome, grpc.RpcError)
        assert key.secret not in outcome.details()
        assert key.secret not in repr(outcome.trailing_metadata())
        assert key.secret not in repr(outcome.initial_metadata())
        assert "x-request-id" in dict(outcome.trailing_metadata())  # refusals carry it too
    fence = ("x-request-id", "req-fence")  # logged after every line of the calls above
    call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb()), key, metadata=[fence])
    auth_server.wait_for_output("req-fence")
    log = "".join(auth_server.output)
    assert "[redacted]" in log  # the server runs at DEBUG and logs call metadata...
    assert not any(k.secret in log for k in KEYS.values())  # ...never a key
    assert other_secret not in log and "x-api-key" in log  # the allow-list, not a deny-list
    assert "req-logged" in log  # an allowed key keeps its value


# --- roles --------------------------------------------------------------------------------------


def test_every_rpc_is_in_the_role_table():
    methods = set(api.DESCRIPTOR.services_by_name["KatoService"].methods_by_name)
    assert set(METHOD_ROLES) == methods


@pytest.mark.parametrize("role", ["read", "write", "admin"])
@pytest.mark.parametrize("method", UNARY_METHODS)
def test_each_rpc_needs_its_role(stub, method, role):
    """Allowed for the method's role and above (any outcome but a refusal), refused below."""
    key = ROLE_KEYS[role]
    outcome = call(stub, method, request_for(method, kb()), key)
    if Role[role.upper()] >= METHOD_ROLES[method]:
        assert code(outcome) not in (DENIED, UNAUTHENTICATED), outcome
    else:
        assert code(outcome) is DENIED
        assert reason(outcome) == "ROLE_INSUFFICIENT"
        assert f"{method} needs {METHOD_ROLES[method].name.lower()}" in outcome.details()


def test_read_role_predicts_on_a_client_held_state(stub):
    answer = call(stub, "Predict", request_for("Predict", kb()), KEYS["reader-a"])
    assert isinstance(answer, api.PredictResponse)


def test_the_write_role_learns_and_the_admin_role_clears_the_knowledge_base(stub):
    kb_id = kb()
    learned = call(stub, "Learn", api.LearnRequest(state=state(kb_id, ["a"], ["b"])), KEYS["writer-a"])
    assert learned.pattern_name
    assert (
        code(call(stub, "ClearKnowledgeBase", api.ClearKnowledgeBaseRequest(kb_id=kb_id), KEYS["writer-a"])) is DENIED
    )
    assert (
        code(call(stub, "ClearKnowledgeBase", api.ClearKnowledgeBaseRequest(kb_id=kb_id), KEYS["admin-a"]))
        is grpc.StatusCode.OK
    )
    stats = call(stub, "GetSymbolStats", api.GetSymbolStatsRequest(kb_id=kb_id), KEYS["reader-a"])
    assert stats.total_unique_patterns == 0


def test_the_stream_needs_the_write_role(stub):
    opened = api.StreamOpen(state=state(kb()))
    refused = stream(stub, KEYS["reader-a"], opened, observation("a"))
    assert code(refused) is DENIED and reason(refused) == "ROLE_INSUFFICIENT"
    answers = stream(stub, KEYS["writer-a"], opened, observation("a"), observation("b"))
    assert [a.WhichOneof("answer") for a in answers] == ["opened", "observed", "observed", "closed"]


# --- knowledge-base scope ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ListPatterns", "GetSymbolStats", "CreateSession", "DeletePattern"])
def test_a_kb_id_request_outside_the_patterns_is_denied(stub, method):
    key = KEYS["writer-a"]
    inside = call(stub, method, request_for(method, kb("team-a")), key)
    assert code(inside) not in (DENIED, UNAUTHENTICATED)
    outside = call(stub, method, request_for(method, kb("team-b")), key)
    assert code(outside) is DENIED and reason(outside) == "KB_NOT_ALLOWED"
    assert "may not use knowledge base 'team-b-" in outside.details()


def test_patterns_match_whole_kb_ids(stub):
    key = KEYS["writer-a"]  # team-a-* and shared
    assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id="shared"), key)) is grpc.StatusCode.OK
    for kb_id in ("team-ab", "shared-2", "team-A-1", "xteam-a-1"):
        assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), key)) is DENIED, kb_id


def test_a_client_held_state_outside_the_patterns_is_denied(stub):
    for method in ("Observe", "Predict", "GetStm"):
        assert code(call(stub, method, request_for(method, kb("team-b")), KEYS["writer-a"])) is DENIED
        assert code(call(stub, method, request_for(method, kb("team-b")), KEYS["writer-b"])) is grpc.StatusCode.OK


def test_a_stream_outside_the_patterns_is_denied(stub):
    refused = stream(stub, KEYS["writer-a"], api.StreamOpen(state=state(kb("team-b"))), observation("a"))
    assert code(refused) is DENIED and reason(refused) == "KB_NOT_ALLOWED"


def test_a_request_naming_no_kb_reaches_the_servicer(stub):
    """Neither state nor session_id: the servicer rejects it, auth has nothing to decide."""
    outcome = call(stub, "Predict", api.PredictRequest(), KEYS["reader-a"])
    assert code(outcome) is grpc.StatusCode.INVALID_ARGUMENT


# --- server-held sessions belong to their creator ------------------------------------------------


def create_session(stub, key: Key, kb_id: str) -> str:
    return call(stub, "CreateSession", api.CreateSessionRequest(kb_id=kb_id), key).session.session_id


def not_found_like_an_unknown_id(stub, error, session_id: str, key: Key) -> None:
    """`error` reads exactly as the NOT_FOUND of an id that never existed."""
    assert code(error) is NOT_FOUND
    unknown_id = uuid.uuid4().hex
    unknown = call(stub, "GetSession", api.GetSessionRequest(session_id=unknown_id), key)
    assert error.details() == unknown.details().replace(unknown_id, session_id)
    assert reason(error) == reason(unknown) == "SESSION_NOT_FOUND"


def test_a_session_is_its_creators(stub):
    owner = KEYS["writer-a"]
    kb_id = kb()
    session_id = create_session(stub, owner, kb_id)
    observed = call(
        stub, "Observe", api.ObserveRequest(session_id=session_id, observation=pb.Observation(strings=["a"])), owner
    )
    assert observed.stm_length == 1
    assert call(stub, "GetSession", api.GetSessionRequest(session_id=session_id), owner).session.kb_id == kb_id
    assert call(stub, "SessionExists", api.SessionExistsRequest(session_id=session_id), owner).exists
    assert [list(e.symbols) for e in call(stub, "GetStm", api.GetStmRequest(session_id=session_id), owner).stm] == [
        ["a"]
    ]
    answers = stream(stub, owner, api.StreamOpen(session_id=session_id), observation("b"))
    assert [a.WhichOneof("answer") for a in answers] == ["opened", "observed"]
    assert (
        code(call(stub, "DeleteSession", api.DeleteSessionRequest(session_id=session_id), owner)) is grpc.StatusCode.OK
    )


@pytest.mark.parametrize("other", ["writer-a2", "admin-a"])
def test_another_key_cannot_read_change_or_delete_a_session(stub, other):
    """Even with the right role and kb patterns, and knowing the id: the session does not exist."""
    owner, intruder = KEYS["writer-a"], KEYS[other]
    session_id = create_session(stub, owner, kb())
    call(stub, "Observe", api.ObserveRequest(session_id=session_id, observation=pb.Observation(strings=["a"])), owner)
    attempts = {
        "GetSession": api.GetSessionRequest(session_id=session_id),
        "GetStm": api.GetStmRequest(session_id=session_id),
        "Predict": api.PredictRequest(session_id=session_id),
        "Observe": api.ObserveRequest(session_id=session_id, observation=pb.Observation(strings=["evil"])),
        "Learn": api.LearnRequest(session_id=session_id),
        "ClearStm": api.ClearStmRequest(session_id=session_id),
        "UpdateSessionConfig": api.UpdateSessionConfigRequest(
            session_id=session_id, config=pb.SessionConfig(max_predictions=1)
        ),
        "ExtendSession": api.ExtendSessionRequest(session_id=session_id, ttl_seconds=5),
        "DeleteSession": api.DeleteSessionRequest(session_id=session_id),
    }
    for method, request in attempts.items():
        not_found_like_an_unknown_id(stub, call(stub, method, request, intruder), session_id, intruder)
    exists = call(stub, "SessionExists", api.SessionExistsRequest(session_id=session_id), intruder)
    assert (exists.exists, exists.expired) == (False, False)
    refused = stream(stub, intruder, api.StreamOpen(session_id=session_id), observation("evil"))
    not_found_like_an_unknown_id(stub, refused, session_id, intruder)
    # Nothing changed for the owner.
    stm = call(stub, "GetStm", api.GetStmRequest(session_id=session_id), owner)
    assert [list(e.symbols) for e in stm.stm] == [["a"]]
    assert call(stub, "GetSession", api.GetSessionRequest(session_id=session_id), owner).session.ttl_seconds == 3600


def test_an_unknown_session_is_not_found_for_any_key(stub):
    outcome = call(stub, "GetSession", api.GetSessionRequest(session_id="nope"), KEYS["writer-a"])
    assert code(outcome) is NOT_FOUND


# --- reload on SIGHUP ----------------------------------------------------------------------------


def wait_for(predicate, timeout: float = HANG_GUARD) -> None:
    wait_until(predicate, "the reload", timeout)


def test_sighup_reloads_the_keys_without_dropping_the_connection(tmp_path):
    old, new = make_key("rotating", "write", "team-a-*"), make_key("rotating-new", "write", "team-a-*")
    keys_file = write_keys(tmp_path / "keys.json", [old])
    server = ServerProcess(["--data-dir", str(tmp_path / "data"), "--auth-keys-file", str(keys_file)]).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            states: list[grpc.ChannelConnectivity] = []
            channel.subscribe(states.append, try_to_connect=True)
            stub = api_grpc.KatoServiceStub(channel)
            kb_id = kb()
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), old)) is grpc.StatusCode.OK
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), new)) is UNAUTHENTICATED
            # A stream opened with the old key, kept open across the reload.
            pending: queue.Queue = queue.Queue()
            pending.put(api.StreamObservationsRequest(open=api.StreamOpen(state=state(kb_id))))

            def requests():
                while True:
                    item = pending.get()
                    if item is None:
                        return
                    yield item

            answers = stub.StreamObservations(requests(), metadata=old.metadata, timeout=30)
            assert next(answers).WhichOneof("answer") == "opened"

            write_keys(keys_file, [new])
            server.process.send_signal(signal.SIGHUP)
            wait_for(
                lambda: code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), old)) is UNAUTHENTICATED
            )
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), new)) is grpc.StatusCode.OK
            # The connection was never dropped: the stream opened before the reload still answers.
            pending.put(observation("after-reload"))
            assert next(answers).observed.stm_length == 1
            pending.put(None)
            assert next(answers).WhichOneof("answer") == "closed"
            # ...and the channel went READY once and never left it.
            assert states[-1] is grpc.ChannelConnectivity.READY
            assert states.count(grpc.ChannelConnectivity.READY) == 1
            assert grpc.ChannelConnectivity.TRANSIENT_FAILURE not in states

            # An invalid file on SIGHUP is refused and the keys in use are kept.
            keys_file.write_text("{not json")
            server.process.send_signal(signal.SIGHUP)
            wait_for(lambda: "keys not reloaded" in "".join(server.output))
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), new)) is grpc.StatusCode.OK
            assert server.process.poll() is None
    finally:
        server.stop()


def test_a_reload_narrowing_a_keys_patterns_applies_to_its_sessions(tmp_path):
    key = make_key("narrowed", "write", "team-a-*")
    keys_file = write_keys(tmp_path / "keys.json", [key])
    server = ServerProcess(["--data-dir", str(tmp_path / "data"), "--auth-keys-file", str(keys_file)]).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = api_grpc.KatoServiceStub(channel)
            session_id = create_session(stub, key, kb("team-a"))
            write_keys(keys_file, [Key(key.name, key.secret, key.role, ("team-z-*",))])
            server.process.send_signal(signal.SIGHUP)
            wait_for(
                lambda: code(call(stub, "GetSession", api.GetSessionRequest(session_id=session_id), key)) is DENIED
            )
    finally:
        server.stop()


def test_an_invalid_keys_file_stops_the_server_at_start(tmp_path):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps({"keys": [{"name": "x", "key_sha256": "not-a-digest", "kb_ids": ["*"], "role": "read"}]})
    )
    with pytest.raises(RuntimeError, match="key_sha256 must be 64 hex digits"):
        ServerProcess(["--data-dir", str(tmp_path / "data"), "--auth-keys-file", str(keys_file)]).start(timeout=20)


def test_a_toml_keys_file_works(tmp_path):
    key = make_key("toml-key", "read", "team-a-*")
    entry = key.entry()
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(
        f'[[keys]]\nname = "{entry["name"]}"\nkey_sha256 = "{entry["key_sha256"]}"\n'
        f'kb_ids = ["team-a-*"]\nrole = "read"\n'
    )
    server = ServerProcess(["--data-dir", str(tmp_path / "data"), "--auth-keys-file", str(keys_file)]).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = api_grpc.KatoServiceStub(channel)
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb()), key)) is grpc.StatusCode.OK
            assert code(call(stub, "Observe", request_for("Observe", kb()), key)) is DENIED
    finally:
        server.stop()


def test_auth_is_off_by_default(client, kb_id):
    """The shared default server asks for no key."""
    session = client.session(kb_id)
    session.observe(["a"])
    assert session.stm() == [["a"]]


# --- keys in Redis -------------------------------------------------------------------------------


def test_keys_in_redis(shared_redis_server, tmp_path):
    import redis

    r = redis.Redis.from_url(shared_redis_server.url)
    key = make_key("redis-writer", "write", "team-r-*")
    other = make_key("redis-writer-2", "write", "team-r-*")
    for k in (key, other):
        entry = k.entry()
        r.hset(
            REDIS_KEYS_HASH, entry["key_sha256"], json.dumps({"name": k.name, "kb_ids": list(k.kb_ids), "role": k.role})
        )
    server = ServerProcess(
        ["--data-dir", str(tmp_path / "data"), "--redis-url", shared_redis_server.url, "--auth-redis-keys", "true"]
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = api_grpc.KatoServiceStub(channel)
            kb_id = kb("team-r")
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), key)) is grpc.StatusCode.OK
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb("team-a")), key)) is DENIED
            unknown = make_key("unknown", "write", "*")
            assert code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), unknown)) is UNAUTHENTICATED
            # Sessions live in the same Redis and keep their owner there.
            session_id = create_session(stub, key, kb_id)
            assert (
                code(call(stub, "GetSession", api.GetSessionRequest(session_id=session_id), key)) is grpc.StatusCode.OK
            )
            not_found_like_an_unknown_id(
                stub, call(stub, "GetSession", api.GetSessionRequest(session_id=session_id), other), session_id, other
            )
            # Revoked in Redis: refused once the cache entry lapses (SIGHUP empties the cache at once).
            r.hdel(REDIS_KEYS_HASH, key.entry()["key_sha256"])
            server.process.send_signal(signal.SIGHUP)
            wait_for(
                lambda: code(call(stub, "ListPatterns", api.ListPatternsRequest(kb_id=kb_id), key)) is UNAUTHENTICATED
            )
    finally:
        server.stop()
        r.hdel(REDIS_KEYS_HASH, other.entry()["key_sha256"])
        r.close()


def test_sighup_reaches_every_worker(tmp_path):
    """With --workers 2 the parent forwards SIGHUP: new connections to either worker see the new keys."""
    from tests.support.server import free_service_port

    port = free_service_port()
    old, new = make_key("workers-old", "read", "team-a-*"), make_key("workers-new", "read", "team-a-*")
    keys_file = write_keys(tmp_path / "keys.json", [old])
    server = ServerProcess(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "--auth-keys-file",
            str(keys_file),
            "--workers",
            "2",
            "--port",
            str(port),
        ]
    ).start()

    def fresh_calls(key: Key, n: int = 12) -> set[grpc.StatusCode]:
        codes = set()
        for _ in range(n):  # a new connection each time: the kernel spreads them over the workers
            with grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                codes.add(
                    code(
                        call(
                            api_grpc.KatoServiceStub(channel), "ListPatterns", api.ListPatternsRequest(kb_id=kb()), key
                        )
                    )
                )
        return codes

    try:
        try:
            wait_for(lambda: "".join(server.output).count("listening on") >= 2)  # both workers are up
        except AssertionError:
            raise AssertionError("the second worker never started:\n" + "".join(server.output)) from None
        assert fresh_calls(old) == {grpc.StatusCode.OK}
        write_keys(keys_file, [new])
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "".join(server.output).count("reloaded 1 API keys") == 2)
        assert fresh_calls(old) == {UNAUTHENTICATED}
        assert fresh_calls(new) == {grpc.StatusCode.OK}
    finally:
        server.stop()
