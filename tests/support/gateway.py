"""The HTTP/JSON gateway for tests: the real `kato-gateway` binary and an HTTP transport.

`build_gateway()` builds gateway/ with `go build` (cached by Go) into a temporary
directory; without Go the test skips, or fails under CI=true. `GatewayProcess` runs it on
an ephemeral loopback port in front of a `ServerProcess`.

`HttpKatoClient` is the Python client (`kato_client.KatoClient`) with its gRPC stub
replaced by `HttpStub`: every call goes over HTTP/JSON to the route the method's
`google.api.http` annotation names, read from the descriptors, so the routes under test
are the contract's, not a copy. A failed call raises the same `KatoClientError` subclass
the gRPC transport would, decoded from the JSON `google.rpc.Status` body.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from kato_client import KatoClient
from kato_client._proto.kato.v1 import kato_service_pb2 as api
from kato_client.errors import REQUEST_ID_HEADER, FieldViolation, Unimplemented, _unpack, error_class
from kato_client.retry import Retry

from tests.support.requirements import missing
from tests.support.server import ROOT

__all__ = ["GatewayProcess", "HttpKatoClient", "HttpStub", "build_gateway", "find_go", "gateway_binary", "route_of"]

_LISTENING = re.compile(r"kato-gateway listening on ([\d.]+):(\d+)")
_SERVICE = api.DESCRIPTOR.services_by_name["KatoService"]
_VARIABLE = re.compile(r"\{([a-z_]+)\}")
_CODES = {code.value[0]: code for code in grpc.StatusCode}


_built: dict[str, Path] = {}


def gateway_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`build_gateway` once per test session."""
    if "binary" not in _built:
        _built["binary"] = build_gateway(tmp_path_factory.mktemp("gateway-bin"))
    return _built["binary"]


