"""The conformance adapter over the pure core (`kato_grpc.core`), with no server.

It plays the shell's part in the smallest possible way: sessions are kept in a dict
(alias → state, node, TTL, expiry on a monotonic clock), each node alias owns one
`MemoryKnowledgeBase`, and the effects of every engine call are applied in order right
after the call. Rejections map as the server maps them:

| core exception | rejection kind |
|---|---|
| `ValidationError`, `LimitExceeded` | `validation` |
| `NotFoundError`, unknown / deleted / expired session | `not_found` |
| `EmptyStmError` from `learn` | not a rejection: `learn` returns `""` (README §3) |
| `EmptyStmError` elsewhere | `other` |

Sessions follow SPEC.md §9.1: `create_session` validates `ttl_seconds` (default 3600,
an integer in [1, 2592000]), `metadata` and `config` (objects); a `raw` body must carry
a non-empty string `node_id` (node aliases are arbitrary strings here, so only presence
and type are checked; an alias that is not a valid KB id is mapped to one). The same
node alias means the same knowledge base; no node means a fresh one. Every session
operation except `session_exists` slides the expiry; an expired, deleted or unknown
session is `not_found`. `observe` payloads, `raw` or not, go through
`engine.parse_observation`; `observe_raw` decodes its JSON body first.

Results are normalised to plain JSON-like values (README §3): dataclasses become
dicts, tuples lists, mappings dicts; prediction names are bare.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kato_grpc.core import engine, errors
from kato_grpc.core.config import config_to_dict
from kato_grpc.core.knowledge import MemoryKnowledgeBase
from kato_grpc.core.model import Limits, SessionState
from kato_grpc.kb.engines import engine_named
from tests.conformance.runner import AdapterRejected

__all__ = ["CoreAdapter", "to_plain"]

PTRN = "PTRN|"
DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 2_592_000
_KB_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def to_plain(value: Any) -> Any:
    """A JSON-like copy of `value`: dataclass → dict of its fields, mapping → dict,
    tuple/list → list; strings, numbers, booleans and None are kept."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot normalise {type(value).__name__}: {value!r}")


def _prediction(prediction: Any) -> dict[str, Any]:
    plain = to_plain(prediction)
    name = plain.get("name")
    if isinstance(name, str) and name.startswith(PTRN):
        plain["name"] = name[len(PTRN) :]
    return plain


def _or_none(name: str) -> str | None:
    return name or None


@contextmanager
def _rejections() -> Iterator[None]:
    """Turn the core's exceptions into the runner's rejection kinds."""
    try:
        yield
    except errors.ValidationError as exc:  # LimitExceeded included
        raise AdapterRejected("validation", str(exc)) from exc
    except errors.NotFoundError as exc:
        raise AdapterRejected("not_found", str(exc)) from exc
    except errors.EmptyStmError as exc:
        raise AdapterRejected("other", str(exc)) from exc


def _invalid(field: str, why: str) -> AdapterRejected:
    return AdapterRejected("validation", f"{field}: {why}")


