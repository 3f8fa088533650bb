"""The HTTP routes of the contract (google.api.http on protos/kato/v1), read from descriptors."""

from __future__ import annotations

import re

from google.api import annotations_pb2

from kato_grpc._proto.kato.v1 import kato_service_pb2 as api

SERVICE = api.DESCRIPTOR.services_by_name["KatoService"]


def bindings(method):
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings] if rule.WhichOneof("pattern") else []


def test_every_unary_method_has_a_route_and_the_stream_none():
    for method in SERVICE.methods:
        routes = bindings(method)
        if method.client_streaming or method.server_streaming:
            assert routes == [], f"{method.name}: a stream has no HTTP route (gRPC only)"
        else:
            assert routes, f"{method.name} has no google.api.http route"


def test_a_session_call_has_a_server_held_route_and_a_client_held_one():
    for method in SERVICE.methods:
        if "state" not in method.input_type.fields_by_name:
            continue
        paths = [getattr(b, b.WhichOneof("pattern")) for b in bindings(method)]
        assert any("{session_id}" in p for p in paths), method.name
        assert any(p.startswith("/v1/sessions:") for p in paths), method.name


def test_no_two_routes_of_one_verb_are_the_same():
    seen: dict[tuple[str, str], str] = {}
    for method in SERVICE.methods:
        for binding in bindings(method):
            verb = binding.WhichOneof("pattern")
            key = (verb, re.sub(r"\{[a-z_]+\}", "*", getattr(binding, verb)))
            assert key not in seen, f"{method.name} and {seen[key]} share {key}"
            seen[key] = method.name


def test_no_custom_verb_hides_behind_a_variable_route():
    # grpc-gateway matches `GET /v1/sessions/{session_id}` against `/v1/sessions/x:verb` too
    # (session_id "x:verb"), so a custom verb on a path that is also a route ending in a
    # variable, of the same HTTP method, would never be reached. (A literal last segment,
    # as in `POST /v1/sessions` next to `POST /v1/sessions:observe`, does not match.)
    plain: set[tuple[str, str]] = set()
    custom: list[tuple[str, str, str]] = []
    for method in SERVICE.methods:
        for binding in bindings(method):
            verb = binding.WhichOneof("pattern")
            path = getattr(binding, verb)
            head, _, custom_verb = path.rpartition(":") if re.search(r":\w+$", path) else (path, "", "")
            if custom_verb:
                custom.append((verb, head, method.name))
            elif path.endswith("}"):
                plain.add((verb, head))
    for verb, head, name in custom:
        assert (verb, head) not in plain, f"{name}: {verb} {head}:... is shadowed by {verb} {head}"
