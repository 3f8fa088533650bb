"""Replays conformance vectors (conformance README §1–§3) through an engine adapter.

One runner serves every back end. A back end provides an :class:`EngineAdapter`: one
method per operation of README §3, each called as ``adapter.<op>(session_alias, step)``
and returning the operation's *normalised* result (plain JSON-like Python values:
``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``). The runner owns
everything else: the initial session, labels, expectations, expected errors and the
"a rejected operation changes nothing" check.

Adapter contract, in short:

* Session and node aliases are the arbitrary strings of the vectors; the adapter maps
  them to real ids. A fresh adapter knows no session at all: the runner creates the
  case's initial session by calling ``create_session("main", {"op": "create_session",
  "session": "main", "node": "main", "config": case.config})``.
* A rejection is signalled by raising :class:`AdapterRejected` with kind
  ``"validation"`` (bad input, INVALID_ARGUMENT / RESOURCE_EXHAUSTED), ``"not_found"``
  (unknown, deleted or expired session) or ``"other"`` (any other refusal). Any other
  exception is an engine crash and fails the case.
* ``learn`` on an empty STM ("insufficient data", FAILED_PRECONDITION) must *return*
  ``""`` rather than raise: mapping that rejection is the adapter's job (README §3).
* ``get_pattern`` receives the name in ``step["name"]``: the runner resolves a
  ``name_ref`` label before calling the adapter.
* Results: ``observe`` → ``{status, auto_learned_pattern (name or None), stm_length,
  time, ...}``; ``observe_sequence`` → README §3; ``learn`` → ``"PTRN|<hex>"`` or ``""``;
  ``stm`` → list of lists of strings; ``predictions`` → list of dicts with the field
  names of SPEC.md §6.12 (``name`` bare or ``PTRN|``-prefixed); ``get_pattern`` →
  ``{name, pattern_data, length, frequency, emotives, metadata}`` or ``None``;
  ``get_config`` / ``percept_data`` / ``cognition_data`` / ``session_info`` /
  ``session_exists`` / ``create_session`` → objects; operations without a result
  return ``None`` (or an object).
* An adapter may define ``close()``; the runner calls it when the case ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tests.conformance.matchers import (
    MatchError,
    Scope,
    check,
    check_object,
    check_predictions,
    is_operator_object,
    json_equal,
    resolve_label,
)

__all__ = [
    "AdapterRejected",
    "REJECTION_KINDS",
    "EngineAdapter",
    "AdapterFactory",
    "OPERATIONS",
    "OBJECT_RESULT_OPS",
    "Case",
    "CaseSkipped",
    "load_cases",
    "load_vector_file",
    "run_case",
]

REJECTION_KINDS = frozenset({"validation", "not_found", "other"})

OPERATIONS = (
    "observe",
    "observe_sequence",
    "learn",
    "clear_stm",
    "clear_all",
    "stm",
    "predictions",
    "get_pattern",
    "configure",
    "get_config",
    "percept_data",
    "cognition_data",
    "create_session",
    "delete_session",
    "session_info",
    "session_exists",
    "extend_session",
    "sleep",
    "symbol_affinity",
    "observe_raw",
)
"""Every operation of README §3; each is a method of :class:`EngineAdapter`."""

OBJECT_RESULT_OPS = frozenset(
    {
        "observe",
        "observe_sequence",
        "get_config",
        "percept_data",
        "cognition_data",
        "session_info",
        "session_exists",
        "extend_session",
        "create_session",
        "delete_session",
    }
)
"""Operations whose plain-object ``expect`` is a partial match (README §3)."""

MAIN = "main"


class AdapterRejected(Exception):
    """The engine refused an operation; ``kind`` is one of :data:`REJECTION_KINDS`."""

    def __init__(self, kind: str, message: str = ""):
        if kind not in REJECTION_KINDS:
            raise ValueError(f"rejection kind must be one of {sorted(REJECTION_KINDS)}, got {kind!r}")
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}" if message else kind)


Step = Mapping[str, Any]


@runtime_checkable
class EngineAdapter(Protocol):
    """One back end (pure core, gRPC server, ...) as the vectors see it.

    Each method takes the session alias (``step.get("session", "main")``; for
    ``create_session`` the alias of the new session) and the step dict, and returns the
    normalised result or raises :class:`AdapterRejected`.
    """

    def observe(self, session: str, step: Step) -> Any: ...
    def observe_sequence(self, session: str, step: Step) -> Any: ...
    def learn(self, session: str, step: Step) -> Any: ...
    def clear_stm(self, session: str, step: Step) -> Any: ...
    def clear_all(self, session: str, step: Step) -> Any: ...
    def stm(self, session: str, step: Step) -> Any: ...
    def predictions(self, session: str, step: Step) -> Any: ...
    def get_pattern(self, session: str, step: Step) -> Any: ...
    def configure(self, session: str, step: Step) -> Any: ...
    def get_config(self, session: str, step: Step) -> Any: ...
    def percept_data(self, session: str, step: Step) -> Any: ...
    def cognition_data(self, session: str, step: Step) -> Any: ...
    def create_session(self, session: str, step: Step) -> Any: ...
    def delete_session(self, session: str, step: Step) -> Any: ...
    def session_info(self, session: str, step: Step) -> Any: ...
    def session_exists(self, session: str, step: Step) -> Any: ...
    def extend_session(self, session: str, step: Step) -> Any: ...
    def sleep(self, session: str, step: Step) -> Any: ...
    def symbol_affinity(self, session: str, step: Step) -> Any: ...
    def observe_raw(self, session: str, step: Step) -> Any: ...


AdapterFactory = Callable[[], EngineAdapter]
"""Builds a fresh adapter (a brand-new world: no sessions, no nodes) for one case."""


@dataclass(frozen=True)
class Case:
    """One case of a vector file."""

    file_stem: str
    id: str
    steps: tuple[Mapping[str, Any], ...]
    tags: frozenset[str] = frozenset()
    config: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def test_id(self) -> str:
        return f"{self.file_stem}::{self.id}"


class CaseSkipped(Exception):
    """The case carries a tag the caller asked to skip."""


def load_vector_file(path: Path) -> list[Case]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    version = data.get("format_version", 1)
    if version != 1:
        raise ValueError(f"{path}: unsupported format_version {version!r}")
    stem = Path(path).stem
    return [
        Case(
            file_stem=stem,
            id=raw["id"],
            steps=tuple(raw["steps"]),
            tags=frozenset(raw.get("tags", ())),
            config=raw.get("config") or {},
            notes=raw.get("notes", ""),
        )
        for raw in data["cases"]
    ]


def load_cases(directory: Path) -> list[Case]:
    """Every case of every ``*.json`` file of ``directory``, files in name order."""
    cases: list[Case] = []
    for path in sorted(Path(directory).glob("*.json")):
        cases.extend(load_vector_file(path))
    return cases


# --------------------------------------------------------------------------------------
# Running a case
# --------------------------------------------------------------------------------------

_REJECTED = "rejected"
_RETURNED = "returned"


def _stm_snapshot(adapter: EngineAdapter, session: str) -> tuple[str, Any] | None:
    """The session's STM as (returned, value) or (rejected, kind); None if unsupported."""
    try:
        return (_RETURNED, adapter.stm(session, {"op": "stm", "session": session}))
    except AdapterRejected as rejection:
        return (_REJECTED, rejection.kind)
    except NotImplementedError:
        return None


