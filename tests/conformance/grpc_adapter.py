"""The conformance adapter over a live server, through the Python client.

Two modes, one adapter:
- ``server``: every session is server-held (CreateSession, then calls by session_id);
  TTLs, SessionExists and expiry are the server's.
- ``client``: every session is client-held (the state travels with each call). Session
  lifecycle steps that only make sense server-side (SessionExists, ExtendSession, TTL
  expiry) are skipped in this mode with a clear reason.

Each adapter gets a fresh prefix for its knowledge-base ids, so cases sharing one
server never see each other's patterns. JSON-like step payloads are turned into
messages; a payload the typed transport cannot carry (a null string, a string where a
number goes) is rejected as `validation`, as grpcurl would reject it.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from kato_client import KatoClient
from kato_client.client import ServerSession, Session, config_message, observation
from kato_client.errors import FailedPrecondition, InvalidArgument, KatoClientError, NotFound, ResourceExhausted

from kato_grpc._proto.kato.v1 import types_pb2 as pb
from kato_grpc.core.config import config_to_dict
from kato_grpc.server import convert
from tests.conformance.core_adapter import to_plain
from tests.conformance.runner import AdapterRejected

__all__ = ["GrpcAdapter"]

_counter = itertools.count()
_CONFIG_FIELDS = {f.name for f in pb.SessionConfig.DESCRIPTOR.fields}
DEFAULT_TTL = 3600


def _reject(exc: KatoClientError) -> AdapterRejected:
    if isinstance(exc, (InvalidArgument, ResourceExhausted)):
        return AdapterRejected("validation", str(exc))
    if isinstance(exc, NotFound):
        return AdapterRejected("not_found", str(exc))
    return AdapterRejected("other", f"{exc.code.name}: {exc}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _observation(raw: Any) -> pb.Observation:
    """A message for a JSON payload, or `validation` when the wire types cannot hold it."""
    if not isinstance(raw, Mapping):
        raise AdapterRejected("validation", "observation must be an object")
    strings, vectors = raw.get("strings") or [], raw.get("vectors") or []
    emotives, metadata = raw.get("emotives") or {}, raw.get("metadata") or {}
    unique_id = raw.get("unique_id") or ""
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise AdapterRejected("validation", f"strings: {strings!r} is not a list of strings")
    if not isinstance(vectors, list) or not all(isinstance(v, list) and all(_is_number(x) for x in v) for v in vectors):
        raise AdapterRejected("validation", f"vectors: {vectors!r} is not a list of number lists")
    if not isinstance(emotives, Mapping) or not all(_is_number(v) for v in emotives.values()):
        raise AdapterRejected("validation", f"emotives: {emotives!r} is not a map of numbers")
    if not isinstance(metadata, Mapping) or not isinstance(unique_id, str):
        raise AdapterRejected("validation", "metadata must be an object and unique_id a string")
    return observation(strings, vectors, emotives, metadata, unique_id)


def _config(overrides: Any) -> pb.SessionConfig:
    if not isinstance(overrides, Mapping):
        raise AdapterRejected("validation", f"config: {overrides!r} must be an object")
    known = {k: v for k, v in overrides.items() if k in _CONFIG_FIELDS}  # unknown keys are ignored (§7)
    if known.get("affinity_emotive", "") is None:
        known.pop("affinity_emotive")
    try:
        return config_message(known)
    except (TypeError, ValueError) as exc:
        raise AdapterRejected("validation", f"config: {exc}") from exc


def _prediction(message: pb.Prediction) -> dict[str, Any]:
    return to_plain(convert.prediction_from_proto(message))


class GrpcAdapter:
    def __init__(self, target: str, mode: str, client: KatoClient | None = None) -> None:
        assert mode in ("client", "server")
        self._client = client or KatoClient(target)
        self._mode = mode
        self._prefix = f"t{next(_counter)}-{uuid.uuid4().hex[:8]}"
        self._sessions: dict[str, Session | ServerSession] = {}
        self._client_ttl: dict[str, tuple[int, float]] = {}
        self._nodes = 0

    def close(self) -> None:
        self._client.close()

    def _kb_id(self, node: str | None) -> str:
        if node is None:
            self._nodes += 1
            node = f"anon{self._nodes}"
        safe = "".join(c if c.isalnum() or c in "_.:-" else "_" for c in node)[:60]
        return f"{self._prefix}-{safe}"

    def _session(self, alias: str) -> Session | ServerSession:
        if alias not in self._sessions:
            if alias == "main" and not self._sessions:
                self._create(alias, self._kb_id("main"), {}, None, None)
            else:
                raise AdapterRejected("not_found", f"session {alias!r} does not exist")
        if self._mode == "client" and alias in self._client_ttl:
            ttl, expires = self._client_ttl[alias]
            if time.monotonic() >= expires:
                raise AdapterRejected("not_found", f"session {alias!r} has expired")
            self._client_ttl[alias] = (ttl, time.monotonic() + ttl)
        return self._sessions[alias]

    def _create(self, alias: str, kb_id: str, config: Mapping, ttl: int | None, metadata: Mapping | None):
        try:
            if self._mode == "server":
                session = self._client.server_session(kb_id, config=None, ttl_seconds=ttl, metadata=metadata)
                if config:
                    session.configure(_config(config))
            else:
                session = self._client.session(kb_id)
                if config:
                    session.configure(_config(config))
                self._client_ttl[alias] = (ttl or DEFAULT_TTL, time.monotonic() + (ttl or DEFAULT_TTL))
        except KatoClientError as exc:
            raise _reject(exc) from exc
        self._sessions[alias] = session
        return session

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KatoClientError as exc:
            raise _reject(exc) from exc

    # --- sessions ---------------------------------------------------------------------
    def create_session(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        if "raw" in step:
            raw = step["raw"]
            node = raw.get("node_id") if isinstance(raw, Mapping) else None
            if not isinstance(node, str) or not node:
                raise AdapterRejected("validation", f"node_id: {node!r} must be a non-empty string")
            ttl, metadata, config = raw.get("ttl_seconds"), raw.get("metadata"), raw.get("config")
        else:
            node, ttl, metadata, config = (
                step.get("node"),
                step.get("ttl_seconds"),
                step.get("metadata"),
                step.get("config"),
            )
        if ttl is not None and (not _is_number(ttl) or (isinstance(ttl, float) and not ttl.is_integer())):
            raise AdapterRejected("validation", f"ttl_seconds: {ttl!r} is not an integer")
        if ttl is not None and not -(2**31) <= ttl < 2**31:
            raise AdapterRejected("validation", f"ttl_seconds: {ttl!r} out of range")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise AdapterRejected("validation", f"metadata: {metadata!r} must be an object")
        if self._mode == "client" and ttl is not None and not 1 <= ttl <= 2_592_000:
            raise AdapterRejected("validation", f"ttl_seconds: {ttl!r} out of range")
        self._create(alias, self._kb_id(node), config or {}, None if ttl is None else int(ttl), metadata)
        return {
            "session_id": alias,
            "node_id": node,
            "ttl_seconds": ttl if ttl is not None else DEFAULT_TTL,
            "metadata": to_plain(metadata or {}),
        }

    def delete_session(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        if isinstance(session, ServerSession):
            self._call(session.delete)
        del self._sessions[alias]
        return {"session_id": alias, "deleted": True}

    def session_info(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        state_config = self._call(session.config)
        info: dict[str, Any] = {
            "session_id": alias,
            "config": to_plain(config_to_dict(convert.config_from_proto(state_config))),
        }
        if isinstance(session, ServerSession):
            message = self._call(session.info_now)
            info.update(ttl_seconds=message.ttl_seconds, metadata=convert.struct_to_dict(message.metadata))
        return info

    def session_exists(self, alias: str, step: Mapping[str, Any]) -> dict[str, bool]:
        session = self._sessions.get(alias)
        if self._mode == "client":
            pytest.skip("SessionExists is about server-held sessions")
        if session is None:
            return {"exists": False, "expired": False}
        answer = self._call(session.exists)
        return {"exists": answer.exists, "expired": answer.expired}

    def extend_session(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        if self._mode == "client":
            pytest.skip("ExtendSession is about server-held sessions")
        session = self._session(alias)
        ttl = step.get("ttl_seconds", DEFAULT_TTL)
        message = self._call(session.extend, ttl)
        return {"session_id": alias, "ttl_seconds": message.ttl_seconds}

    def sleep(self, alias: str, step: Mapping[str, Any]) -> None:
        time.sleep(step.get("seconds", 0))

    # --- observing and learning -------------------------------------------------------
    def observe(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        raw = (
            step["raw"]
            if "raw" in step
            else {k: step[k] for k in ("strings", "vectors", "emotives", "metadata", "unique_id") if k in step}
        )
        obs = _observation(raw)
        response = self._call(
            self._client.call,
            "Observe",
            session._request(
                __import__("kato_grpc._proto.kato.v1.kato_service_pb2", fromlist=["x"]).ObserveRequest, observation=obs
            ),
        )
        session._keep(response)
        return {
            "status": "okay",
            "stm_length": response.stm_length,
            "time": response.time,
            "unique_id": response.unique_id,
            "auto_learned_pattern": response.auto_learned_pattern or None,
        }

    def observe_raw(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        try:
            payload = json.loads(step.get("body", ""))
        except ValueError as exc:
            raise AdapterRejected("validation", f"malformed JSON ({exc})") from exc
        return self.observe(alias, {"raw": payload})

    def observe_sequence(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        items = step.get("observations", [])
        if not isinstance(items, list):
            raise AdapterRejected("validation", "observations must be a list")
        messages = [_observation(item) for item in items]
        r = self._call(
            session.observe_sequence,
            messages,
            learn_after_each=bool(step.get("learn_after_each")),
            learn_at_end=bool(step.get("learn_at_end")),
            clear_stm_between=bool(step.get("clear_stm_between")),
        )
        return {
            "status": "okay",
            "observations_processed": r.observations_processed,
            "initial_stm_length": r.initial_stm_length,
            "final_stm_length": r.final_stm_length,
            "results": [
                {
                    "status": "okay",
                    "sequence_position": i.sequence_position,
                    "stm_length": i.stm_length,
                    "time": i.time,
                    "unique_id": i.unique_id,
                    "auto_learned_pattern": i.auto_learned_pattern or None,
                }
                for i in r.results
            ],
            "auto_learned_patterns": list(r.auto_learned_patterns),
            "final_learned_pattern": r.final_learned_pattern or None,
        }

    def learn(self, alias: str, step: Mapping[str, Any]) -> str:
        session = self._session(alias)
        try:
            return session.learn()
        except FailedPrecondition:
            return ""  # empty STM (README §3)
        except KatoClientError as exc:
            raise _reject(exc) from exc

    def clear_stm(self, alias: str, step: Mapping[str, Any]) -> None:
        self._call(self._session(alias).clear_stm)

    def clear_all(self, alias: str, step: Mapping[str, Any]) -> None:
        self._call(self._session(alias).clear_all)

    def configure(self, alias: str, step: Mapping[str, Any]) -> None:
        session = self._session(alias)
        self._call(session.configure, _config(step.get("config", {})))

    # --- reads --------------------------------------------------------------------------
    def stm(self, alias: str, step: Mapping[str, Any]) -> list[list[str]]:
        return self._call(self._session(alias).stm)

    def predictions(self, alias: str, step: Mapping[str, Any]) -> list[dict[str, Any]]:
        response = self._call(self._session(alias).predict)
        return [_prediction(p) for p in response.predictions]

    def _kb_of(self, session: Session | ServerSession) -> str:
        if isinstance(session, Session):
            return session.kb_id
        return session.info.kb_id

    def get_pattern(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any] | None:
        session = self._session(alias)
        name = step.get("name")
        if not name:
            return None
        try:
            p = self._client.get_pattern(self._kb_of(session), name)
        except NotFound:
            return None
        except KatoClientError as exc:
            raise _reject(exc) from exc
        record = {
            "name": p.name,
            "pattern_data": [list(e.symbols) for e in p.events],
            "length": p.length,
            "frequency": p.frequency,
            "emotives": [dict(e.values) for e in p.emotives],
            "metadata": {k: list(v.values) for k, v in sorted(p.metadata.items())},
        }
        return record

    def get_config(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        message = self._call(self._session(alias).config)
        return to_plain(config_to_dict(convert.config_from_proto(message)))

    def percept_data(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        response = self._call(
            self._client.call,
            "GetPerceptData",
            session._request(
                __import__("kato_grpc._proto.kato.v1.kato_service_pb2", fromlist=["x"]).GetPerceptDataRequest
            ),
        )
        if not response.HasField("percept"):
            return {}
        return to_plain(convert.percept_from_proto(response.percept))

    def cognition_data(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        r = self._call(self._session(alias).cognition)
        return {
            "predictions": [_prediction(p) for p in r.predictions],
            "emotives": dict(r.emotives),
            "symbols": list(r.symbols),
            "short_term_memory": [list(e.symbols) for e in r.short_term_memory],
            "time": r.time,
        }

    def symbol_affinity(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        kb_id = self._kb_of(self._session(alias))
        symbol = step.get("symbol")
        affinities = self._call(self._client.symbol_affinity, kb_id, symbol)
        if symbol is not None:
            return affinities.get(symbol, {})
        return {s: v for s, v in affinities.items() if v}
