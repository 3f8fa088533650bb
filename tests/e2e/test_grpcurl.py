"""The README's grpcurl walkthrough, run for real against a server.

`docs/grpcurl-walkthrough.sh` is the text the README includes; this test runs it and
checks its output line by line, so the README cannot drift from what the server does.
`list` and `describe` must show the API reference (the proto comments) with no proto
files, through the server's reflection service.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from kato_grpc._proto import descriptor_set
from kato_grpc.core.learning import pattern_name
from tests.support.requirements import missing, needs
from tests.support.server import ROOT, find_tool

WALKTHROUGH = ROOT / "docs" / "grpcurl-walkthrough.sh"


GRPCURL = find_tool("grpcurl")
pytestmark = needs(
    GRPCURL is not None,
    "grpcurl (on PATH or in ~/go/bin); install it with "
    "`go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest` (make test does)",
)


def grpcurl(target: str, *args: str, data: str | None = None) -> str:
    """`grpcurl -plaintext [-d DATA] TARGET ARGS...`; its stdout, after checking it succeeded."""
    request = ["-d", data] if data is not None else []
    done = subprocess.run([GRPCURL, "-plaintext", *request, target, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def leading_comment(file_name: str, path: list[int]) -> str:
    """The first line of the comment on the element at `path` of a proto file (source info)."""
    (file,) = [f for f in descriptor_set().file if f.name == file_name]
    (location,) = [loc for loc in file.source_code_info.location if list(loc.path) == path]
    return location.leading_comments.strip().splitlines()[0]


def test_walkthrough_prints_the_learned_pattern_and_its_predictions(kato_server):
    if find_tool("jq") is None:
        missing("jq on PATH (the walkthrough threads the client-held state with jq)")
    env = {**os.environ, "PATH": f"{Path(GRPCURL).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", str(WALKTHROUGH), kato_server.target], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr

    name = pattern_name((("hello",), ("world",)))

    def prediction(frequency: int) -> str:
        return json.dumps(
            {
                "name": name,
                "frequency": str(frequency),
                "emotives": {"joy": 0.5},
                "present": [["hello"]],
                "future": [["world"]],
            },
            separators=(",", ":"),
        )

    assert done.stdout.splitlines() == [
        "# start from an empty knowledge base",
        "# client-held: a new session is just its knowledge base id",
        f"PTRN|{name}",
        prediction(1),
        "# server-held: the server keeps the state; calls carry the session id",
        '{"stmLength":1,"time":"1","uniqueId":"obs-1"}',
        '{"stmLength":2,"time":"2","uniqueId":"obs-2"}',
        f"PTRN|{name}",
        '{"stmLength":1,"time":"3","uniqueId":"obs-3"}',
        prediction(2),  # the server-held session re-learned the client-held session's pattern
    ]


def test_list_shows_every_service(kato_server):
    services = grpcurl(kato_server.target, "list").split()
    assert services == sorted(services)
    assert {
        "kato.v1.KatoService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(services)


def test_describe_service_shows_its_comment_and_methods(kato_server):
    text = grpcurl(kato_server.target, "describe", "kato.v1.KatoService")
    assert "kato.v1.KatoService is a service:" in text
    assert "// " + leading_comment("kato/v1/kato_service.proto", [6, 0]) in text
    # every unary method shows its HTTP route (google.api.http), the stream has none
    assert "rpc Observe ( .kato.v1.ObserveRequest ) returns ( .kato.v1.ObserveResponse ) {" in text
    assert 'post: "/v1/sessions/{session_id}:observe"' in text
    assert (
        "rpc StreamObservations ( stream .kato.v1.StreamObservationsRequest ) "
        "returns ( stream .kato.v1.StreamObservationsResponse );"
    ) in text


def test_describe_method_shows_its_comment(kato_server):
    text = grpcurl(kato_server.target, "describe", "kato.v1.KatoService.Observe")
    assert "kato.v1.KatoService.Observe is a method:" in text
    assert "// " + leading_comment("kato/v1/kato_service.proto", [6, 0, 2, 0]) in text


def test_describe_message_shows_field_comments(kato_server):
    text = grpcurl(kato_server.target, "describe", "kato.v1.ObserveRequest")
    assert "kato.v1.ObserveRequest is a message:" in text
    (file,) = [f for f in descriptor_set().file if f.name == "kato/v1/kato_service.proto"]
    index = [m.name for m in file.message_type].index("ObserveRequest")
    field = [f.name for f in file.message_type[index].field].index("return_predictions")
    assert "// " + leading_comment(file.name, [4, index, 2, field]) in text
    assert "bool return_predictions = 4" in text


def test_describe_unknown_symbol_fails_cleanly(kato_server):
    done = subprocess.run(
        [GRPCURL, "-plaintext", kato_server.target, "describe", "kato.v1.NoSuchThing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "kato.v1.NoSuchThing" in done.stderr


def test_health_check_through_grpcurl(kato_server):
    reply = json.loads(
        grpcurl(kato_server.target, "grpc.health.v1.Health/Check", data='{"service": "kato.v1.KatoService"}')
    )
    assert reply == {"status": "SERVING"}
