"""Unit tests of the core's rules, one SPEC.md section at a time, on tiny inputs."""

import math

import pytest
from engine_session import CoreSession

from kato_grpc.core import engine, metrics
from kato_grpc.core.config import SessionConfig, apply_overrides, config_to_dict
from kato_grpc.core.errors import EmptyStmError, LimitExceeded, ValidationError
from kato_grpc.core.learning import accumulate_metadata, average_emotives, metadata_text, pattern_name
from kato_grpc.core.matching import character_similarity, matching_blocks, token_similarity
from kato_grpc.core.model import Limits, Observation
from kato_grpc.core.observation import parse_observation, vector_name
from kato_grpc.core.predict import passes_filters

# --- §5.1 names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "events, name",
    [
        ([["a", "b"], ["c"]], "e9e43f2309079f2843665ab773996d99489306d6"),
        ([["a"], ["b"], ["c"]], "b98534b32c1d7489d4ce1a48724aa65aeecbdba9"),
        ([["hello"], ["world"], ["foo"]], "048607f8988a39e5594a01e63a40f1d3266a5cd0"),
        ([["test"], ["model"], ["hash"]], "80c55a43ff1b0c3137454f58b7724d95512fa409"),
        ([["alpha", "beta"], ["gamma"], ["delta", "epsilon"]], "136574b6b7fe3c099d160910b37f8bc84ec8eaef"),
        ([["it's"], ["b"]], "c1fb2cb947c025a25df1e665d0d7e99dcba9ee46"),
        (
            [['he said "it\'s"', "tab\there"], ["back\\slash", "é", "\u200b"]],
            "fe048079ba2d7ff7a36d48205041debe86a1c062",
        ),
    ],
)
def test_pattern_name_is_sha1_of_python_text(events, name):
    assert pattern_name([tuple(e) for e in events]) == name


@pytest.mark.parametrize(
    "vector, name_or_text",
    [
        ([1.5, 2.25], "VCTR|79cd73fb4f9ee7ee184cdbcc4663981575339a2d"),
    ],
)
def test_vector_name(vector, name_or_text):
    assert vector_name(vector) == name_or_text


def test_summed_vectors_name_the_event_and_come_first():
    s = CoreSession()
    s.observe("Zed", "alpha", "A", vectors=((1.0, 2.0), (0.5, 0.25)))
    assert s.state.stm == (("VCTR|79cd73fb4f9ee7ee184cdbcc4663981575339a2d", "A", "Zed", "alpha"),)


# --- §5.3 / §5.4 accumulation -----------------------------------------------------------


def test_metadata_text_follows_python_str_with_integral_numbers_bare():
    assert [metadata_text(v) for v in ("s", True, False, None, 7, 7.0, -4.0, 2.5, 0.1, 1e-05, 1e16)] == [
        "s",
        "True",
        "False",
        "None",
        "7",
        "7",
        "-4",
        "2.5",
        "0.1",
        "1e-05",
        "1e+16",
    ]
    assert metadata_text(["x", "y"]) == "['x', 'y']"
    assert metadata_text({"b": 1, "a": "z"}) == "{'a': 'z', 'b': 1}"


def test_accumulate_metadata_sorts_keys_and_distinct_values():
    assert accumulate_metadata([{"k": "b", "j": 1}, {"k": "a"}, {"k": "b"}]) == {"j": ("1",), "k": ("a", "b")}


def test_average_emotives_is_per_key_mean_in_first_appearance_order():
    assert average_emotives([]) == {}
    assert list(average_emotives([{"b": 1.0}, {"a": 2.0, "b": 3.0}]).items()) == [("b", 2.0), ("a", 2.0)]


# --- §6.2 / §6.3 matching ---------------------------------------------------------------


def test_similarity_keeps_the_percent_round_trip():
    assert token_similarity(2, 4, 2) == 0.6666666666666665  # 2·2/6 ×100 /100
    assert character_similarity(["abc"], ["abd"]) == (1.0 - 2 / 6) * 100.0 / 100.0
    assert character_similarity([""], [""]) == 1.0


def test_matching_blocks_prefer_earliest_and_can_miss_the_lcs():
    assert matching_blocks(list("abca"), list("ba")) == [(0, 1, 1)]
    assert matching_blocks(list("abc"), list("xyz")) == []


# --- §6.5 / §6.7 metric edge values -----------------------------------------------------