def find_go() -> str:
    """The go command; skips the test (fails it under CI) when there is none."""
    from tests.support.server import find_tool

    go = find_tool("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if go is None:
        missing("go (on PATH, in ~/go/bin or /usr/local/go/bin): the HTTP gateway is a Go program")
    return go


def build_gateway(out_dir: Path) -> Path:
    """The gateway binary, built from gateway/; skips (fails under CI=true) without Go."""
    go = find_go()
    binary = out_dir / "kato-gateway"
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=ROOT / "gateway", capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return binary


@dataclass
class GatewayProcess:
    """`kato-gateway` in front of `grpc_target`; `base_url` is http://host:port."""

    binary: Path
    grpc_target: str
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    base_url: str = ""
    output: list[str] = field(default_factory=list)

    def start(self) -> GatewayProcess:
        self.process = subprocess.Popen(
            [str(self.binary), "--listen", "127.0.0.1:0", "--grpc-target", self.grpc_target, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT / "gateway",
        )
        # The gateway prints its address once listening; EOF means it exited.
        for line in self.process.stdout:
            self.output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.base_url = f"http://{match.group(1)}:{match.group(2)}"
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return self
        self.process.wait()
        self.process.stdout.close()
        raise RuntimeError("gateway did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)  # a hang guard: SIGTERM ends it at once
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()
        drainer = getattr(self, "_drainer", None)
        if drainer is not None:
            drainer.join(60)  # the pipe ends with the process
        if self.process.stdout is not None and not drainer_alive(drainer):
            self.process.stdout.close()


def drainer_alive(drainer: threading.Thread | None) -> bool:
    return drainer is not None and drainer.is_alive()


def _bindings(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *rule.additional_bindings]


def route_of(method: str, request: Any) -> tuple[str, str, str]:
    """(HTTP verb, path template, body) of the first binding whose path fields are all set."""
    rule = _SERVICE.methods_by_name[method].GetOptions().Extensions[annotations_pb2.http]
    for binding in _bindings(rule):
        verb = binding.WhichOneof("pattern")
        if verb is None:
            raise AssertionError(f"{method} has no HTTP route")
        template = getattr(binding, verb)
        if all(getattr(request, name) for name in _VARIABLE.findall(template)):
            return verb.upper(), template, binding.body
    raise AssertionError(f"no HTTP route of {method} fits {request!r}")


def _query(fields: dict[str, Any]) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, (dict, list)) for v in values):
            raise AssertionError(f"{key}: a nested field cannot travel in a query string here")
        pairs += [(key, json.dumps(v) if isinstance(v, bool) else str(v)) for v in values]
    return urllib.parse.urlencode(pairs)


class HttpStub:
    """A stand-in for `KatoServiceStub`: `stub.Observe(request, timeout=, metadata=)` over HTTP."""

    def __init__(self, base_url: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._local = threading.local()  # one keep-alive connection per thread

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()

    def __getattr__(self, method: str) -> Any:
        if method not in _SERVICE.methods_by_name:
            raise AttributeError(method)
        if _SERVICE.methods_by_name[method].client_streaming:
            raise Unimplemented(f"{method} is served over gRPC only")
        return lambda request, timeout=None, metadata=None: self.invoke(method, request, timeout, metadata)

    def invoke(self, method: str, request: Any, timeout: float | None, metadata: Any) -> Any:
        verb, template, body = route_of(method, request)
        fields = json_format.MessageToDict(request)
        descriptor = request.DESCRIPTOR

        def take(name: str) -> str:
            value = fields.pop(descriptor.fields_by_name[name].json_name, "")
            return urllib.parse.quote(str(value), safe="")

        path = _VARIABLE.sub(lambda m: take(m.group(1)), template)
        payload: bytes | None = None
        if body == "*":
            payload = json.dumps(fields).encode()
        elif body:
            payload = json.dumps(fields.pop(descriptor.fields_by_name[body].json_name, {})).encode()
        if body != "*" and fields:
            path += "?" + _query(fields)
        headers = {"Content-Type": "application/json", **dict(metadata or ())}
        if timeout is not None:
            headers["Grpc-Timeout"] = f"{max(int(timeout * 1000), 1)}m"
        status, reply_headers, data = self._send(verb, path, payload, headers, timeout)
        if status != 200:
            raise _error(data, reply_headers)
        output = getattr(api, _SERVICE.methods_by_name[method].output_type.name)
        return json_format.Parse(data, output())

    def post_raw(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` as it is (not necessarily JSON): (HTTP status, response body)."""
        status, _headers, data = self._send("POST", path, body, {"Content-Type": "application/json"}, None)
        return status, data

    def _send(self, verb: str, path: str, payload: bytes | None, headers: dict[str, str], timeout: float | None):
        for attempt in (1, 2):  # once more on a fresh connection when the kept one was closed
            connection = getattr(self._local, "connection", None)
            if connection is None:
                # The socket timeout is a hang guard only: the call's deadline is Grpc-Timeout's.
                connection = http.client.HTTPConnection(self._host, self._port, timeout=(timeout or 60) + 30)
                self._local.connection = connection
            try:
                connection.request(verb, path, body=payload, headers=headers)
                response = connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _error(data: bytes, headers: dict[str, str]) -> Exception:
    status = json_format.Parse(data, status_pb2.Status(), ignore_unknown_fields=True)
    details = tuple(_unpack(detail) for detail in status.details)
    violations: list[FieldViolation] = []
    reason, info_metadata = "", {}
    for detail in details:
        if isinstance(detail, error_details_pb2.BadRequest):
            violations += [FieldViolation(v.field, v.description) for v in detail.field_violations]
        elif isinstance(detail, error_details_pb2.ErrorInfo):
            reason, info_metadata = detail.reason, dict(detail.metadata)
    request_id = next((v for k, v in headers.items() if k.lower() == REQUEST_ID_HEADER), "")
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    return error_class(code)(
        status.message, reason, tuple(violations), info_metadata, details=details, request_id=request_id
    )


class HttpKatoClient(KatoClient):
    """`KatoClient` over the gateway: same calls, retries and errors, HTTP/JSON on the wire."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        self.stub = HttpStub(base_url)  # type: ignore[assignment]
        self.timeout = kwargs.get("timeout", 30.0)
        self.metadata = tuple(kwargs.get("metadata", ()))
        self.retry = kwargs.get("retry", Retry())

    def close(self) -> None:
        self.stub.close()  # type: ignore[attr-defined]

    def _attempt(self, rpc: Any, request: Any, timeout: float | None) -> Any:
        return rpc(request, timeout=timeout, metadata=self.metadata or None)
