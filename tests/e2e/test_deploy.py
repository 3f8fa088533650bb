"""The image and the compose file, checked as far as this machine allows.

Without a Docker daemon the runtime stage is reproduced by hand: the wheels are built
with the Dockerfile's own `pip wheel` line, installed into a fresh virtualenv with
nothing else (the runtime stage's `pip install /wheels/*.whl`), and that install must
hold the runtime dependencies and no dev tool, and serve. The Dockerfile's stages and
compose.yaml are checked as data. With a daemon (and `docker compose`), the image is
built and the compose file validated by Docker itself; without one those tests skip,
or fail when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.support.requirements import missing
from tests.support.server import ROOT

try:
    import yaml
except ModuleNotFoundError:  # a dev dependency (pyproject.toml): an old venv lacks it
    missing("PyYAML (make setup installs it)", allow_module_level=True)

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DEV_TOOLS = {"pytest", "mypy", "ruff", "hypothesis", "grpcio-tools", "buf-bin", "mypy-protobuf", "pytest-timeout"}
pytestmark = pytest.mark.timeout(900)


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its (INSTRUCTION, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else f"stage{len(out)}"
            out[current] = []
        assert current is not None, f"{instruction} before FROM"
        out[current].append((instruction, rest.strip()))
    return out


def normalized(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requires(wheel: Path) -> tuple[set[str], set[str]]:
    """(unconditional requirement names, names only an extra asks for) of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(metadata).decode().splitlines()
    always, extra = set(), set()
    for line in lines:
        if line.startswith("Requires-Dist:"):
            spec = line.removeprefix("Requires-Dist:").strip()
            (extra if "extra ==" in spec else always).add(normalized(spec))
    return always, extra


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[tuple[str, str]]]:
    return stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def wheels(dockerfile, tmp_path_factory) -> Path:
    """The wheels, built by the build stage's own `pip wheel` command (its --wheel-dir moved here)."""
    out = tmp_path_factory.mktemp("wheels")
    (command,) = [rest for ins, rest in dockerfile["build"] if ins == "RUN" and rest.startswith("pip wheel")]
    argv = [sys.executable, "-m", *shlex.split(command)]
    argv[argv.index("--wheel-dir") + 1] = str(out)
    leftover = ROOT / "clients" / "python" / "build"  # setuptools' scratch space in the source tree
    existed = leftover.exists()
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        if not existed:  # a second copy of kato_client there would confuse mypy (make lint-py)
            shutil.rmtree(leftover, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_runtime_stage_holds_the_wheels_only_runs_unprivileged_and_checks_health(dockerfile):
    assert list(dockerfile) == ["build", "runtime"]
    runtime = dockerfile["runtime"]
    copies = [rest for ins, rest in runtime if ins == "COPY"]
    assert copies == ["--from=build /wheels /wheels"]  # no source tree, no venv
    installs = [rest for ins, rest in runtime if ins == "RUN"]
    assert len(installs) == 1 and installs[0].startswith("pip install --no-cache-dir /wheels/*.whl")
    assert "[" not in installs[0]  # no extras: `.[dev]` never reaches the image
    user = [rest for ins, rest in runtime if ins == "USER"]
    assert user and user[-1] not in ("root", "0")
    (expose,) = [rest.split() for ins, rest in runtime if ins == "EXPOSE"]
    env = " ".join(rest for ins, rest in runtime if ins == "ENV")
    assert "KATO_PORT=50051" in env and "KATO_METRICS_PORT=9090" in env and sorted(expose) == ["50051", "9090"]
    (health,) = [rest for ins, rest in runtime if ins == "HEALTHCHECK"]
    assert 'CMD ["kato-grpc", "health"]' in health  # the standard gRPC health service
    assert ("CMD", '["kato-grpc", "serve"]') in runtime


def test_the_build_context_leaves_out_local_artefacts():
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", "native/target", "clients/node/node_modules", "build", ".git"} <= ignored


def test_the_wheels_carry_the_runtime_dependencies_and_dev_tools_only_as_an_extra(wheels):
    (server_wheel,) = wheels.glob("kato_grpc-*.whl")
    (client_wheel,) = wheels.glob("kato_client-*.whl")
    with zipfile.ZipFile(server_wheel) as z:
        names = z.namelist()
    assert any(re.fullmatch(r"kato_grpc/_native\..*so", n) for n in names)  # the Rust engine
    assert "kato_grpc/_proto/kato_v1.binpb" in names
    assert not any(n.startswith("tests/") for n in names)
    always, extra = requires(server_wheel)
    assert not always & DEV_TOOLS
    assert extra >= DEV_TOOLS
    assert {"grpcio", "grpcio-health-checking", "redis", "clickhouse-driver", "prometheus-client"} <= always
    client_always, _ = requires(client_wheel)
    assert client_always <= always  # the `kato` CLI adds no dependency to the image


def test_the_runtime_install_serves_without_a_dev_tool(wheels, tmp_path):
    """The runtime stage by hand: a fresh venv, `pip install` of the wheels, then serve."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *map(str, wheels.glob("*.whl"))],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=json"], capture_output=True, text=True, env=env, check=True
    )
    installed = {normalized(p["name"]) for p in json.loads(listed.stdout)}
    (server_wheel,) = wheels.glob("kato_grpc-*.whl")
    always, _ = requires(server_wheel)
    assert not installed & DEV_TOOLS, sorted(installed & DEV_TOOLS)
    assert {n for n in always if n != "tomli"} <= installed

    server = subprocess.Popen(
        [str(venv / "bin" / "kato-grpc"), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        target = None
        for line in server.stdout:  # ends if the server exits
            match = re.search(r"listening on ([\d.]+:\d+)", line)
            if match:
                target = match.group(1)
                break
        assert target, "the installed server did not start"
        health = [str(venv / "bin" / "kato-grpc"), "health", "--target", target]
        deadline = time.monotonic() + 60  # hang guard
        while subprocess.run(health, capture_output=True, env=env, timeout=30).returncode != 0:
            assert time.monotonic() < deadline, "never SERVING"
            time.sleep(0.05)
        listed_kbs = subprocess.run(
            [str(venv / "bin" / "kato"), "--addr", target, "--json", "kb", "list"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert listed_kbs.returncode == 0 and json.loads(listed_kbs.stdout) == {"knowledge_bases": []}
    finally:
        server.terminate()
        server.wait(30)
        server.stdout.close()


def test_the_compose_file_deploys_what_readme_describes(dockerfile):
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"server", "redis", "clickhouse"}
    server, redis, clickhouse = services["server"], services["redis"], services["clickhouse"]
    assert server["build"] == "."
    redis_command = redis["command"]
    assert redis_command[:3] == ["redis-server", "--appendonly", "yes"]  # AOF on
    assert server["environment"]["KATO_REDIS_URL"] == "redis://redis:6379/0"
    assert re.fullmatch(r"clickhouse://kato:\S+@clickhouse:9000/kato", server["environment"]["KATO_CLICKHOUSE_URL"])
    assert clickhouse["environment"]["CLICKHOUSE_USER"] == "kato"
    for name in ("redis", "clickhouse"):
        assert server["depends_on"][name] == {"condition": "service_healthy"}
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    published = sorted(p.split(":")[-1].split()[0] for p in server["ports"])
    (expose,) = [rest.split() for ins, rest in dockerfile["runtime"] if ins == "EXPOSE"]
    assert published == sorted(expose)
    volumes = set(compose["volumes"])
    assert {"kato-data", "redis-data", "clickhouse-data"} <= volumes
    assert "kato-data:/data" in server["volumes"] and "redis-data:/data" in redis["volumes"]


def _docker_ready() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "docker not found on PATH"
    if subprocess.run([docker, "info"], capture_output=True, timeout=60).returncode != 0:
        return "no Docker daemon answers `docker info`"
    return None


def _need_docker(extra: list[str] | None = None) -> str:
    why = _docker_ready()
    if why is None and extra and subprocess.run(["docker", *extra], capture_output=True, timeout=60).returncode:
        why = f"`docker {' '.join(extra)}` does not run"
    if why is not None:  # a skip a user accepts: most machines (this CI's too) run no Docker daemon,
        # and the Dockerfile and compose.yaml are checked as data by the tests above
        pytest.skip(f"accepted: {why}")
    return "docker"


def test_docker_compose_accepts_the_compose_file():
    docker = _need_docker(["compose", "version"])
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_image_builds_and_holds_no_dev_tool():
    docker = _need_docker()
    tag = "kato-grpc:test-deploy"
    done = subprocess.run([docker, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    listed = subprocess.run(
        [docker, "run", "--rm", tag, "pip", "list", "--format=json"], capture_output=True, text=True
    )
    installed = {normalized(p["name"]) for p in json.loads(listed.stdout)}
    assert not installed & DEV_TOOLS
    user = subprocess.run([docker, "run", "--rm", tag, "id", "-u"], capture_output=True, text=True)
    assert user.stdout.strip() == "10001"