def _check_expect(op: str, result: Any, expect: Any, scope: Scope) -> None:
    if op == "predictions":
        if not isinstance(expect, list):
            raise MatchError(f"predictions.expect must be a list of assertions, got {expect!r}")
        for i, assertion in enumerate(expect):
            try:
                check_predictions(result, assertion, scope, "$")
            except MatchError as failure:
                raise MatchError(f"assertion {i} {json.dumps(assertion)[:300]}: {failure}") from None
    elif op in OBJECT_RESULT_OPS and isinstance(expect, Mapping) and not is_operator_object(expect):
        check_object(result, expect, scope, "$")
    else:
        check(result, expect, scope, "$")


def _unchanged(before: tuple[str, Any] | None, after: tuple[str, Any] | None) -> bool:
    if before is None or after is None:
        return True
    return before[0] == after[0] and json_equal(before[1], after[1])


def run_case(case: Case, adapter_factory: AdapterFactory, skip_tags: Iterable[str] = ()) -> None:
    """Run every step of ``case`` on a fresh adapter.

    Raises :class:`CaseSkipped` if a tag of the case is in ``skip_tags`` and
    ``AssertionError`` (a :class:`MatchError`) at the first failing step. Exceptions the
    adapter raises other than :class:`AdapterRejected` propagate (an engine crash).
    """
    __tracebackhide__ = True
    skipped = sorted(case.tags & frozenset(skip_tags))
    if skipped:
        raise CaseSkipped(f"{case.test_id}: tag(s) {', '.join(skipped)} skipped")
    adapter = adapter_factory()
    try:
        _run_steps(case, adapter)
    finally:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()


