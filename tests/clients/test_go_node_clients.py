"""The Go and Node client libraries' own suites (`go test`, `node --test`), run here so
`make test` runs them. Each suite starts its own real servers from this repository with
the interpreter running pytest (KATO_PYTHON), including one it freezes, kills and
restarts to prove a retry.

A missing toolchain skips its suite, or fails it when CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.requirements import missing
from tests.support.server import ROOT

GO_CLIENT = ROOT / "clients" / "go"
NODE_CLIENT = ROOT / "clients" / "node"
GO = shutil.which("go") or next((str(p) for p in [Path("/usr/local/go/bin/go")] if p.is_file()), None)
NODE, NPM = shutil.which("node"), shutil.which("npm")


def _need(tool: str | None, what: str) -> str:
    if tool is None:
        missing(f"{what} on PATH")
    return tool


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "KATO_PYTHON": sys.executable, "KATO_ROOT": str(ROOT)}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_go_client_suite():
    go = _need(GO, "the Go toolchain (go)")
    done = _run([go, "test", "-count=1", "-v", "./kato/"], GO_CLIENT, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "--- SKIP" not in output, output  # a server was found, so nothing may skip
    assert "--- PASS: TestReadIsRetriedAcrossAServerRestart" in output, output
    assert "--- PASS: TestRejectedFieldIsTyped" in output, output
    assert "--- PASS: TestResourceExhaustedWithRetryInfoIsRetriedAfterItsDelay" in output, output


def test_node_client_suite():
    node, npm = _need(NODE, "node"), _need(NPM, "npm")
    if not (NODE_CLIENT / "node_modules" / ".package-lock.json").is_file():
        installed = _run([npm, "ci", "--no-audit", "--no-fund"], NODE_CLIENT, timeout=600)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    tests = ["test/client.test.js", "test/retry-info.test.js", "test/package.test.js"]
    done = _run([node, "--test", "--test-concurrency=1", *tests], NODE_CLIENT, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "# skipped 0" in output and "# fail 0" in output, output
    assert re.search(r"^ok \d+ - a read is retried across a server restart$", output, re.MULTILINE), output
