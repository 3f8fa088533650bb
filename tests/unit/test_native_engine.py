"""The native engine equals the Python core bit for bit (issue 11).

Random knowledge bases, sessions and configs go through both engines, and the results
are compared with ``==``: every field of every prediction (floats to the last bit, in
the same order, ties included) and of `future_potentials`. The index itself is
compared too: after random learns, re-learns, edits and deletes, both report the same
statistics, records and affinities.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kato_grpc.core import engine
from kato_grpc.core.config import FILTER_STAGES, RANK_KEYS, SessionConfig
from kato_grpc.core.knowledge import MemoryKnowledgeBase, PendingView
from kato_grpc.core.learning import average_emotives, pattern_name
from kato_grpc.core.model import LearnPattern, Observation, PatternRecord, SessionState
from kato_grpc.core.predict import predict_patterns
from kato_grpc.kb import native
from tests.support.requirements import missing

if not native.native_available():  # pragma: no cover - depends on the build
    missing("the compiled extension kato_grpc._native (make setup builds it)", allow_module_level=True)

NativeKnowledgeBase, native_predict = native.NativeKnowledgeBase, native.native_predict

# Hundreds of examples through both engines: seconds on an idle machine, but minutes on a
# loaded one (seen: 346 s at load average 30), past the suite's 300 s hang guard.
pytestmark = pytest.mark.timeout(1800)

# Few symbols, so patterns overlap; some share prefixes (fuzzy and character matching),
# some are non-ASCII or empty (code-point order, UTF-8).
SYMBOLS = ["a", "b", "c", "d", "e", "ab", "abc", "abcd", "abce", "bca", "x", "xy", "é", "ü", "", "VCTR|1", "Zed"]
symbol = st.sampled_from(SYMBOLS)
event = st.lists(symbol, min_size=1, max_size=4)
events = st.lists(event, min_size=1, max_size=5)
emotive_map = st.dictionaries(
    st.sampled_from(["joy", "fear", "calm"]), st.sampled_from([-4.0, -0.5, 0.0, 0.25, 1.0, 3.0]), max_size=2
)


@st.composite
def records(draw) -> PatternRecord:
    evs = tuple(tuple(e) for e in draw(events))
    assume(sum(map(len, evs)) >= 2)
    emotives = tuple(draw(st.lists(emotive_map, max_size=3)))
    metadata = draw(
        st.dictionaries(
            st.sampled_from(["k", "src"]),
            st.lists(st.sampled_from(["1", "v", "w"]), min_size=1, max_size=2, unique=True).map(
                lambda v: tuple(sorted(v))
            ),
            max_size=2,
        )
    )
    return PatternRecord(
        name=pattern_name(evs),
        events=evs,
        frequency=draw(st.integers(1, 4)),
        emotives=emotives,
        metadata=metadata,
        affinity_contrib=average_emotives(emotives),
    )


@st.composite
def configs(draw) -> SessionConfig:
    return SessionConfig(
        recall_threshold=draw(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 2 / 3, 1.0]) | st.floats(0.0, 1.0)),
        max_predictions=draw(st.integers(1, 6)),
        use_token_matching=draw(st.booleans()),
        fuzzy_token_threshold=draw(st.sampled_from([0.0, 0.0, 0.5, 0.8, 1.0])),
        rank_sort_algo=draw(st.sampled_from(RANK_KEYS)),
        affinity_emotive=draw(st.sampled_from(["", "", "joy", "fear", "absent"])),
        filter_pipeline=draw(
            st.just(()) | st.lists(st.sampled_from(FILTER_STAGES), unique=True, max_size=3).map(tuple)
        ),
        length_min_ratio=draw(st.sampled_from([0.0, 0.5, 1.0])),
        length_max_ratio=draw(st.sampled_from([1.0, 2.0, 5.0])),
        jaccard_threshold=draw(st.sampled_from([0.0, 0.3, 0.6])),
        jaccard_min_overlap=draw(st.integers(1, 3)),
        minhash_threshold=draw(st.sampled_from([0.0, 0.4, 0.7])),
    )


def both(kb_records: list[PatternRecord]) -> tuple[MemoryKnowledgeBase, NativeKnowledgeBase]:
    python_kb, native_kb = MemoryKnowledgeBase(), NativeKnowledgeBase()
    for record in kb_records:
        python_kb.put_pattern(record)
        native_kb.put_pattern(record)
    return python_kb, native_kb


def assert_same_index(python_kb: MemoryKnowledgeBase, native_kb: NativeKnowledgeBase) -> None:
    assert native_kb.pattern_count() == python_kb.pattern_count()
    assert native_kb.symbol_table_size() == python_kb.symbol_table_size()
    assert native_kb.total_symbols_in_patterns() == python_kb.total_symbols_in_patterns()
    assert native_kb.symbol_stats() == python_kb.symbol_stats()
    assert native_kb.all_affinity() == python_kb.all_affinity()
    assert native_kb.list_patterns() == python_kb.list_patterns()
    assert native_kb.candidates(None) == python_kb.candidates(None)
    for s in [*SYMBOLS, "unknown"]:
        assert native_kb.pmf(s) == python_kb.pmf(s)
        assert native_kb.freq(s) == python_kb.freq(s)
        assert native_kb.candidates([s]) == python_kb.candidates([s])
        assert native_kb.symbol_affinity(s) == python_kb.symbol_affinity(s)


slow = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@st.composite
def states(draw, kb_records: list[PatternRecord]) -> tuple[tuple[str, ...], ...]:
    """Mostly a stored pattern's events, cut and with noise; sometimes anything."""
    if not kb_records or draw(st.integers(0, 3)) == 0:
        return tuple(tuple(e) for e in draw(events))
    evs = list(draw(st.sampled_from(kb_records)).events)
    start = draw(st.integers(0, len(evs) - 1))
    evs = evs[start : start + draw(st.integers(1, len(evs)))]
    if draw(st.booleans()):
        evs.insert(draw(st.integers(0, len(evs))), tuple(draw(event)))
    return tuple(tuple(e) for e in evs)