def _ttl(value: Any, field: str = "ttl_seconds") -> int:
    """A TTL in whole seconds, 1..2592000 (SPEC.md §10 CreateSession)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(field, f"{value!r} is not an integer")
    if isinstance(value, float) and not value.is_integer():
        raise _invalid(field, f"{value!r} is not an integer")
    if not 1 <= value <= MAX_TTL_SECONDS:
        raise _invalid(field, f"{value!r} must be in [1, {MAX_TTL_SECONDS}]")
    return int(value)


def _kb_id_for(node_alias: str) -> str:
    """The alias itself when it is a valid KB id, else a stable id derived from it."""
    if _KB_ID.fullmatch(node_alias):
        return node_alias
    return "node-" + hashlib.sha1(node_alias.encode("utf-8")).hexdigest()[:24]


@dataclass
class _Session:
    state: SessionState
    node: str  # key into CoreAdapter._nodes
    node_id: str  # what create_session reported
    ttl_seconds: int
    metadata: dict[str, Any]
    expires_at: float


class CoreAdapter:
    """An `EngineAdapter` (see tests/conformance/runner.py) over `kato_grpc.core`.

    `clock` (seconds, monotonic) and `sleep` are injectable so a test can run the TTL
    cases on virtual time; by default they are the real monotonic clock and time.sleep.
    """

    def __init__(
        self,
        *,
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        engine_name: str = "python",
    ) -> None:
        self._engine = engine_named(engine_name)
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._nodes: dict[str, MemoryKnowledgeBase] = {}
        self._sessions: dict[str, _Session] = {}
        self._anonymous = 0

    # --- sessions ---------------------------------------------------------------------

    def _session(self, alias: str, *, touch: bool = True) -> _Session:
        """The live session `alias`; an access slides its expiry (SPEC.md §9.1)."""
        session = self._sessions.get(alias)
        if session is None:
            raise AdapterRejected("not_found", f"session {alias!r} does not exist")
        now = self._clock()
        if now >= session.expires_at:
            raise AdapterRejected("not_found", f"session {alias!r} has expired")
        if touch:
            session.expires_at = now + session.ttl_seconds
        return session

    def _kb(self, session: _Session) -> MemoryKnowledgeBase:
        return self._nodes[session.node]

    def _commit(self, session: _Session, outcome: Any) -> Any:
        kb = self._kb(session)
        for effect in outcome.effects:
            kb.apply(effect)
        session.state = outcome.state
        return outcome.result

    def create_session(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        if "raw" in step:
            raw = step["raw"]
            if not isinstance(raw, Mapping):
                raise _invalid("request", f"{raw!r} must be an object")
            node_alias = raw.get("node_id")
            if not isinstance(node_alias, str) or not node_alias:
                raise _invalid("node_id", f"{node_alias!r} must be a non-empty string")
            ttl_value, metadata, config = raw.get("ttl_seconds"), raw.get("metadata"), raw.get("config")
        else:
            node_alias = step.get("node")
            if node_alias is not None and not isinstance(node_alias, str):
                raise _invalid("node", f"{node_alias!r} must be a string alias")
            ttl_value, metadata, config = step.get("ttl_seconds"), step.get("metadata"), step.get("config")
        ttl = DEFAULT_TTL_SECONDS if ttl_value is None else _ttl(ttl_value)
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, Mapping):
            raise _invalid("metadata", f"{metadata!r} must be an object")
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            raise _invalid("config", f"{config!r} must be an object")

        if node_alias is None:
            node_key = f"\0anonymous-{self._anonymous + 1}"
            node_id = kb_id = f"anonymous-{self._anonymous + 1}"
        else:
            node_key, node_id, kb_id = node_alias, node_alias, _kb_id_for(node_alias)
        with _rejections():
            state = engine.new_session(kb_id, config)
        # Everything is valid: only now does the world change.
        if node_alias is None:
            self._anonymous += 1
        self._nodes.setdefault(node_key, self._engine.new_index())
        self._sessions[alias] = _Session(
            state=state,
            node=node_key,
            node_id=node_id,
            ttl_seconds=ttl,
            metadata=to_plain(metadata),
            expires_at=self._clock() + ttl,
        )
        return {
            "session_id": alias,
            "node_id": node_id,
            "ttl_seconds": ttl,
            "metadata": to_plain(metadata),
            "config": to_plain(config_to_dict(state.config)),
        }

    def delete_session(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        self._session(alias, touch=False)
        del self._sessions[alias]
        return {"session_id": alias, "deleted": True}

    def session_info(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        return {
            "session_id": alias,
            "node_id": session.node_id,
            "ttl_seconds": session.ttl_seconds,
            "metadata": session.metadata,
            "stm_length": len(session.state.stm),
            "time": session.state.time,
            "config": to_plain(config_to_dict(session.state.config)),
        }

    def session_exists(self, alias: str, step: Mapping[str, Any]) -> dict[str, bool]:
        """Existence without an access: the expiry does not move."""
        session = self._sessions.get(alias)
        if session is None:
            return {"exists": False, "expired": False}
        expired = self._clock() >= session.expires_at
        return {"exists": not expired, "expired": expired}

    def extend_session(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        ttl = _ttl(step["ttl_seconds"]) if step.get("ttl_seconds") is not None else session.ttl_seconds
        session.ttl_seconds = ttl
        session.expires_at = self._clock() + ttl
        return {"session_id": alias, "ttl_seconds": ttl}

    def sleep(self, alias: str, step: Mapping[str, Any]) -> None:
        seconds = step.get("seconds", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise _invalid("seconds", f"{seconds!r} must be a non-negative number")
        self._sleep(seconds)

    # --- observing and learning -------------------------------------------------------

    def observe(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        if "raw" in step:
            raw = step["raw"]
        else:
            raw = {key: step[key] for key in ("strings", "vectors", "emotives", "metadata", "unique_id") if key in step}
        with _rejections():
            observation = engine.parse_observation(raw)
            outcome = engine.observe(
                session.state, observation, self._kb(session), self._limits, self._engine.predictor
            )
        result = self._commit(session, outcome)
        return {
            "status": "okay",
            "stm_length": result.stm_length,
            "time": result.time,
            "unique_id": result.unique_id,
            "auto_learned_pattern": _or_none(result.auto_learned_pattern),
        }

    def observe_raw(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        """A raw request body: malformed JSON is a validation error, anything else is
        observed as a `raw` payload."""
        self._session(alias)
        try:
            payload = json.loads(step.get("body", ""))
        except (TypeError, ValueError) as exc:
            raise _invalid("body", f"malformed JSON ({exc})") from exc
        return self.observe(alias, {"op": "observe", "raw": payload})

    def observe_sequence(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        items = step.get("observations", [])
        if not isinstance(items, list):
            raise _invalid("observations", f"{items!r} must be a list of observations")
        flags = {}
        for flag in ("learn_after_each", "learn_at_end", "clear_stm_between"):
            value = step.get(flag, False)
            if not isinstance(value, bool):
                raise _invalid(flag, f"{value!r} must be a boolean")
            flags[flag] = value
        with _rejections():
            observations = [engine.parse_observation(item, f"observations[{k}].") for k, item in enumerate(items)]
            outcome = engine.observe_sequence(
                session.state,
                observations,
                self._kb(session),
                limits=self._limits,
                predictor=self._engine.predictor,
                **flags,
            )
        result = self._commit(session, outcome)
        return {
            "status": "okay",
            "observations_processed": result.observations_processed,
            "initial_stm_length": result.initial_stm_length,
            "final_stm_length": result.final_stm_length,
            "results": [
                {
                    "status": "okay",
                    "sequence_position": item.sequence_position,
                    "stm_length": item.stm_length,
                    "time": item.time,
                    "unique_id": item.unique_id,
                    "auto_learned_pattern": _or_none(item.auto_learned_pattern),
                }
                for item in result.results
            ],
            "auto_learned_patterns": list(result.auto_learned_patterns),
            "final_learned_pattern": _or_none(result.final_learned_pattern),
        }

    def learn(self, alias: str, step: Mapping[str, Any]) -> str:
        """The learned name, or "" when nothing was learned. An empty STM is rejected by
        the core (FAILED_PRECONDITION); README §3 maps that rejection to ""."""
        session = self._session(alias)
        with _rejections():
            try:
                outcome = engine.learn(session.state)
            except errors.EmptyStmError:
                return ""
        return self._commit(session, outcome)

    def clear_stm(self, alias: str, step: Mapping[str, Any]) -> None:
        session = self._session(alias)
        session.state = engine.clear_stm(session.state)

    def clear_all(self, alias: str, step: Mapping[str, Any]) -> None:
        session = self._session(alias)
        self._commit(session, engine.clear_all(session.state))

    def configure(self, alias: str, step: Mapping[str, Any]) -> None:
        session = self._session(alias)
        overrides = step.get("config", {})
        if not isinstance(overrides, Mapping):
            raise _invalid("config", f"{overrides!r} must be an object")
        with _rejections():
            session.state = engine.update_config(session.state, overrides)

    # --- reads --------------------------------------------------------------------------

    def stm(self, alias: str, step: Mapping[str, Any]) -> list[list[str]]:
        return [list(event) for event in self._session(alias).state.stm]

    def predictions(self, alias: str, step: Mapping[str, Any]) -> list[dict[str, Any]]:
        session = self._session(alias)
        result = engine.predict(session.state, self._kb(session), self._engine.predictor)
        return [_prediction(p) for p in result.predictions]

    def get_pattern(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any] | None:
        session = self._session(alias)
        name = step.get("name")
        if name is None or name == "":
            return None  # the label holds no learned name
        if not isinstance(name, str):
            raise _invalid("name", f"{name!r} must be a string")
        bare = name[len(PTRN) :] if name.startswith(PTRN) else name
        record = self._kb(session).get_pattern(bare)
        if record is None:
            return None
        return {
            "name": PTRN + record.name,
            "pattern_data": to_plain(record.events),
            "length": record.length,
            "frequency": record.frequency,
            "emotives": to_plain(record.emotives),
            "metadata": to_plain(record.metadata),
        }

    def get_config(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        return to_plain(config_to_dict(self._session(alias).state.config))

    def percept_data(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        percept = self._session(alias).state.percept
        return {} if percept is None else to_plain(percept)

    def cognition_data(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(alias)
        data = engine.cognition_data(session.state, self._kb(session), self._engine.predictor)
        plain = to_plain({key: value for key, value in data.items() if key != "predictions"})
        plain["predictions"] = [_prediction(p) for p in data.get("predictions", [])]
        return plain

    def symbol_affinity(self, alias: str, step: Mapping[str, Any]) -> dict[str, Any]:
        kb = self._kb(self._session(alias))
        symbol = step.get("symbol")
        if symbol is None:
            return to_plain(kb.all_affinity())
        if not isinstance(symbol, str):
            raise _invalid("symbol", f"{symbol!r} must be a string")
        return to_plain(kb.symbol_affinity(symbol))
