"""`kato-grpc kb export | copy` of a knowledge base that does not exist is an error (exit
2, naming it), not "exported 0 patterns": a mistyped --kb must not look like success."""

from __future__ import annotations

import subprocess
import sys

from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import PatternRecord
from kato_grpc.kb.sqlite import SqliteStore
from tests.support.server import ROOT


def kb_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kato_grpc", "kb", *args, "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_source(path) -> None:
    events = (("a",), ("b",))
    store = SqliteStore(path)
    store.put_records("real", [PatternRecord(name=pattern_name(events), events=events)], [])
    store.close()


def test_export_of_a_missing_kb_fails_and_names_it(tmp_path):
    make_source(tmp_path / "src")
    out = tmp_path / "typo.kbjsonl"
    done = kb_cli("export", "--from", str(tmp_path / "src"), "--kb", "typo-kb", "-o", str(out))
    assert done.returncode == 2, done.stderr
    assert "knowledge base 'typo-kb' does not exist" in done.stderr
    assert not out.exists()
    done = kb_cli("export", "--from", str(tmp_path / "src"), "--kb", "real", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 1 patterns" in done.stderr


def test_copy_with_a_missing_kb_copies_nothing(tmp_path):
    make_source(tmp_path / "src")
    done = kb_cli(
        "copy", "--from", str(tmp_path / "src"), "--to", str(tmp_path / "dst"), "--kb", "real", "--kb", "typo"
    )
    assert done.returncode == 2, done.stderr
    assert "knowledge base 'typo' does not exist" in done.stderr
    target = SqliteStore(tmp_path / "dst")
    try:
        assert target.pattern_count("real") == 0  # checked before any KB is copied
    finally:
        target.close()
