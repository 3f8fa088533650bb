"""HTTP/JSON through the real gateway (gateway/, Go) in front of a real server.

Auth, a deadline from the Grpc-Timeout header, the request id, a field violation's JSON
body, status codes as google.rpc.Code maps them, pagination, the OpenAPI document and the
Swagger UI page, and docs/curl-walkthrough.sh (the twin of the grpcurl walkthrough).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess, find_go, gateway_binary
from tests.support.requirements import missing
from tests.support.server import ROOT, ServerProcess, find_tool

READ_KEY, WRITE_KEY = "gw-read-key-0123456789", "gw-write-key-0123456789"


def call(base: str, verb: str, path: str, body: object = None, headers: dict[str, str] | None = None):
    """(HTTP status, JSON body, headers) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=verb, headers=headers or {})
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), error.headers


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return gateway_binary(tmp_path_factory)


@pytest.fixture(scope="module")
def open_stack(binary, tmp_path_factory):
    """A server (no auth) and a gateway in front of it."""
    server = ServerProcess(["--data-dir", str(tmp_path_factory.mktemp("gw-data"))]).start()
    gateway = GatewayProcess(binary, server.target).start()
    yield server, gateway
    gateway.stop()
    server.stop()


@pytest.fixture
def open_gateway(open_stack):
    return open_stack[1].base_url


@pytest.fixture(scope="module")
def auth_gateway(binary, tmp_path_factory):
    directory = tmp_path_factory.mktemp("gw-auth")
    keys = [
        {
            "name": "reader",
            "key_sha256": hashlib.sha256(READ_KEY.encode()).hexdigest(),
            "kb_ids": ["*"],
            "role": "read",
        },
        {
            "name": "writer",
            "key_sha256": hashlib.sha256(WRITE_KEY.encode()).hexdigest(),
            "kb_ids": ["gw-*"],
            "role": "write",
        },
    ]
    (directory / "keys.json").write_text(json.dumps({"keys": keys}))
    server = ServerProcess(
        ["--data-dir", str(directory / "data"), "--auth-keys-file", str(directory / "keys.json")]
    ).start()
    gateway = GatewayProcess(binary, server.target).start()
    yield gateway.base_url
    gateway.stop()
    server.stop()


# --- auth ------------------------------------------------------------------------------


def test_no_key_is_401_with_the_status_in_the_body(auth_gateway):
    status, body, _ = call(auth_gateway, "POST", "/v1/sessions", {"kbId": "gw-a"})
    assert status == 401
    assert body["code"] == 16  # UNAUTHENTICATED
    assert "authorization: Bearer" in body["message"]


def test_a_write_key_in_the_authorization_header_is_the_grpc_metadata(auth_gateway):
    bearer = {"Authorization": f"Bearer {WRITE_KEY}"}
    status, body, _ = call(auth_gateway, "POST", "/v1/sessions", {"kbId": "gw-a"}, bearer)
    assert status == 200, body
    session = body["session"]["sessionId"]
    status, body, _ = call(
        auth_gateway, "POST", f"/v1/sessions/{session}:observe", {"observation": {"strings": ["a"]}}, bearer
    )
    assert (status, body) == (200, {"stmLength": 1, "time": "1", "uniqueId": "obs-1"})


def test_a_read_key_cannot_write_403_and_a_kb_outside_the_key_is_403(auth_gateway):
    status, body, _ = call(
        auth_gateway, "POST", "/v1/sessions", {"kbId": "gw-a"}, {"Authorization": f"Bearer {READ_KEY}"}
    )
    assert (status, body["code"]) == (403, 7)  # PERMISSION_DENIED
    status, body, _ = call(
        auth_gateway, "POST", "/v1/sessions", {"kbId": "other"}, {"Authorization": f"Bearer {WRITE_KEY}"}
    )
    assert (status, body["code"]) == (403, 7)


# --- deadline, request id ----------------------------------------------------------------


