"""StreamObservations against a real server: order, threading, final state, errors."""

import uuid

import pytest
from kato_client import KatoClient
from kato_client.client import observation


@pytest.fixture
def client(kato_server):
    with KatoClient(kato_server.target) as kato:
        yield kato


def _kb() -> str:
    return "stream-" + uuid.uuid4().hex[:10]


def test_client_held_stream_answers_in_order_and_returns_final_state(client):
    session = client.session(_kb())
    steps = [observation(["a"]), observation(["b"]), "learn", observation(["a"]), observation(["b"])]
    answers = list(client.stream(session, steps, return_predictions=True))
    kinds = [a.WhichOneof("answer") for a in answers]
    assert kinds == ["opened", "observed", "observed", "learned", "observed", "observed", "closed"]
    assert answers[3].learned.pattern_name.startswith("PTRN|")
    assert [a.observed.time for a in answers if a.HasField("observed")] == [1, 2, 3, 4]
    last = answers[5].observed
    assert last.predictions[0].name == answers[3].learned.pattern_name[5:]
    assert session.stm() == [["a"], ["b"]]  # the final state came back in `closed`
    assert not last.HasField("state")


def test_server_held_stream_stores_every_step(client):
    held = client.server_session(_kb())
    answers = list(client.stream(held, [observation(["x"]), observation(["y"]), "clear_stm", observation(["z"])]))
    assert [a.WhichOneof("answer") for a in answers] == ["opened", "observed", "observed", "cleared", "observed"]
    assert held.stm() == [["z"]]


def test_rejected_step_is_answered_in_band_and_changes_nothing(client):
    from google.rpc import code_pb2, error_details_pb2

    session = client.session(_kb())
    bad = observation(["ok"], emotives={"": 1.0})
    answers = list(client.stream(session, [observation(["a"]), bad, "learn", "learn", observation(["b"])]))
    kinds = [a.WhichOneof("answer") for a in answers]
    assert kinds == ["opened", "observed", "error", "learned", "error", "observed", "closed"]
    error = answers[2].error
    assert error.code == code_pb2.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert error.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "observation.emotives"
    assert answers[4].error.code == code_pb2.FAILED_PRECONDITION  # learn on the empty STM
    assert answers[5].observed.time == 2  # the rejected step did not count
    assert session.stm() == [["b"]]


def test_first_message_must_open(client):
    import grpc

    from kato_grpc._proto.kato.v1 import kato_service_pb2 as api

    with pytest.raises(grpc.RpcError) as caught:
        list(client.stub.StreamObservations(iter([api.StreamObservationsRequest(learn=api.StreamLearn())])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "open" in caught.value.details()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_feed_of_100k_observations_runs_in_bounded_server_memory(tmp_path):
    """The server holds one step at a time: RSS after 100k steps stays near RSS after 10k."""
    from tests.support.server import ServerProcess

    server = ServerProcess(["--data-dir", str(tmp_path)]).start()
    try:
        with KatoClient(server.target, timeout=600) as kato:
            session = kato.session(_kb(), config={"process_predictions": False})
            words = [f"w{i % 97}" for i in range(100_000)]
            rss_at = {}

            def feed():
                for i, word in enumerate(words):
                    if i in (10_000, 99_999):
                        rss_at[i] = _rss_kib(server.process.pid)
                    yield observation([word])

            answers = 0
            for answer in kato.stream(session, feed()):
                answers += answer.HasField("observed")
            assert answers == 100_000
            assert len(session.stm()) == 1000  # max_stm_events keeps the newest
            growth_mib = (rss_at[99_999] - rss_at[10_000]) / 1024
            assert growth_mib < 64, f"server RSS grew {growth_mib:.1f} MiB between step 10k and 100k"
    finally:
        server.stop()
