"""KatoService end to end: knowledge-base RPCs, sharing, atomicity, durability, shutdown.

Every test talks to a real `kato-grpc serve` process over loopback. Tests that kill or
stop a server, or need other flags, start their own (`start_server`).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
from dataclasses import fields

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kato_client import KatoClient
from kato_client.client import ServerSession, Session
from kato_client.errors import DeadlineExceeded, InvalidArgument, NotFound, ResourceExhausted

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import Limits
from kato_grpc.server.settings import Settings
from tests.support.server import ROOT


def raw(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def learn(session, *events: list[str]) -> str:
    """Observe `events` one by one and learn them; the learned `PTRN|` name."""
    for event in events:
        session.observe(event)
    return session.learn()


def stats_of(client: KatoClient, kb_id: str) -> dict[str, tuple[int, int]]:
    return {s.symbol: (s.frequency, s.pattern_member_frequency) for s in client.symbol_stats(kb_id).symbol_stats}


# --- sharing through the knowledge base -----------------------------------------------
def test_a_learn_is_visible_to_predict_in_another_session_on_the_same_kb(client, kb_id):
    teacher = client.session(kb_id)
    name = learn(teacher, ["hello"], ["world"], ["foo"])

    for student in (client.session(kb_id), client.server_session(kb_id)):
        student.observe(["hello"])
        student.observe(["world"])
        (prediction,) = student.predict().predictions
        assert "PTRN|" + prediction.name == name
        assert [list(e.symbols) for e in prediction.future] == [["foo"]]

    stranger = client.session(kb_id + "-other")
    stranger.observe(["hello"])
    stranger.observe(["world"])
    assert not stranger.predict().predictions


def test_sessions_on_one_kb_never_see_each_others_stm(client, kb_id):
    one, two = client.session(kb_id), client.server_session(kb_id)
    one.observe(["a"])
    two.observe(["b"])
    assert one.stm() == [["a"]] and two.stm() == [["b"]]


# --- ListPatterns -----------------------------------------------------------------------
def test_list_patterns_pages_through_names_in_ascending_order(client, kb_id):
    session = client.session(kb_id)
    names = sorted(learn(session, [f"p{i}"], [f"q{i}"])[len("PTRN|") :] for i in range(5))

    pages, token = [], ""
    while True:
        page = client.call("ListPatterns", api.ListPatternsRequest(kb_id=kb_id, page_size=2, page_token=token))
        pages.append([p.name for p in page.patterns])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [name for page in pages for name in page] == ["PTRN|" + n for n in names]

    everything = client.call("ListPatterns", api.ListPatternsRequest(kb_id=kb_id))  # page_size 0: up to 100
    assert len(everything.patterns) == 5 and everything.next_page_token == ""
    assert [p.name for p in client.list_patterns(kb_id, page_size=3)] == ["PTRN|" + n for n in names]


def test_list_patterns_of_an_unknown_kb_is_empty(client, kb_id):
    page = client.call("ListPatterns", api.ListPatternsRequest(kb_id=kb_id))
    assert not page.patterns and page.next_page_token == ""


# --- GetSymbolStats, UpdatePattern, DeletePattern, ClearKnowledgeBase ---------------------
@pytest.fixture
def small_kb(client, kb_id) -> dict[str, str]:
    """Three patterns: [[a],[b]] learned twice, [[a,c]], [[b],[b],[d]]."""
    session = client.session(kb_id)
    ab = learn(session, ["a"], ["b"])
    assert learn(session, ["a"], ["b"]) == ab
    return {"ab": ab, "ac": learn(session, ["c", "a"]), "bbd": learn(session, ["b"], ["b"], ["d"])}


def test_symbol_stats_are_functions_of_the_stored_patterns(client, kb_id, small_kb):
    stats = client.symbol_stats(kb_id)
    # freq(s) = sum over patterns of occurrences x frequency; pmf(s) = patterns holding s
    assert [(s.symbol, s.frequency, s.pattern_member_frequency) for s in stats.symbol_stats] == [
        ("a", 1 * 2 + 1 * 1, 2),
        ("b", 1 * 2 + 2 * 1, 2),
        ("c", 1, 1),
        ("d", 1, 1),
    ]
    assert stats.total_unique_patterns == 3
    assert stats.total_pattern_frequencies == 3
    assert stats.total_symbols_in_patterns_frequencies == 2 * 2 + 2 * 1 + 3 * 1
    assert client.get_pattern(kb_id, small_kb["ac"]).events[0].symbols == ["a", "c"]  # sorted within the event


def test_update_pattern_frequency_moves_the_symbol_stats(client, kb_id, small_kb):
    pattern = client.update_pattern(kb_id, small_kb["bbd"], frequency=5)
    assert pattern.frequency == 5
    assert stats_of(client, kb_id)["b"] == (1 * 2 + 2 * 5, 2)
    assert stats_of(client, kb_id)["d"] == (5, 1)
    assert client.symbol_stats(kb_id).total_symbols_in_patterns_frequencies == 2 * 2 + 2 * 1 + 3 * 5


def test_update_pattern_stores_metadata_sorted_and_deduplicated(client, kb_id, small_kb):
    pattern = client.update_pattern(kb_id, small_kb["ab"], metadata={"tag": ["z", "a", "z", "m"], "by": ["me"]})
    assert {k: list(v.values) for k, v in pattern.metadata.items()} == {"by": ["me"], "tag": ["a", "m", "z"]}
    assert raw(client.get_pattern(kb_id, small_kb["ab"])) == raw(pattern)
    assert pattern.frequency == 2  # untouched


def test_update_mask_says_which_fields_are_replaced(client, kb_id, small_kb):
    name = small_kb["ab"]
    client.update_pattern(kb_id, name, metadata={"tag": ["x"]}, emotives=[{"joy": 1.0}])
    request = api.UpdatePatternRequest(kb_id=kb_id, name=name, frequency=9, update_mask={"paths": ["metadata"]})
    pattern = client.call("UpdatePattern", request).pattern  # metadata replaced by the empty map
    assert (
        pattern.frequency == 2 and not pattern.metadata and [dict(e.values) for e in pattern.emotives] == [{"joy": 1.0}]
    )

    request = api.UpdatePatternRequest(kb_id=kb_id, name=name, frequency=3, update_mask={"paths": ["*"]})
    pattern = client.call("UpdatePattern", request).pattern  # all three: frequency 3, no emotives, no metadata
    assert pattern.frequency == 3 and not pattern.emotives and not pattern.metadata

    pattern = client.call("UpdatePattern", api.UpdatePatternRequest(kb_id=kb_id, name=name, frequency=4)).pattern
    assert pattern.frequency == 4  # no mask: the non-empty fields


def test_delete_pattern_takes_its_contribution_out_of_the_stats(client, kb_id, small_kb):
    client.delete_pattern(kb_id, small_kb["bbd"])
    assert stats_of(client, kb_id) == {"a": (3, 2), "b": (2, 1), "c": (1, 1)}
    assert client.symbol_stats(kb_id).total_unique_patterns == 2
    with pytest.raises(NotFound):
        client.get_pattern(kb_id, small_kb["bbd"])
    with pytest.raises(NotFound):
        client.delete_pattern(kb_id, small_kb["bbd"])


def test_clear_knowledge_base_empties_it_and_keeps_sessions_and_other_kbs(client, kb_id, small_kb):
    other = client.session(kb_id + "-other")
    learn(other, ["x"], ["y"])
    local, held = client.session(kb_id), client.server_session(kb_id)
    local.observe(["a"])
    held.observe(["a"])
    assert local.predict().predictions

    client.clear_knowledge_base(kb_id)
    client.clear_knowledge_base(kb_id)  # idempotent

    stats = client.symbol_stats(kb_id)
    assert not stats.symbol_stats and stats.total_unique_patterns == 0
    assert list(client.list_patterns(kb_id)) == []
    assert not local.predict().predictions and not held.predict().predictions
    assert local.stm() == [["a"]] and held.stm() == [["a"]]
    assert len(list(client.list_patterns(kb_id + "-other"))) == 1


# --- Observe and ObserveSequence ---------------------------------------------------------
def test_observe_returns_predictions_only_when_asked(client, kb_id):
    learn(client.session(kb_id), ["a"], ["b"], ["c"])
    session = client.session(kb_id)
    session.observe(["a"])
    plain = session.observe(["b"])
    assert not plain.predictions and not plain.future_potentials
    assert plain.state.HasField("cognition_basis")  # what cognition data predicts from, either way
    assert len(session.cognition().predictions) == 1

    session = client.session(kb_id)
    session.observe(["a"])
    asked = session.observe(["b"], return_predictions=True)
    assert [list(e.symbols) for e in asked.predictions[0].future] == [["c"]]
    assert [list(e.symbols) for e in asked.future_potentials[0].future] == [["c"]]
    predicted = session.predict()  # same STM, same KB: the same bytes
    assert [raw(p) for p in asked.predictions] == [raw(p) for p in predicted.predictions]
    assert [raw(f) for f in asked.future_potentials] == [raw(f) for f in predicted.future_potentials]


def test_observe_sequence_learns_and_later_items_see_earlier_patterns(client, kb_id):
    session = client.session(kb_id)
    result = session.observe_sequence(
        [{"strings": ["a", "b"]}, {"strings": ["c", "d"]}, {"strings": ["a", "b"]}], learn_after_each=True
    )
    assert result.observations_processed == 3
    ab, cd = pattern_name((("a", "b"),)), pattern_name((("c", "d"),))
    assert list(result.auto_learned_patterns) == [f"PTRN|{ab}", f"PTRN|{cd}", f"PTRN|{ab}"]
    assert client.get_pattern(kb_id, ab).frequency == 2
    assert session.stm() == []


def test_observe_sequence_with_a_bad_item_applies_nothing(client, kb_id):
    session = client.server_session(kb_id)
    session.observe(["before"])
    before = raw(session.cognition())
    with pytest.raises(InvalidArgument) as caught:
        session.observe_sequence(
            [{"strings": ["a", "b"]}, {"strings": ["c", "d"]}, {"strings": ["e"], "emotives": {"": 1.0}}],
            learn_after_each=True,
            learn_at_end=True,
        )
    assert [v.field for v in caught.value.field_violations] == ["observations[2].emotives"]
    assert raw(session.cognition()) == before  # STM, time and predictions unchanged
    assert list(client.list_patterns(kb_id)) == []


# --- durability and shutdown ------------------------------------------------------------
def test_every_acknowledged_pattern_survives_sigkill(start_server, tmp_path):
    data_dir = str(tmp_path / "data")
    server = start_server(data_dir=data_dir)
    with KatoClient(server.target) as kato:
        local, held = kato.session("durable"), kato.server_session("durable")
        names = [learn(local, [f"a{i}"], [f"b{i}"]) for i in range(10)]
        names += [learn(held, [f"c{i}", f"d{i}"]) for i in range(10)]
        names.append(learn(local, ["a0"], ["b0"]))  # a re-learn: frequency 2
        kato.update_pattern("durable", names[1], frequency=7)
        kato.delete_pattern("durable", names[2])
        before = [raw(p) for p in kato.list_patterns("durable")]
        stats = raw(kato.symbol_stats("durable"))
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL

    restarted = start_server(data_dir=data_dir)
    with KatoClient(restarted.target) as kato:
        patterns = list(kato.list_patterns("durable"))
        assert sorted(p.name for p in patterns) == sorted(set(names) - {names[2]})
        assert [raw(p) for p in patterns] == before
        assert raw(kato.symbol_stats("durable")) == stats
        assert kato.get_pattern("durable", names[0]).frequency == 2
        assert kato.get_pattern("durable", names[1]).frequency == 7


def test_sigterm_lets_an_in_flight_call_finish_then_exits_zero(start_server, tmp_path):
    # The in-flight call is a stream the test holds open: it has not half-closed when
    # SIGTERM arrives, so the call is in flight by construction, not because the machine is
    # slow; steps sent after the server started draining are still answered. The grace is
    # only a hang guard.
    data_dir = str(tmp_path / "data")
    server = start_server("--grace-seconds", "300", data_dir=data_dir)
    steps: queue.Queue[api.StreamObservationsRequest | None] = queue.Queue()

    def requests():
        while (step := steps.get()) is not None:
            yield step

    def observation(*symbols: str) -> api.StreamObservationsRequest:
        return api.StreamObservationsRequest(observation=pb.Observation(strings=list(symbols)))

    with KatoClient(server.target, timeout=300) as kato:
        answers = kato.stub.StreamObservations(requests(), timeout=300)
        steps.put(api.StreamObservationsRequest(open=api.StreamOpen(state=kato.session("drain").state)))
        assert next(answers).HasField("opened")
        steps.put(observation("a"))
        assert next(answers).HasField("observed")

        server.process.send_signal(signal.SIGTERM)
        server.wait_for_output("draining in-flight calls")
        steps.put(observation("b", "c"))
        assert next(answers).HasField("observed")
        steps.put(api.StreamObservationsRequest(learn=api.StreamLearn()))
        learned = next(answers).learned
        steps.put(None)  # half-close: the call can end now
        closed = next(answers).closed
        assert next(answers, None) is None
    assert learned.pattern_name == f"PTRN|{pattern_name([['a'], ['b', 'c']])}"
    assert list(closed.state.stm) == []
    assert server.process.wait(60) == 0
    assert "kato-grpc stopped" in "".join(server.output)
    with KatoClient(start_server(data_dir=data_dir).target) as kato:  # learned while draining, kept
        assert kato.get_pattern("drain", learned.pattern_name).frequency == 1


def test_a_call_that_outlives_its_deadline_fails_and_changes_nothing(start_server, kb_id):
    # The server process is stopped (SIGSTOP) while the calls are sent, so each deadline
    # passes before the server can even read its call: by construction, on any machine.
    # Resumed, the server finds calls whose clients gave up, and must apply none of them.
    server = start_server()
    slow = [{"strings": [f"s{i}", f"t{i}"]} for i in range(500)]
    with KatoClient(server.target) as client, KatoClient(server.target, timeout=0.5, retry=None) as hurried:
        local, held = client.session(kb_id), client.server_session(kb_id)
        local.observe(["a"])
        held.observe(["a"])
        state, cognition = raw(local.state), raw(held.cognition())
        list(hurried.list_patterns(kb_id))  # connected: the calls below reach the server's socket
        server.process.send_signal(signal.SIGSTOP)
        try:
            for session in (Session(hurried, local.state), ServerSession(hurried, held.session_id)):
                with pytest.raises(DeadlineExceeded):
                    session.observe_sequence(slow, learn_after_each=True)
        finally:
            server.process.send_signal(signal.SIGCONT)
        list(hurried.list_patterns(kb_id))  # a fence: read after the abandoned calls on one connection
        assert raw(held.cognition()) == cognition
        assert raw(local.state) == state
        assert list(client.list_patterns(kb_id)) == []


# --- operations -------------------------------------------------------------------------
def test_health_reports_serving(kato_server):
    with grpc.insecure_channel(kato_server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "kato.v1.KatoService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_serve_help_lists_every_flag_with_its_environment_variable():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients' / 'python'}"}
    done = subprocess.run(
        [sys.executable, "-m", "kato_grpc", "serve", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    blocks = {
        match.group(1): " ".join(match.group(2).split())
        for match in re.finditer(r"^  (--[a-z-]+)(.*?)(?=^  -|\Z)", done.stdout, re.M | re.S)
    }
    names = [f.name for f in fields(Settings) if f.name != "limits"] + [f.name for f in fields(Limits)]
    for name in names:
        flag = "--" + name.replace("_", "-")
        assert flag in blocks, f"{flag} missing from serve --help"
        assert f"env KATO_{name.upper()}" in blocks[flag], f"{flag} does not name its environment variable"


def test_an_environment_variable_sets_its_flag(start_server):
    server = start_server(env={"KATO_MAX_SYMBOL_BYTES": "8"})
    with KatoClient(server.target) as kato:
        session = kato.session("env")
        session.observe(["12345678"])
        with pytest.raises(ResourceExhausted) as caught:
            session.observe(["123456789"])
    assert "max_symbol_bytes=8" in caught.value.message


def test_health_watch_streams_the_status(kato_server):
    # Watch writes its stream with context.write (grpcio-health): every interceptor passes it on.
    with grpc.insecure_channel(kato_server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="kato.v1.KatoService"), timeout=60
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