def test_a_deadline_from_grpc_timeout_that_has_passed_is_504(open_gateway):
    # 1 ns cannot be met: the call is past its deadline before it reaches the server.
    status, body, _ = call(open_gateway, "POST", "/v1/sessions", {"kbId": "gw-d"}, {"Grpc-Timeout": "1n"})
    assert (status, body["code"]) == (504, 4)  # DEADLINE_EXCEEDED
    status, _, _ = call(open_gateway, "POST", "/v1/sessions", {"kbId": "gw-d"}, {"Grpc-Timeout": "30S"})
    assert status == 200


def test_the_request_id_goes_to_the_server_and_comes_back(open_gateway):
    _, _, headers = call(open_gateway, "POST", "/v1/sessions", {"kbId": "gw-r"}, {"X-Request-Id": "req-http-1"})
    assert headers["X-Request-Id"] == "req-http-1"
    _, _, headers = call(open_gateway, "GET", "/v1/sessions/absent")  # on a failure too, made by the server
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])


# --- errors ------------------------------------------------------------------------------


def test_a_field_violation_is_400_with_bad_request_details(open_gateway):
    status, body, _ = call(open_gateway, "POST", "/v1/sessions", {"kbId": "not a kb id!"})
    assert status == 400
    assert body["code"] == 3  # INVALID_ARGUMENT
    (bad_request,) = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"]
    assert [v["field"] for v in bad_request["fieldViolations"]] == ["kb_id"]
    assert "must be 1-128 characters" in bad_request["fieldViolations"][0]["description"]


def test_status_codes_follow_google_rpc_code(open_gateway):
    status, body, _ = call(open_gateway, "GET", "/v1/sessions/absent")
    assert (status, body["code"]) == (404, 5)
    (info,) = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert info["reason"] == "SESSION_NOT_FOUND"
    _, created, _ = call(open_gateway, "POST", "/v1/sessions", {"kbId": "gw-e"})
    session = created["session"]["sessionId"]
    status, body, _ = call(open_gateway, "POST", f"/v1/sessions/{session}:learn", {})
    assert (status, body["code"]) == (400, 9)  # FAILED_PRECONDITION: empty short-term memory
    status, body, _ = call(open_gateway, "POST", "/v1/sessions:observe", {"state": {"kbId": "gw-e", "time": "1"}})
    assert (status, body["code"]) == (400, 3)  # an unsigned state


def test_a_body_that_is_not_json_is_400(open_gateway):
    request = urllib.request.Request(open_gateway + "/v1/sessions", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)
    assert raised.value.code == 400
    assert json.loads(raised.value.read())["code"] == 3


# --- pagination --------------------------------------------------------------------------


def test_list_patterns_pages_through_every_pattern_in_name_order(open_gateway):
    _, created, _ = call(open_gateway, "POST", "/v1/sessions", {"kbId": "gw-pages"})
    session = created["session"]["sessionId"]
    observations = [{"strings": [f"s{i}", f"t{i}"]} for i in range(5)]
    status, body, _ = call(
        open_gateway,
        "POST",
        f"/v1/sessions/{session}:observeSequence",
        {"observations": observations, "learnAfterEach": True},
    )
    assert status == 200, body
    learned = sorted(body["autoLearnedPatterns"])
    assert len(learned) == 5
    names, token, pages = [], "", 0
    while True:
        query = "pageSize=2" + (f"&pageToken={token}" if token else "")
        status, page, _ = call(open_gateway, "GET", f"/v1/knowledgeBases/gw-pages/patterns?{query}")
        assert status == 200, page
        pages += 1
        assert len(page["patterns"]) <= 2
        names += [p["name"] for p in page["patterns"]]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert (names, pages) == (learned, 3)
    status, body, _ = call(open_gateway, "GET", "/v1/knowledgeBases/gw-pages/patterns?pageSize=-1")
    assert (status, body["code"]) == (400, 3)


