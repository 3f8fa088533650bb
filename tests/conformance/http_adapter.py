"""The conformance adapter over HTTP/JSON: the gRPC adapter's steps through the gateway.

`GrpcAdapter` drives the Python client; here the client's transport is `HttpKatoClient`
(tests/support/gateway.py), which sends every call to its `google.api.http` route on a
real `kato-gateway` in front of the shared test server. The steps, the modes (server-held
and client-held sessions) and the expected results are the gRPC adapter's, so a case that
passes over gRPC and fails here is a transcoding difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import pytest
from kato_client.client import ServerSession

from tests.conformance.grpc_adapter import GrpcAdapter
from tests.conformance.runner import AdapterRejected
from tests.support.gateway import GatewayProcess, HttpKatoClient, gateway_binary

__all__ = ["HttpAdapter", "backend"]

_gateways: dict[str, GatewayProcess] = {}


class HttpAdapter(GrpcAdapter):
    def __init__(self, base_url: str, mode: str) -> None:
        self._http = HttpKatoClient(base_url)
        super().__init__(base_url, mode, client=self._http)

    def observe_raw(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        """A body that is not JSON goes over the wire as it is (the `http-only` case); JSON is
        an observation, sent as the typed adapter sends one."""
        body = step.get("body", "")
        try:
            json.loads(body)
        except ValueError:
            session = self._session(alias)
            path = f"/v1/sessions/{session.session_id}:observe" if isinstance(session, ServerSession) else None
            status, data = self._http.stub.post_raw(path or "/v1/sessions:observe", body.encode())
            code = json.loads(data).get("code") if status != 200 else 0
            if code == grpc.StatusCode.INVALID_ARGUMENT.value[0]:
                raise AdapterRejected("validation", f"HTTP {status}: {data.decode(errors='replace')}") from None
            raise AdapterRejected("other", f"HTTP {status}: {data.decode(errors='replace')}") from None
        return super().observe_raw(alias, step)


def _gateway(request: pytest.FixtureRequest) -> GatewayProcess:
    """One gateway for the test session, in front of the session's `kato_server`."""
    server = request.getfixturevalue("kato_server")
    gateway = _gateways.get(server.target)
    if gateway is None:
        binary = gateway_binary(request.getfixturevalue("tmp_path_factory"))
        gateway = _gateways[server.target] = GatewayProcess(binary, server.target).start()
        request.config.add_cleanup(gateway.stop)
    return gateway


def backend(mode: str) -> Callable[[pytest.FixtureRequest], Callable[[], object]]:
    """A CONFORMANCE_BACKENDS entry: fresh `HttpAdapter`s in `mode` over one gateway."""

    def factory_of(request: pytest.FixtureRequest) -> Callable[[], object]:
        gateway = _gateway(request)
        adapters: list[HttpAdapter] = []

        def factory() -> HttpAdapter:
            adapters.append(HttpAdapter(gateway.base_url, mode))
            return adapters[-1]

        factory.runs_tags = ("http-only",)  # type: ignore[attr-defined]  (a raw wire format)

        request.addfinalizer(lambda: [a.close() for a in adapters])
        return factory

    return factory_of
