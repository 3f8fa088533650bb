"""The conformance adapter over the pure core: session lifetime and error mapping."""

from __future__ import annotations

import pytest

from tests.conformance.core_adapter import CoreAdapter
from tests.conformance.runner import AdapterRejected


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def adapter(clock):
    adapter = CoreAdapter(clock=clock, sleep=clock.sleep)
    adapter.create_session("main", {"op": "create_session", "node": "main"})
    return adapter


def _rejection(call, *args):
    with pytest.raises(AdapterRejected) as info:
        call(*args)
    return info.value.kind


def test_session_exists_does_not_extend_the_ttl(adapter, clock):
    adapter.create_session("t", {"ttl_seconds": 10})
    clock.sleep(6)
    assert adapter.session_exists("t", {}) == {"exists": True, "expired": False}
    clock.sleep(6)
    assert adapter.session_exists("t", {}) == {"exists": False, "expired": True}
    assert _rejection(adapter.stm, "t", {}) == "not_found"


def test_any_other_access_slides_the_expiry(adapter, clock):
    adapter.create_session("t", {"ttl_seconds": 10})
    clock.sleep(6)
    adapter.stm("t", {})
    clock.sleep(6)
    assert adapter.stm("t", {}) == []


def test_extend_session_sets_a_new_ttl(adapter, clock):
    adapter.create_session("t", {"ttl_seconds": 10})
    adapter.extend_session("t", {"ttl_seconds": 100})
    clock.sleep(50)
    assert adapter.session_exists("t", {})["exists"]
    assert _rejection(adapter.extend_session, "t", {"ttl_seconds": 0}) == "validation"


def test_deleted_and_unknown_sessions_are_not_found(adapter):
    adapter.create_session("t", {})
    adapter.delete_session("t", {})
    assert _rejection(adapter.delete_session, "t", {}) == "not_found"
    assert _rejection(adapter.observe, "ghost", {"strings": ["a"]}) == "not_found"
    assert adapter.session_exists("t", {}) == {"exists": False, "expired": False}


@pytest.mark.parametrize(
    "raw",
    [
        {"node_id": None},
        {"node_id": ""},
        {"ttl_seconds": 60},
        {"node_id": "n", "ttl_seconds": -1},
        {"node_id": "n", "ttl_seconds": "60"},
        {"node_id": "n", "ttl_seconds": 2_592_001},
        {"node_id": "n", "metadata": "x"},
        {"node_id": "n", "config": {"recall_threshold": 2}},
    ],
)
def test_invalid_create_session_bodies_create_nothing(adapter, raw):
    assert _rejection(adapter.create_session, "bad", {"raw": raw}) == "validation"
    assert adapter.session_exists("bad", {}) == {"exists": False, "expired": False}


def test_same_node_alias_shares_the_knowledge_base_and_no_alias_gets_a_fresh_one(adapter):
    adapter.create_session("twin", {"node": "main"})
    adapter.create_session("alone", {})
    for symbol in ("a", "b"):
        adapter.observe("main", {"strings": [symbol]})
    name = adapter.learn("main", {})
    assert adapter.get_pattern("twin", {"name": name})["name"] == name
    assert adapter.get_pattern("alone", {"name": name}) is None


def test_learn_on_an_empty_stm_returns_an_empty_name(adapter):
    assert adapter.learn("main", {}) == ""


def test_rejected_observation_changes_nothing(adapter):
    adapter.observe("main", {"strings": ["a"]})
    assert _rejection(adapter.observe, "main", {"raw": {"strings": [None]}}) == "validation"
    assert _rejection(adapter.observe_raw, "main", {"body": "{not json"}) == "validation"
    assert adapter.stm("main", {}) == [["a"]]
    assert adapter.observe("main", {"strings": ["b"]})["time"] == 2


def test_predictions_are_plain_dicts_with_bare_names(adapter):
    for event in (["x"], ["y"], ["z"]):
        adapter.observe("main", {"strings": event})
    name = adapter.learn("main", {})
    adapter.observe("main", {"strings": ["x"]})
    adapter.observe("main", {"strings": ["y"]})
    (prediction,) = adapter.predictions("main", {})
    assert prediction["name"] == name.removeprefix("PTRN|")
    assert prediction["future"] == [["z"]]
    assert isinstance(prediction["anomalies"], list)
