"""The conformance runner (tests/conformance/runner.py), driven by a toy adapter."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from tests.conformance.runner import (
    OPERATIONS,
    AdapterRejected,
    Case,
    CaseSkipped,
    EngineAdapter,
    load_cases,
    run_case,
)


class ToyAdapter:
    """Sessions of events; `learn` names the STM; `observe` of a non-list raises."""

    instances: ClassVar[list[ToyAdapter]] = []

    def __init__(self) -> None:
        self.sessions: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict]] = []
        ToyAdapter.instances.append(self)

    def __getattr__(self, op):
        if op in OPERATIONS:
            return lambda session, step: None
        raise AttributeError(op)

    def _get(self, session):
        if session not in self.sessions:
            raise AdapterRejected("not_found", session)
        return self.sessions[session]

    def create_session(self, session, step):
        self.calls.append(("create_session", session, dict(step)))
        config = step.get("config") or {}
        if config.get("bad"):
            raise AdapterRejected("validation", "bad config")
        self.sessions[session] = {"stm": [], "config": {"threshold": 0.1, **config}}
        return {"session_id": session, "node_id": step.get("node")}

    def observe(self, session, step):
        state = self._get(session)
        if "raw" in step:
            if step["raw"].get("corrupt"):
                state["stm"].append(["junk"])  # a buggy engine: changes state, then rejects
            raise AdapterRejected("validation", "raw payload")
        state["stm"].append(sorted(step.get("strings", [])))
        return {"status": "okay", "stm_length": len(state["stm"]), "auto_learned_pattern": None}

    def stm(self, session, step):
        return [list(e) for e in self._get(session)["stm"]]

    def learn(self, session, step):
        state = self._get(session)
        name = "PTRN|" + json.dumps(state["stm"]).encode().hex()[:40].ljust(40, "0")
        state["stm"] = []
        return name

    def get_pattern(self, session, step):
        return {"name": step["name"]}

    def get_config(self, session, step):
        return dict(self._get(session)["config"])

    def predictions(self, session, step):
        return [{"name": "x", "similarity": 1.0}]


def _case(*steps, config=None, tags=()):
    return Case(file_stem="toy", id="case", steps=tuple(steps), tags=frozenset(tags), config=config or {})


def test_the_toy_adapter_satisfies_the_protocol():
    assert isinstance(ToyAdapter(), EngineAdapter)


def test_initial_session_main_on_node_main_gets_the_case_config():
    ToyAdapter.instances.clear()
    run_case(_case({"op": "get_config", "expect": {"threshold": 0.5}}, config={"threshold": 0.5}), ToyAdapter)
    (adapter,) = ToyAdapter.instances
    assert adapter.calls[0] == (
        "create_session",
        "main",
        {"op": "create_session", "session": "main", "node": "main", "config": {"threshold": 0.5}},
    )


def test_a_rejected_initial_config_fails_the_case():
    with pytest.raises(AssertionError, match="initial session"):
        run_case(_case(config={"bad": True}), ToyAdapter)


def test_every_case_gets_a_fresh_adapter():
    ToyAdapter.instances.clear()
    case = _case({"op": "observe", "strings": ["a"]}, {"op": "stm", "expect": [["a"]]})
    run_case(case, ToyAdapter)
    run_case(case, ToyAdapter)
    assert len(ToyAdapter.instances) == 2


def test_labels_and_dotted_references():
    run_case(
        _case(
            {"op": "observe", "strings": ["b", "a"], "save_as": "o"},
            {"op": "get_config", "save_as": "c"},
            {"op": "get_config", "expect": {"$same_as": "c"}},
            {"op": "get_config", "expect": {"threshold": {"$same_as": "c.threshold"}}},
            {
                "op": "observe",
                "strings": ["c"],
                "expect": {"stm_length": {"$gt": 1}, "status": {"$same_as": "o.status"}},
            },
        ),
        ToyAdapter,
    )
    with pytest.raises(AssertionError, match="unknown label 'nope'"):
        run_case(_case({"op": "get_config", "expect": {"$same_as": "nope.x"}}), ToyAdapter)


def test_get_pattern_receives_the_name_a_name_ref_points_to():
    run_case(
        _case(
            {"op": "observe", "strings": ["a", "b"]},
            {"op": "learn", "save_as": "p"},
            {"op": "get_pattern", "name_ref": "p", "expect": {"$has": {"name": {"$name_of": "p"}}}},
        ),
        ToyAdapter,
    )
    # get_pattern's result is matched whole: a plain object is a literal
    with pytest.raises(AssertionError):
        run_case(
            _case(
                {"op": "observe", "strings": ["a", "b"]},
                {"op": "learn", "save_as": "p"},
                {"op": "get_pattern", "name_ref": "p", "expect": {"name": {"$name_of": "p"}}},
            ),
            ToyAdapter,
        )


def test_a_failing_expect_names_case_step_and_path():
    case = _case({"op": "observe", "strings": ["a"]}, {"op": "stm", "expect": [["b"]]})
    with pytest.raises(AssertionError, match=r"toy::case: step 1 \(stm, session 'main'\): \$: expected"):
        run_case(case, ToyAdapter)


def test_object_results_match_partially_other_results_whole():
    run_case(_case({"op": "get_config", "expect": {"threshold": 0.1}}), ToyAdapter)
    with pytest.raises(AssertionError, match="expected"):
        run_case(_case({"op": "observe", "strings": ["a"]}, {"op": "stm", "expect": [["a"], {"extra": 1}]}), ToyAdapter)


def test_prediction_expect_is_a_list_of_assertions():
    run_case(_case({"op": "predictions", "expect": [{"count": 1}, {"first": {"name": "x"}}]}), ToyAdapter)
    with pytest.raises(AssertionError, match="assertion 1"):
        run_case(_case({"op": "predictions", "expect": [{"count": 1}, {"count": 2}]}), ToyAdapter)


def test_expect_error_of_the_right_kind_passes():
    run_case(
        _case(
            {"op": "observe", "raw": {}, "expect_error": "validation"},
            {"op": "observe", "session": "ghost", "strings": ["a"], "expect_error": "not_found"},
            {"op": "observe", "raw": {}, "expect_error": "any"},
        ),
        ToyAdapter,
    )


def test_expect_error_of_another_kind_fails():
    with pytest.raises(AssertionError, match="expected a 'not_found' rejection"):
        run_case(_case({"op": "observe", "raw": {}, "expect_error": "not_found"}), ToyAdapter)


def test_expect_error_on_a_successful_operation_fails():
    with pytest.raises(AssertionError, match="but the operation returned"):
        run_case(_case({"op": "observe", "strings": ["a"], "expect_error": "validation"}), ToyAdapter)


def test_a_rejected_operation_must_not_change_the_stm():
    with pytest.raises(AssertionError, match="changed the session's STM"):
        run_case(_case({"op": "observe", "raw": {"corrupt": True}, "expect_error": "validation"}), ToyAdapter)


def test_allow_error_accepts_success_and_rejection():
    run_case(
        _case(
            {"op": "observe", "raw": {}, "allow_error": True},
            {"op": "observe", "strings": ["a"], "allow_error": True},
            {"op": "stm", "expect": [["a"]]},
        ),
        ToyAdapter,
    )


def test_an_unexpected_rejection_fails_the_case():
    with pytest.raises(AssertionError, match="rejected unexpectedly"):
        run_case(_case({"op": "observe", "raw": {}}), ToyAdapter)


def test_an_engine_crash_propagates():
    class Crashing(ToyAdapter):
        def stm(self, session, step):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_case(_case({"op": "stm", "expect": []}), Crashing)


def test_unknown_operation_fails():
    with pytest.raises(AssertionError, match="unknown operation 'dance'"):
        run_case(_case({"op": "dance"}), ToyAdapter)


def test_cases_with_a_skipped_tag_are_not_run():
    ToyAdapter.instances.clear()
    with pytest.raises(CaseSkipped, match="http-only"):
        run_case(
            _case({"op": "observe_raw", "body": "{"}, tags={"http-only", "api-validation"}),
            ToyAdapter,
            skip_tags={"http-only"},
        )
    assert ToyAdapter.instances == []


def test_load_cases_reads_every_file_in_name_order(tmp_path):
    for stem, ids in (("test_b", ["y"]), ("test_a", ["x", "Cls::z[1]"])):
        payload = {
            "source": "s",
            "format_version": 1,
            "cases": [{"id": i, "config": {}, "steps": [], "tags": ["t"]} for i in ids],
        }
        (tmp_path / f"{stem}.json").write_text(json.dumps(payload))
    cases = load_cases(tmp_path)
    assert [c.test_id for c in cases] == ["test_a::x", "test_a::Cls::z[1]", "test_b::y"]
    assert cases[0].tags == {"t"}
