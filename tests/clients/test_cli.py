"""The `kato` command line (clients/python/kato_client/cli.py) against a real server: every
command, on a server-held session and on a state file, with tables, --json, KATO_ADDR
and exit codes by gRPC status (64 + code)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from tests.support.server import ROOT


@pytest.fixture
def kato(kato_server):
    """Runs `kato ARGS` against the server; KATO_ADDR names it unless `addr` is given."""

    def run(*args: str, addr: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "KATO_ADDR": kato_server.target}
        argv = [sys.executable, "-m", "kato_client.cli", *(["--addr", addr] if addr else []), *args]
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    return run


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def fresh_kb() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def test_a_server_held_session_from_create_to_delete(kato):
    session_id = ok(kato("session", "create", fresh_kb(), "--ttl", "600", "-c", "max_predictions=3", "-q")).strip()
    where = ("--session", session_id)
    for event in (["hello", "world"], ["how"], ["are", "you"]):
        assert "observed at time" in ok(kato("observe", *where, *event))
    name = ok(kato("learn", *where)).strip()
    assert name.startswith("PTRN|")
    ok(kato("observe", *where, "hello", "world"))
    ok(kato("observe", *where, "how"))
    table = ok(kato("predict", *where))
    assert table.splitlines()[0].split()[:3] == ["name", "similarity", "potential"]
    assert "[are you]" in table and name.removeprefix("PTRN|") in table
    predicted = json.loads(ok(kato("--json", "predict", *where)))
    assert predicted["predictions"][0]["future"] == [{"symbols": ["are", "you"]}]
    assert ok(kato("stm", *where)).split() == ["event", "symbols", "0", "hello", "world", "1", "how"]
    ok(kato("clear", *where))
    assert ok(kato("stm", *where)).strip() == "(none)"
    shown = json.loads(ok(kato("--json", "session", "get", session_id)))
    assert shown["session_id"] == session_id and shown["config"]["max_predictions"] == 3
    ok(kato("session", "delete", session_id))
    gone = kato("session", "get", session_id)
    assert gone.returncode == 64 + 5, gone.stderr  # NOT_FOUND
    assert "NOT_FOUND" in gone.stderr and "reason: SESSION_NOT_FOUND" in gone.stderr


def test_a_state_file_session_and_the_knowledge_base_commands(kato, tmp_path):
    kb_id, state = fresh_kb(), str(tmp_path / "session.json")
    ok(kato("observe", "--state", state, "--kb", kb_id, "a", "b", "-e", "joy=0.5"))
    assert json.loads((tmp_path / "session.json").read_text())["kb_id"] == kb_id
    ok(kato("observe", "--state", state, "c"))  # the file names its knowledge base
    assert ok(kato("stm", "--state", state)).split() == ["event", "symbols", "0", "a", "b", "1", "c"]
    name = json.loads(ok(kato("--json", "learn", "--state", state)))["pattern_name"]
    assert ok(kato("stm", "--state", state)).strip() == "(none)"  # learn cleared it, in the file

    listed = ok(kato("kb", "list", "--page-size", "1"))
    assert any(line.split() == [kb_id, "1"] for line in listed.splitlines())
    assert name.removeprefix("PTRN|") in ok(kato("kb", "get", kb_id))
    pattern = json.loads(ok(kato("--json", "kb", "get", kb_id, name)))
    assert pattern["events"] == [{"symbols": ["a", "b"]}, {"symbols": ["c"]}]
    assert "frequency  1" in ok(kato("kb", "get", kb_id, name))
    stats = json.loads(ok(kato("--json", "kb", "stats", kb_id)))
    assert stats["total_unique_patterns"] == "1"  # proto JSON writes int64 as a string
    assert "patterns 1" in ok(kato("kb", "stats", kb_id))

    refused = kato("kb", "delete", kb_id)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    ok(kato("kb", "delete", kb_id, name))
    missing = kato("kb", "get", kb_id, name)
    assert missing.returncode == 64 + 5 and "PATTERN_NOT_FOUND" in missing.stderr
    ok(kato("observe", "--state", state, "x"))
    ok(kato("observe", "--state", state, "y"))
    ok(kato("learn", "--state", state))
    ok(kato("kb", "delete", kb_id, "--yes"))
    assert kb_id not in ok(kato("kb", "list"))


def test_a_rejected_field_exits_with_its_status_and_names_the_field(kato):
    done = kato("session", "create", fresh_kb(), "-c", "recall_threshold=1.5")
    assert done.returncode == 64 + 3, done.stderr  # INVALID_ARGUMENT
    assert "config.recall_threshold:" in done.stderr and "request id:" in done.stderr


def test_usage_errors_and_an_unreachable_server(kato, tmp_path):
    neither = kato("predict")
    assert neither.returncode == 2 and "--session ID" in neither.stderr
    no_kb = kato("observe", "--state", str(tmp_path / "new.json"), "a")
    assert no_kb.returncode == 2 and "--kb" in no_kb.stderr
    bad_config = kato("session", "create", "kb", "-c", "no_such_key=1")
    assert bad_config.returncode == 2 and "no_such_key" in bad_config.stderr
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = kato("session", "create", "kb", addr=f"127.0.0.1:{port}")
    assert down.returncode == 64 + 14, down.stderr  # UNAVAILABLE (CreateSession is never retried)