@slow
@given(st.lists(records(), max_size=12), st.data(), configs())
def test_predictions_are_bit_identical(kb_records, data, config):
    python_kb, native_kb = both(kb_records)
    stm = data.draw(states(kb_records))
    expected = predict_patterns(stm, config, python_kb)
    assert native_predict(stm, config, native_kb) == expected


# Skewed knowledge bases (issue 21): a few symbols in most patterns, a tail in few, so
# most patterns pass the threshold and pruning, not the threshold, decides the ensemble.
SKEWED_SYMBOLS = [*"aaaaaaaabbbbbcccdd", *(f"t{i}" for i in range(24))]
skewed_event = st.lists(st.sampled_from(SKEWED_SYMBOLS), min_size=1, max_size=4, unique=True)


@st.composite
def skewed_records(draw) -> PatternRecord:
    evs = tuple(tuple(e) for e in draw(st.lists(skewed_event, min_size=2, max_size=7)))
    return PatternRecord(name=pattern_name(evs), events=evs, frequency=draw(st.integers(1, 3)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(skewed_records(), min_size=10, max_size=60),
    st.data(),
    st.sampled_from([0.1, 0.3, 0.6]),
    st.integers(1, 4),
    st.booleans(),
)
def test_skewed_knowledge_bases_are_bit_identical(kb_records, data, threshold, max_predictions, exact_tokens):
    """Most candidates pass the threshold; the ensemble (3-12 of 10-60) is decided by the
    bounds and pruning of the native search, which must not change it."""
    config = replace(data.draw(configs()), recall_threshold=threshold, max_predictions=max_predictions)
    if exact_tokens:  # the bounded search (otherwise every candidate is scored)
        config = replace(config, use_token_matching=True, fuzzy_token_threshold=0.0)
    python_kb, native_kb = both(kb_records)
    stm = data.draw(states(kb_records))
    assert native_predict(stm, config, native_kb) == predict_patterns(stm, config, python_kb)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=30), st.lists(event, min_size=40, max_size=120), configs())
def test_long_stms_are_bit_identical(kb_records, stm, config):
    """STMs of hundreds of symbols: multi-word bit-parallel LCS, deep block recursion."""
    python_kb, native_kb = both(kb_records)
    stm = tuple(tuple(e) for e in stm)
    assert native_predict(stm, config, native_kb) == predict_patterns(stm, config, python_kb)


@slow
@given(st.lists(records(), min_size=1, max_size=10), st.data())
def test_incremental_writes_keep_the_index_equal(kb_records, data):
    """Re-learns, edits and deletes change the native index exactly as the Python one."""
    python_kb, native_kb = both(kb_records)
    for _ in range(data.draw(st.integers(0, 8))):
        stored = python_kb.list_patterns()
        action = data.draw(st.sampled_from(["put", "edit", "delete", "clear"] if stored else ["put"]))
        if action == "put":
            record = data.draw(records())
            python_kb.put_pattern(record)
            native_kb.put_pattern(record)
        elif action == "edit":
            record = data.draw(st.sampled_from(stored))
            edited = replace(record, frequency=data.draw(st.integers(1, 9)), emotives=(), metadata={})
            python_kb.put_pattern(edited)
            native_kb.put_pattern(edited)
        elif action == "delete":
            name = data.draw(st.sampled_from(stored)).name
            assert native_kb.delete_pattern(name) == python_kb.delete_pattern(name)
        else:
            python_kb.clear()
            native_kb.clear()
    assert_same_index(python_kb, native_kb)
    stm = tuple(tuple(e) for e in data.draw(events))
    config = data.draw(configs())
    assert native_predict(stm, config, native_kb) == predict_patterns(stm, config, python_kb)


