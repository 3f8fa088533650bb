"""`knowledge_bases(after, limit)`, the store side of ListKnowledgeBases: the same answers
from the memory store, the embedded store and a real ClickHouse."""

from __future__ import annotations

import pytest

from kato_grpc.core.learning import pattern_name
from kato_grpc.core.model import LearnPattern, PatternRecord
from kato_grpc.kb.memory import MemoryStore
from kato_grpc.kb.sqlite import SqliteStore


def record(*symbols: str) -> PatternRecord:
    events = tuple((s,) for s in symbols)
    return PatternRecord(name=pattern_name(events), events=events)


@pytest.fixture(params=["memory", "sqlite", "clickhouse"])
def store(request, tmp_path):
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SqliteStore(tmp_path)
    else:
        from kato_grpc.kb.clickhouse import ClickHouseStore

        made = ClickHouseStore(request.getfixturevalue("clickhouse_url"))
    yield made
    made.close()


def test_lists_the_knowledge_bases_holding_a_pattern_in_id_order(store):
    store.put_records("b", [record("x", "y"), record("y", "z")], [])
    store.put_records("a", [record("x", "y")], [])
    store.put_records("c", [record("p", "q")], [])
    assert store.knowledge_bases("", 10) == [("a", 1), ("b", 2), ("c", 1)]
    assert store.knowledge_bases("a", 1) == [("b", 2)]
    assert store.knowledge_bases("c", 10) == []


def test_a_cleared_or_emptied_knowledge_base_is_not_listed(store):
    store.put_records("cleared", [record("x", "y")], [])
    store.put_records("emptied", [record("x", "y")], [])
    store.put_records("kept", [record("x", "y"), record("y", "z")], [])
    store.clear("cleared")
    store.delete_pattern("emptied", record("x", "y").name)
    store.delete_pattern("kept", record("x", "y").name)
    assert store.knowledge_bases("", 10) == [("kept", 1)]
    # Learned again after the clear: listed again, counting only what came after.
    learned = record("p", "q")
    store.apply("cleared", [LearnPattern(learned.name, learned.events, (), (), 5)])
    assert store.knowledge_bases("", 10) == [("cleared", 1), ("kept", 1)]
