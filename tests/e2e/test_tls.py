"""TLS and mutual TLS, against a real server, with grpcio and with grpcurl.

A throw-away CA (tests/support/certs.py, the `cryptography` package) signs a server
certificate for 127.0.0.1 / localhost and a client certificate; a second, unrelated CA
signs a client certificate the server must refuse.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
from kato_grpc._proto.kato.v1 import kato_service_pb2_grpc as api_grpc
from kato_grpc._proto.kato.v1 import types_pb2 as pb
from tests.support.certs import Pki, issue, make_ca, make_pki
from tests.support.requirements import needs
from tests.support.server import ServerProcess, find_tool

GRPCURL = find_tool("grpcurl")
needs_grpcurl = needs(GRPCURL is not None, "grpcurl (on PATH or in ~/go/bin)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue_client(tmp_path_factory) -> tuple[Path, Path]:
    """A client certificate from a CA the server does not trust."""
    directory = tmp_path_factory.mktemp("rogue")
    ca, ca_key, _ = make_ca(directory, "Rogue CA")
    return issue(directory, ca, ca_key, "rogue-client", server=False)


def credentials(pki: Pki, client: tuple[Path, Path] | None = None) -> grpc.ChannelCredentials:
    chain = key = None
    if client is not None:
        chain, key = client[0].read_bytes(), client[1].read_bytes()
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(), private_key=key, certificate_chain=chain
    )


def start(tmp_path_factory, pki: Pki, *, client_ca: bool) -> ServerProcess:
    flags = [
        "--data-dir",
        str(tmp_path_factory.mktemp("tls-data")),
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
    ]
    if client_ca:
        flags += ["--tls-client-ca", str(pki.ca_cert)]
    server = ServerProcess(flags)
    server.credentials = credentials(pki, (pki.client_cert, pki.client_key) if client_ca else None)
    return server.start()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    server = start(tmp_path_factory, pki, client_ca=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    server = start(tmp_path_factory, pki, client_ca=True)
    yield server
    server.stop()


def observe_once(channel: grpc.Channel) -> api.ObserveResponse:
    stub = api_grpc.KatoServiceStub(channel)
    return stub.Observe(
        api.ObserveRequest(state=pb.SessionState(kb_id="tls-kb"), observation=pb.Observation(strings=["hello"])),
        timeout=10,
    )


def refused(channel: grpc.Channel) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        observe_once(channel)
    return raised.value


# --- grpcio ------------------------------------------------------------------------------------


def test_a_tls_client_talks_to_the_server(tls_server, pki):
    with grpc.secure_channel(tls_server.target, credentials(pki)) as channel:
        assert observe_once(channel).stm_length == 1


def test_the_certificate_names_localhost_too(tls_server, pki):
    port = tls_server.target.rsplit(":", 1)[1]
    with grpc.secure_channel(f"localhost:{port}", credentials(pki)) as channel:
        assert observe_once(channel).stm_length == 1


def test_a_plaintext_client_is_refused_by_a_tls_server(tls_server):
    with grpc.insecure_channel(tls_server.target) as channel:
        assert refused(channel).code() is grpc.StatusCode.UNAVAILABLE


def test_a_client_not_trusting_the_ca_is_refused(tls_server, rogue_client):
    """The client's own check: a server certificate from an unknown CA fails the handshake."""
    other_ca = rogue_client[0].parent / "rogue-ca.pem"
    with grpc.secure_channel(tls_server.target, grpc.ssl_channel_credentials(other_ca.read_bytes())) as channel:
        assert refused(channel).code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_accepts_a_client_certificate_from_the_ca(mtls_server, pki):
    with grpc.secure_channel(mtls_server.target, credentials(pki, (pki.client_cert, pki.client_key))) as channel:
        assert observe_once(channel).stm_length == 1


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server, pki):
    with grpc.secure_channel(mtls_server.target, credentials(pki)) as channel:
        assert refused(channel).code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_certificate_from_another_ca(mtls_server, pki, rogue_client):
    with grpc.secure_channel(mtls_server.target, credentials(pki, rogue_client)) as channel:
        assert refused(channel).code() is grpc.StatusCode.UNAVAILABLE


def test_tls_without_a_key_stops_the_server_at_start(tmp_path, pki):
    with pytest.raises(RuntimeError, match="needs both --tls-cert and --tls-key"):
        ServerProcess(["--data-dir", str(tmp_path), "--tls-cert", str(pki.server_cert)]).start(timeout=20)


# --- grpcurl -----------------------------------------------------------------------------------


def grpcurl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([GRPCURL, *args], capture_output=True, text=True, timeout=60)


@needs_grpcurl
def test_grpcurl_over_tls(tls_server, pki):
    listed = grpcurl("-cacert", str(pki.ca_cert), tls_server.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert "kato.v1.KatoService" in listed.stdout.split()
    request = json.dumps({"state": {"kbId": "tls-kb"}, "observation": {"strings": ["hi"]}})
    observed = grpcurl("-cacert", str(pki.ca_cert), "-d", request, tls_server.target, "kato.v1.KatoService/Observe")
    assert observed.returncode == 0, observed.stderr
    assert json.loads(observed.stdout)["stmLength"] == 1


@needs_grpcurl
def test_grpcurl_plaintext_is_refused_by_a_tls_server(tls_server):
    assert grpcurl("-plaintext", "-max-time", "5", tls_server.target, "list").returncode != 0


@needs_grpcurl
def test_grpcurl_with_a_client_certificate(mtls_server, pki):
    done = grpcurl(
        "-cacert",
        str(pki.ca_cert),
        "-cert",
        str(pki.client_cert),
        "-key",
        str(pki.client_key),
        "-d",
        "{}",
        mtls_server.target,
        "grpc.health.v1.Health/Check",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "SERVING"


@needs_grpcurl
def test_grpcurl_without_a_client_certificate_is_refused(mtls_server, pki):
    done = grpcurl(
        "-cacert", str(pki.ca_cert), "-max-time", "5", "-d", "{}", mtls_server.target, "grpc.health.v1.Health/Check"
    )
    assert done.returncode != 0
    assert "SERVING" not in done.stdout


def kato_health(*args: str) -> subprocess.CompletedProcess:
    import sys

    from tests.support.server import ROOT

    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'clients' / 'python'}"}
    return subprocess.run(
        [sys.executable, "-m", "kato_grpc", "health", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_the_health_command_over_tls(tls_server, mtls_server, pki):
    assert kato_health("--target", tls_server.target, "--tls-ca", str(pki.ca_cert)).returncode == 0
    assert kato_health("--target", tls_server.target).returncode == 1  # plaintext to a TLS port
    assert (
        kato_health(
            "--target",
            mtls_server.target,
            "--tls-ca",
            str(pki.ca_cert),
            "--tls-cert",
            str(pki.client_cert),
            "--tls-key",
            str(pki.client_key),
        ).returncode
        == 0
    )
    assert kato_health("--target", mtls_server.target, "--tls-ca", str(pki.ca_cert)).returncode == 1