@slow
@given(st.lists(records(), max_size=8), st.lists(events, min_size=1, max_size=4), configs(), st.integers(1, 5))
def test_pending_learns_of_one_call_are_seen_alike(kb_records, batch, config, persistence):
    """An ObserveSequence that learns before its last item predicts on a `PendingView`."""
    python_kb, native_kb = both(kb_records)
    view_python, view_native = PendingView(python_kb), PendingView(native_kb)
    for evs in batch:
        evs = tuple(tuple(e) for e in evs)
        if sum(map(len, evs)) < 2:
            continue
        effect = LearnPattern(pattern_name(evs), evs, ({"joy": 1.0},), (), persistence)
        view_python.apply(effect)
        view_native.apply(effect)
    stm = tuple(tuple(e) for e in batch[-1])
    assert native_predict(stm, config, view_native) == predict_patterns(stm, config, view_python)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=8), st.lists(st.lists(symbol, max_size=3), min_size=1, max_size=6), configs())
def test_observe_sequence_is_the_same_through_either_engine(kb_records, strings, config):
    config = replace(config, max_pattern_length=2)
    results = []
    for name in ("python", "native"):
        kb = MemoryKnowledgeBase() if name == "python" else NativeKnowledgeBase()
        for record in kb_records:
            kb.put_pattern(record)
        predictor = predict_patterns if name == "python" else native_predict
        outcome = engine.observe_sequence(
            SessionState(kb_id="kb", config=config),
            [Observation(strings=tuple(s)) for s in strings],
            kb,
            learn_after_each=True,
            predictor=predictor,
        )
        results.append((outcome.state, outcome.effects, outcome.result))
    assert results[0] == results[1]


def test_the_anchor_query_ranks_its_source_first():
    """SPEC'd example of the anchor workload: pattern 0 first, similarity 30/33."""
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2].parent / "shared" / "bench"
    if not (bench / "anchor_workload.py").exists():
        pytest.skip("accepted: ../shared/bench (the anchor workload) lives beside the checkout, not in it")
    sys.path.insert(0, str(bench))
    try:
        from anchor_workload import patterns, query_stm
    finally:
        sys.path.remove(str(bench))
    python_kb, native_kb = MemoryKnowledgeBase(), NativeKnowledgeBase()
    for evs in patterns(2000):
        evs = tuple(tuple(sorted(e)) for e in evs)
        record = python_kb.get_pattern(pattern_name(evs))
        record = replace(record, frequency=record.frequency + 1) if record else PatternRecord(pattern_name(evs), evs)
        python_kb.put_pattern(record)
        native_kb.put_pattern(record)
    stm = tuple(tuple(sorted(e)) for e in query_stm())
    result = native_predict(stm, SessionConfig(), native_kb)
    assert result == predict_patterns(stm, SessionConfig(), python_kb)
    assert result.predictions[0].similarity == 2 * 15 / 33 * 100.0 / 100.0


@slow
@given(st.lists(records(), max_size=12), st.data(), configs())
def test_the_wire_encoding_equals_the_python_encoder(kb_records, data, config):
    """The server puts native predictions into responses as bytes encoded in Rust;
    they must decode to exactly what the Python encoder builds."""
    from kato_grpc._proto.kato.v1 import kato_service_pb2 as api
    from kato_grpc.server import convert

    _, native_kb = both(kb_records)
    result = native_predict(data.draw(states(kb_records)), config, native_kb)
    from_native, from_python = api.PredictResponse(), api.PredictResponse()
    convert.predictions_to_proto(result.predictions, from_native, "predictions")
    convert.future_potentials_to_proto(result.future_potentials, from_native, "future_potentials")
    convert.predictions_to_proto(tuple(result.predictions), from_python, "predictions")
    convert.future_potentials_to_proto(tuple(result.future_potentials), from_python, "future_potentials")
    assert from_native == from_python
    assert from_native.SerializeToString(deterministic=True) == from_python.SerializeToString(deterministic=True)
    assert tuple(convert.prediction_from_proto(p) for p in from_native.predictions) == tuple(result.predictions)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=10))
def test_stored_rows_load_natively_as_they_were_stored(kb_records):
    """A store's JSON rows parsed by the native index equal the records (floats to the bit)."""
    from kato_grpc.kb.records import load_rows, record_columns

    python_kb, _ = both(kb_records)
    rows = [(r.name, *record_columns(r).values()) for r in python_kb.list_patterns()]
    rows.append(("f" * 40, '[["a","b"]]', 1, '[{"j":Infinity}]', "{}", "{}"))  # not JSON: read in Python
    native_kb = NativeKnowledgeBase()
    load_rows(native_kb, rows)
    reference = MemoryKnowledgeBase()
    load_rows(reference, rows)
    assert_same_index(reference, native_kb)