def test_metric_zero_denominators():
    assert metrics.confidence(0, 0) == 0.0
    assert metrics.snr(0, 0) == 0.0
    assert metrics.snr(0, 3) == -1.0  # (0 − 3) / (0 + 3)
    assert metrics.entropy({}, 0) == 0.0
    assert metrics.normalized_entropy({"a": 1}, 1, 1) == 0.0  # N_sym ≤ 1
    assert metrics.tfidf_score({}, 0, {}, 3) == 0.0
    assert metrics.confluence([], {}, 1, 1) == 0.0
    assert metrics.potential(1.0, 1.0, 1.0, 1.0, -1.0) == 3.0  # no fragmentation term


def test_tfidf_document_frequency_truncates_the_double_product():
    # pmf 15 of U 22: P·U = 15/22·22 = 14.999999999999998 → df 14 (SPEC §6.7)
    p = 15 / 22
    assert math.trunc(p * 22) == 14
    assert metrics.tfidf_score({"s": 1}, 1, {"s": p}, 22) == 1 * (math.log2(22 / 14) + 1.0)


def test_entropy_of_two_equal_symbols_is_one_bit():
    assert metrics.entropy({"a": 1, "b": 1}, 2) == 1.0


def test_confluence_uses_tiny_probability_for_unseen_symbols():
    # g = log10(0.5) + log10(1e-10); confluence = (1/2)·(1 − 10^g)
    g = math.log10(0.5) + math.log10(1e-10)
    assert metrics.confluence(["a", "z"], {"a": 0.5}, 1, 2) == (1 / 2) * (1.0 - 10.0**g)


# --- §6.1 filters -----------------------------------------------------------------------


def test_filters_only_remove():
    config = apply_overrides(SessionConfig(), {"filter_pipeline": ["length"]})
    assert passes_filters(config, ["a", "b"], ["a", "b"])
    assert not passes_filters(config, list("abcdefgh"), ["a", "b"])  # L 8 > ⌊2·2.0⌋
    config = apply_overrides(SessionConfig(), {"filter_pipeline": ["jaccard"], "jaccard_min_overlap": 1})
    assert passes_filters(config, ["a", "b"], ["a", "c"])  # 1/3 ≥ 0.3
    assert not passes_filters(config, ["a", "b", "d"], ["a", "c"])  # 1/4 < 0.3
    config = apply_overrides(SessionConfig(), {"filter_pipeline": ["bloom"]})
    assert not passes_filters(config, ["x"], ["a"])


# --- §7 config ---------------------------------------------------------------------------


def test_config_rejects_out_of_range_naming_key_value_and_range():
    with pytest.raises(ValidationError) as caught:
        apply_overrides(SessionConfig(), {"recall_threshold": 1.5, "persistence": 0, "stm_mode": "X"})
    fields = [v.field for v in caught.value.violations]
    assert fields == ["config.persistence", "config.recall_threshold", "config.stm_mode"]
    assert "1.5" in str(caught.value) and "[0.0, 1.0]" in str(caught.value)


@pytest.mark.parametrize(
    "key, value",
    [
        ("max_predictions", 1.5),
        ("max_predictions", True),
        ("recall_threshold", "0.5"),
        ("recall_threshold", float("nan")),
        ("sort_symbols", 1),
        ("rank_sort_algo", "bogus"),
        ("filter_pipeline", ["length", "nope"]),
        ("minhash_num_hashes", 9),
        ("length_max_ratio", 0.5),
    ],
)
def test_config_rejects_wrong_types_and_values(key, value):
    with pytest.raises(ValidationError):
        apply_overrides(SessionConfig(), {key: value})


def test_config_update_is_all_or_nothing_and_ignores_unknown_keys():
    state = engine.new_session("kb", {"max_predictions": 7})
    with pytest.raises(ValidationError):
        engine.update_config(state, {"max_predictions": 9, "persistence": 0})
    assert engine.update_config(state, {"nonsense": 1}).config == state.config
    assert config_to_dict(state.config)["max_predictions"] == 7
    assert apply_overrides(SessionConfig(), {"jaccard_threshold": 0}).jaccard_threshold == 0.0


# --- §3 observe ---------------------------------------------------------------------------


def test_empty_observation_counts_time_and_resets_predictions_only():
    s = CoreSession()
    s.learn_events(["a"], ["b"])
    s.observe("a")
    assert engine.cognition_data(s.state, s.kb)["predictions"]
    result = s.observe()
    assert (result.time, result.stm_length, s.state.cognition_stm) == (2, 1, None)
    assert engine.cognition_data(s.state, s.kb)["predictions"] == ()
    assert result.unique_id == "obs-2"


