"""The Go and Node clients, run for real against a server: examples and conformance.

Each client replays the same subset of the conformance vectors (its `cases.txt`: at
least 30 cases covering observe, learn, predictions and rejected input) with
client-held sessions, through its own generated or loaded stubs, so the contract is
proven from three languages. Each also runs its example program.

Needs Go (`go` on PATH or /usr/local/go/bin) and Node with npm; a missing toolchain
skips its tests. The Go module cache and `npm ci` need the registries the first time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.requirements import missing, needs
from tests.support.server import ROOT

GO_CLIENT = ROOT / "clients" / "go"
NODE_CLIENT = ROOT / "clients" / "node"
VECTORS = ROOT / "tests" / "conformance" / "vectors"
GO_CASES = GO_CLIENT / "cmd" / "conformance" / "cases.txt"
NODE_CASES = NODE_CLIENT / "cases.txt"
MIN_CASES = 30

GO = shutil.which("go") or next((str(p) for p in [Path("/usr/local/go/bin/go")] if p.is_file()), None)
NODE, NPM = shutil.which("node"), shutil.which("npm")
needs_go = needs(GO is not None, "the Go toolchain (neither `go` on PATH nor /usr/local/go/bin/go)")
needs_node = needs(NODE is not None and NPM is not None, "node and npm on PATH")
_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def _run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def _listed(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _assert_all_passed(done: subprocess.CompletedProcess) -> int:
    output = done.stdout + done.stderr
    summary = _SUMMARY.search(done.stdout)
    assert summary, f"no `N passed, N failed` line:\n{output}"
    passed, failed = int(summary.group(1)), int(summary.group(2))
    assert (done.returncode, failed) == (0, 0), output
    assert passed >= MIN_CASES, output
    return passed


def test_go_and_node_replay_the_same_cases():
    go_cases = _listed(GO_CASES)
    assert go_cases == _listed(NODE_CASES)
    assert len(go_cases) >= MIN_CASES and len(set(go_cases)) == len(go_cases)


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("target", "variable", "committed", "subdir"),
    [
        ("proto-go", "GO_CLIENT", GO_CLIENT, "katov1"),
        ("proto-node", "NODE_CLIENT", NODE_CLIENT, "third_party"),
    ],
)
def test_committed_stubs_match_the_protos(tmp_path, target, variable, committed, subdir):
    """`make proto-go` / `make proto-node` into a scratch directory give the committed files."""
    if shutil.which("make") is None:
        missing("make on PATH")
    done = _run(["make", "--no-print-directory", target, f"{variable}={tmp_path}"], ROOT, timeout=120)
    if done.returncode != 0 and "needs protoc-gen-go" in done.stdout:
        missing(done.stdout.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    assert _files(tmp_path / subdir) == _files(committed / subdir), (
        f"{committed / subdir} is stale: run `make {target}`"
    )


@pytest.fixture(scope="module")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go example and replayer, built once."""
    out = tmp_path_factory.mktemp("go-bin")
    done = _run([GO, "build", "-o", str(out), "./cmd/..."], GO_CLIENT, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@needs_go
def test_go_client_passes_the_conformance_subset(go_binaries, kato_server):
    done = _run(
        [str(go_binaries / "conformance"), "-target", kato_server.target, "-vectors", str(VECTORS)],
        GO_CLIENT,
        timeout=300,
    )
    assert _assert_all_passed(done) == len(_listed(GO_CASES))


@needs_go
def test_go_example_learns_and_predicts(go_binaries, kato_server):
    done = _run([str(go_binaries / "example"), "-target", kato_server.target], GO_CLIENT, timeout=120)
    assert done.returncode == 0, done.stderr
    learned = re.search(r"^learned PTRN\|([0-9a-f]{40}) ", done.stdout, re.MULTILINE)
    assert learned, done.stdout
    assert f"prediction {learned.group(1)}: " in done.stdout and "future [are you]" in done.stdout
    assert "config.recall_threshold:" in done.stdout  # the BadRequest detail, decoded


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """clients/node/node_modules, installed by `npm ci` from package-lock.json unless present."""
    modules = NODE_CLIENT / "node_modules"
    if not (modules / ".package-lock.json").is_file():
        done = _run([NPM, "ci", "--no-audit", "--no-fund"], NODE_CLIENT, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    return modules


@needs_node
def test_node_client_passes_the_conformance_subset(node_modules, kato_server):
    done = _run(
        [NODE, "conformance.js", "--target", kato_server.target, "--vectors", str(VECTORS)], NODE_CLIENT, timeout=300
    )
    assert _assert_all_passed(done) == len(_listed(NODE_CASES))


@needs_node
def test_node_example_learns_and_predicts(node_modules, kato_server):
    done = _run([NODE, "example.js", "--target", kato_server.target], NODE_CLIENT, timeout=120)
    assert done.returncode == 0, done.stderr
    learned = re.search(r"^learned PTRN\|([0-9a-f]{40}) ", done.stdout, re.MULTILINE)
    assert learned, done.stdout
    assert f"prediction {learned.group(1)}: " in done.stdout and "future [are you]" in done.stdout
    assert "config.recall_threshold:" in done.stdout  # the BadRequest detail, decoded
