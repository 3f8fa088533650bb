"""The Python client package (clients/python) against a real server in this process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from kato_client import KatoClient, Retry
from kato_client.errors import InvalidArgument, NotFound, Unavailable

from tests.support.inprocess import InProcessServer

ROOT = Path(__file__).resolve().parents[2]
NO_WAIT = Retry(initial=0.0, maximum=0.0)  # retries without back-off: the tests never sleep


def _readme_examples() -> list[str]:
    section = (ROOT / "README.md").read_text().split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _run_alone(code: str, cwd: Path) -> str:
    """Runs `code` in a fresh interpreter (the installed client only: the checkout is
    not on its path) and returns what it printed."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_examples_run_and_print_what_their_comments_say(server: InProcessServer, tmp_path: Path) -> None:
    examples = _readme_examples()
    assert len(examples) == 2
    for example in examples:
        printed = _run_alone(example.replace("127.0.0.1:50051", server.target), tmp_path)
        promised = re.findall(r"^\s*print\(.*\)\s+# (.+)$", example, re.M)
        assert promised, "each example shows what it prints"
        for line in promised:
            assert line in printed.splitlines()


def test_the_client_imports_nothing_from_the_server_package(tmp_path: Path) -> None:
    _run_alone(
        "import sys; sys.modules['kato_grpc'] = None\n"  # any import of the server fails
        "import kato_client, kato_client.client, kato_client.errors, kato_client.pages, kato_client.retry",
        tmp_path,
    )


def test_an_error_keeps_code_details_request_id_and_cause(server: InProcessServer) -> None:
    with KatoClient(server.target, metadata=[("x-request-id", "trace-42")]) as kato, pytest.raises(NotFound) as raised:
        kato.get_pattern("kb", "PTRN|" + "0" * 40)
    error = raised.value
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.request_id == "trace-42"
    assert ("x-request-id", "trace-42") in error.trailing_metadata
    assert isinstance(error.__cause__, grpc.RpcError) and error.response is error.__cause__
    assert any(isinstance(detail, error_details_pb2.ErrorInfo) for detail in error.details)
    assert error.reason


def test_field_violations_come_from_the_bad_request_detail(kato: KatoClient) -> None:
    with pytest.raises(InvalidArgument) as raised:
        kato.session("kb").configure({"recall_threshold": 1.5, "max_predictions": -1})
    fields = {violation.field for violation in raised.value.field_violations}
    assert {"config.recall_threshold", "config.max_predictions"} <= fields
    assert raised.value.request_id  # the server's own id when the caller sent none


def _learn_patterns(kato: KatoClient, kb_id: str, count: int) -> list[str]:
    session = kato.session(kb_id)
    names = []
    for i in range(count):
        session.observe([f"x{i}"])
        session.observe([f"y{i}"])
        names.append(session.learn())
    return sorted(names)


def test_list_patterns_yields_every_pattern_across_pages(kato: KatoClient) -> None:
    names = _learn_patterns(kato, "kb", 5)
    assert [pattern.name for pattern in kato.list_patterns("kb", page_size=2)] == names


def test_list_patterns_pages_are_the_responses_in_order(kato: KatoClient) -> None:
    names = _learn_patterns(kato, "kb", 5)
    pages = list(kato.list_patterns("kb", page_size=2).pages)
    assert [[pattern.name for pattern in page.patterns] for page in pages] == [names[:2], names[2:4], names[4:]]
    assert pages[-1].next_page_token == ""


class _LoseFirstResponse(grpc.UnaryUnaryClientInterceptor):
    """Lets the first call of `method` reach the server, then reports UNAVAILABLE as if the
    connection had dropped before the answer arrived; records every request it sees."""

    def __init__(self, method: str) -> None:
        self.method = f"/kato.v1.KatoService/{method}"
        self.requests: list[Any] = []

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        outcome = continuation(details, request)
        if details.method != self.method:
            return outcome
        self.requests.append(request)
        if len(self.requests) > 1:
            return outcome
        outcome.result()  # the server has applied the call
        return _LostResponse()


class _LostResponse(grpc.RpcError, grpc.Call):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection lost before the response arrived"

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _client(server: InProcessServer, interceptor: grpc.UnaryUnaryClientInterceptor) -> KatoClient:
    channel = grpc.intercept_channel(grpc.insecure_channel(server.target), interceptor)
    return KatoClient(server.target, channel=channel, retry=NO_WAIT)


def test_a_server_held_observe_whose_answer_was_lost_is_retried_and_applied_once(server: InProcessServer) -> None:
    lose = _LoseFirstResponse("Observe")
    with _client(server, lose) as kato:
        held = kato.server_session("kb")
        held.observe(["a"])
        assert held.stm() == [["a"]]
    first, retry = lose.requests
    assert first.request_id and retry.request_id == first.request_id


def test_a_client_held_observe_is_not_retried(server: InProcessServer) -> None:
    lose = _LoseFirstResponse("Observe")
    with _client(server, lose) as kato, pytest.raises(Unavailable) as raised:
        kato.session("kb").observe(["a"])
    assert len(lose.requests) == 1
    assert raised.value.message == "connection lost before the response arrived"


def test_a_read_is_retried(server: InProcessServer) -> None:
    lose = _LoseFirstResponse("GetSymbolStats")
    with _client(server, lose) as kato:
        assert kato.symbol_stats("kb").total_unique_patterns == 0
    assert len(lose.requests) == 2


def test_retry_none_makes_every_call_a_single_attempt(server: InProcessServer) -> None:
    lose = _LoseFirstResponse("GetSymbolStats")
    channel = grpc.intercept_channel(grpc.insecure_channel(server.target), lose)
    with KatoClient(server.target, channel=channel, retry=None) as kato, pytest.raises(Unavailable):
        kato.symbol_stats("kb")
    assert len(lose.requests) == 1