def test_a_pattern_by_its_full_name_in_the_path(open_gateway):
    _, created, _ = call(open_gateway, "POST", "/v1/sessions", {"kbId": "gw-one"})
    session = created["session"]["sessionId"]
    call(open_gateway, "POST", f"/v1/sessions/{session}:observe", {"observation": {"strings": ["x", "y"]}})
    _, learned, _ = call(open_gateway, "POST", f"/v1/sessions/{session}:learn", {})
    name = learned["patternName"]
    status, body, _ = call(open_gateway, "GET", "/v1/knowledgeBases/gw-one/patterns/" + name.replace("|", "%7C"))
    assert (status, body["pattern"]["name"]) == (200, name)
    status, _, _ = call(open_gateway, "DELETE", "/v1/knowledgeBases/gw-one/patterns/" + name.removeprefix("PTRN|"))
    assert status == 200
    status, body, _ = call(open_gateway, "GET", "/v1/knowledgeBases/gw-one/patterns/" + name.removeprefix("PTRN|"))
    assert (status, body["code"]) == (404, 5)


# --- the document and the page -----------------------------------------------------------


def test_the_openapi_document_is_the_committed_one(open_gateway):
    with urllib.request.urlopen(open_gateway + "/openapi.json", timeout=60) as response:
        served = json.loads(response.read())
    committed = json.loads((ROOT / "gateway" / "openapi" / "kato_service.swagger.json").read_text())
    assert served == committed
    assert served["info"]["title"] == "KATO HTTP/JSON API"
    assert {"/v1/sessions/{sessionId}:observe", "/v1/sessions:observe"} <= set(served["paths"])
    assert not any("stream" in path.lower() for path in served["paths"])


def test_the_docs_page_loads_swagger_ui_from_the_vendored_package(open_gateway):
    with urllib.request.urlopen(open_gateway + "/docs/", timeout=60) as response:
        page = response.read().decode()
    assert 'url: "/openapi.json"' in page and "swagger-ui/swagger-ui-bundle.js" in page
    assets = ROOT / "gateway" / "static" / "swagger-ui" / "swagger-ui-bundle.js"
    if not assets.is_file():
        missing("the Swagger UI assets (make gateway-assets, with npm)")
    with urllib.request.urlopen(open_gateway + "/docs/swagger-ui/swagger-ui-bundle.js", timeout=60) as response:
        assert response.read() == assets.read_bytes()


# --- the curl walkthrough ----------------------------------------------------------------


def test_the_curl_walkthrough_prints_what_the_grpcurl_one_prints(open_stack):
    server, gateway = open_stack
    grpcurl, jq, curl = find_tool("grpcurl"), find_tool("jq"), find_tool("curl")
    if jq is None or curl is None:
        missing("jq and curl on PATH (the walkthroughs use them)")
    env = {**os.environ}
    curl_run = subprocess.run(
        ["bash", str(ROOT / "docs" / "curl-walkthrough.sh"), gateway.base_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert curl_run.returncode == 0, curl_run.stdout + curl_run.stderr
    lines = curl_run.stdout.splitlines()
    assert lines[0] == "# start from an empty knowledge base"
    assert sum(line.startswith("PTRN|") for line in lines) == 2
    if grpcurl is None:
        missing("grpcurl (the curl walkthrough's output is compared with the grpcurl one's)")
    env["PATH"] = f"{Path(grpcurl).parent}{os.pathsep}{env.get('PATH', '')}"
    grpcurl_run = subprocess.run(
        ["bash", str(ROOT / "docs" / "grpcurl-walkthrough.sh"), server.target],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert grpcurl_run.returncode == 0, grpcurl_run.stderr
    # Both start by clearing the knowledge base, so the same calls print the same lines.
    assert lines == grpcurl_run.stdout.splitlines()


def test_the_gateways_own_go_tests_pass():
    done = subprocess.run(
        [find_go(), "test", "./..."], cwd=ROOT / "gateway", capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