def _run_steps(case: Case, adapter: EngineAdapter) -> None:
    __tracebackhide__ = True
    labels: dict[str, Any] = {}
    setup = {"op": "create_session", "session": MAIN, "node": MAIN, "config": dict(case.config)}
    try:
        adapter.create_session(MAIN, setup)
    except AdapterRejected as rejection:
        raise MatchError(
            f"{case.test_id}: creating the initial session with config "
            f"{json.dumps(case.config)} was rejected: {rejection}"
        ) from None
    for index, step in enumerate(case.steps):
        try:
            _run_step(adapter, step, labels)
        except MatchError as failure:
            op = step.get("op", "?")
            session = step.get("session", MAIN)
            raise MatchError(f"{case.test_id}: step {index} ({op}, session {session!r}): {failure}") from None


def _run_step(adapter: EngineAdapter, step: Mapping[str, Any], labels: dict[str, Any]) -> None:
    op = step.get("op")
    if op not in OPERATIONS:
        raise MatchError(f"unknown operation {op!r}")
    session = step.get("session", MAIN)
    expect_error = step.get("expect_error")
    if expect_error is not None and expect_error not in ("validation", "not_found", "any"):
        raise MatchError(f"expect_error must be validation, not_found or any, got {expect_error!r}")
    allow_error = bool(step.get("allow_error", False))

    call = dict(step)
    if op == "get_pattern" and "name_ref" in step:
        call["name"] = resolve_label(labels, step["name_ref"])

    watch_state = expect_error is not None or allow_error
    before = _stm_snapshot(adapter, session) if watch_state else None
    try:
        result = getattr(adapter, op)(session, call)
    except AdapterRejected as rejection:
        if expect_error is None and not allow_error:
            raise MatchError(f"rejected unexpectedly: {rejection}") from None
        if expect_error not in (None, "any") and rejection.kind != expect_error:
            raise MatchError(f"expected a {expect_error!r} rejection, got {rejection}") from None
        after = _stm_snapshot(adapter, session)
        if not _unchanged(before, after):
            raise MatchError(f"the rejected operation changed the session's STM: {before!r} -> {after!r}") from None
        if "save_as" in step:
            labels[step["save_as"]] = None
        return

    if expect_error is not None:
        raise MatchError(
            f"expected a {expect_error!r} rejection, but the operation returned "
            f"{json.dumps(result, default=repr)[:300]}"
        )
    if "expect" in step:
        _check_expect(op, result, step["expect"], Scope(labels))
    if "save_as" in step:
        labels[step["save_as"]] = result