def test_percept_is_sorted_and_averages_emotives():
    s = CoreSession(sort_symbols=False)
    s.observe("b", "a", emotives={"joy": 1.0})
    s.observe("d", "c", emotives={"joy": 3.0}, metadata={"k": 1})
    assert s.state.stm == (("b", "a"), ("d", "c"))
    assert s.state.percept.strings == ("c", "d")
    assert dict(s.state.percept.emotives) == {"joy": 2.0}


def test_rejected_observation_changes_nothing():
    s = CoreSession()
    s.observe("a")
    before = s.state
    with pytest.raises(ValidationError):
        engine.observe(before, Observation(strings=("x",), emotives={"": 1.0}), s.kb)
    with pytest.raises(ValidationError):
        engine.observe(before, Observation(vectors=((1.0,), (1.0, 2.0))), s.kb)
    with pytest.raises(LimitExceeded):
        engine.observe(before, Observation(strings=("x",) * 3), s.kb, Limits(max_symbols_per_event=2))
    assert s.state is before


def test_parse_observation_names_bad_fields():
    with pytest.raises(ValidationError) as caught:
        parse_observation({"strings": ["ok", None], "emotives": {"joy": True}, "vectors": [[1, "x"]]})
    assert [v.field for v in caught.value.violations] == ["strings[1]", "vectors[0][1]", "emotives['joy']"]


def test_stm_and_accumulators_keep_their_newest_entries():
    s = CoreSession()
    limits = Limits(max_stm_events=3, max_accumulator_entries=2)
    for i in range(5):
        s.state = engine.observe(s.state, Observation(strings=(str(i),), emotives={"e": float(i)}), s.kb, limits).state
    assert s.state.stm == (("2",), ("3",), ("4",))
    assert s.state.emotive_acc == ({"e": 3.0}, {"e": 4.0})


# --- §4 / §5 learning -----------------------------------------------------------------------


def test_rolling_auto_learn_table():
    s = CoreSession(max_pattern_length=3, stm_mode="ROLLING")
    learned = [s.observe(x).auto_learned_pattern for x in "abcde"]
    assert learned[:2] == ["", ""]
    assert learned[2:] == ["PTRN|" + pattern_name([(x,) for x in w]) for w in ("abc", "bcd", "cde")]


def test_rolling_with_length_one_keeps_nothing():
    s = CoreSession(max_pattern_length=1, stm_mode="ROLLING")
    assert s.observe("a", "b").auto_learned_pattern
    assert s.state.stm == ()


def test_learn_resets_emotive_and_metadata_accumulators():
    s = CoreSession()
    s.observe("a", emotives={"joy": 1.0}, metadata={"m": "x"})
    s.observe("b")
    s.learn()
    s.observe("c")
    s.observe("d")
    name = s.learn()[5:]
    stored = s.kb.get_pattern(name)
    assert stored.emotives == () and dict(stored.metadata) == {}


def test_learn_of_one_symbol_stores_nothing_but_clears():
    s = CoreSession()
    s.observe("a")
    assert s.learn() == "" and s.state.stm == () and s.kb.pattern_count() == 0
    with pytest.raises(EmptyStmError):
        engine.learn(s.state)


def test_observe_sequence_is_atomic_and_sees_its_own_learns():
    s = CoreSession()
    good = Observation(strings=("a",))
    with pytest.raises(ValidationError) as caught:
        engine.observe_sequence(s.state, [good, Observation(emotives={"": 1.0})], s.kb)
    assert caught.value.violations[0].field == "observations[1].emotives"
    observations = [Observation(strings=(x,)) for x in "ab"] * 2
    outcome = engine.observe_sequence(s.state, observations, s.kb, learn_at_end=True)
    result = outcome.result
    assert result.final_learned_pattern == "PTRN|" + pattern_name([("a",), ("b",), ("a",), ("b",)])
    assert [r.time for r in result.results] == [1, 2, 3, 4]
    # Predictions of the last item saw nothing yet: the KB was empty.
    seq = engine.observe_sequence(
        s.state, [Observation(strings=("x", "y")), Observation(strings=("x", "y"))], s.kb, learn_after_each=True
    )
    assert seq.result.auto_learned_patterns == ("PTRN|" + pattern_name([("x", "y")]),) * 2
    assert seq.state.cognition_stm == (("x", "y"),)  # what the last item predicted from, before its learn


def test_same_session_and_kb_give_identical_predictions():
    s = CoreSession()
    s.learn_events(["a", "b"], ["c"])
    s.observe_each("a", "c")
    assert s.predict() == s.predict()
