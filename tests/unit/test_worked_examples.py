"""SPEC.md §12's worked examples, replayed through the pure core with exact bits.

Each expected number below is written as SPEC.md derives it by hand (the formula is in
the comment); equality is exact (==), because the bits are part of the contract (§8).
"""

import math

from engine_session import CoreSession


def test_example_1_one_pattern_exact_prefix():
    s = CoreSession()
    assert s.learn_events(["hello"], ["world"], ["foo"]) == "PTRN|048607f8988a39e5594a01e63a40f1d3266a5cd0"
    s.observe_each("hello", "world")
    result = s.predict()
    (p,) = result.predictions
    assert p.similarity == 2 * 2 / 5  # LCS 2 of L + n = 5
    assert (p.matches, p.past, p.present, p.future) == (("hello", "world"), (), (("hello",), ("world",)), (("foo",),))
    assert p.missing == ((), ()) and p.extras == ((), ())
    assert (p.evidence, p.confidence, p.snr, p.fragmentation) == (2 / 3, 1.0, (6 - 2) / (2 + 2), 0.0)
    cos = 2 / (math.sqrt(2) * math.sqrt(2))
    assert p.itfdf_similarity == 1 - (1.0 - cos) * 1 / 1 == 0.9999999999999998
    assert p.potential == (2 / 3 + 1) * 1 + 0.9999999999999998 + 1 == 3.666666666666666
    assert p.confluence == 0.0
    assert (p.entropy, p.normalized_entropy, p.global_normalized_entropy) == (1.0, math.log(2) / math.log(3), 0.0)
    assert p.tfidf_score == 0.5
    assert p.predictive_information == 0.8
    assert (p.bayesian_prior, p.bayesian_likelihood, p.bayesian_posterior) == (1.0, 0.8, 1.0)
    (fp,) = result.future_potentials
    assert (fp.future, fp.aggregate_potential, fp.supporting_patterns, fp.total_weighted_frequency) == (
        (("foo",),),
        1.0,
        1,
        0.8,
    )


def test_example_2_two_patterns_confluence_bayes_pi():
    s = CoreSession()
    s.learn_events(["a"], ["b"], ["c"])
    s.learn_events(["a"], ["d"], ["e"])
    s.observe_each("a", "b")
    abc, ade = s.by_prefix("b98534b3"), s.by_prefix("393c11f5")
    assert (abc.similarity, ade.similarity) == (0.8, 0.4)
    assert ade.extras == ((), ("b",)) and ade.future == (("d",), ("e",))
    assert ade.snr == (3 - 2) / 3
    assert abc.itfdf_similarity == 0.9999999999999999
    assert ade.itfdf_similarity == 1 - (1.0 - 1 / math.sqrt(1.25)) * 1 / 2 == 0.9472135954999579
    assert (abc.potential, ade.potential) == (3.6666666666666665, 2.391658039944402)
    assert (abc.confluence, ade.confluence) == ((1 / 2) * (1 - 1 * 0.5), 0.0)
    assert abc.normalized_entropy == -2 * 0.5 * math.log(0.5) / math.log(5) == 0.43067655807339306
    assert abc.global_normalized_entropy == 0.21533827903669653
    assert (abc.tfidf_score, ade.tfidf_score) == ((0.5 * 1 + 0.5 * 2) / 2, 1.0)
    assert abc.predictive_information == ade.predictive_information == 0.6000000000000001
    assert (abc.bayesian_posterior, ade.bayesian_posterior) == (0.6666666666666666, 0.3333333333333333)
    futures = [(f.future, f.aggregate_potential, f.total_weighted_frequency) for f in s.predict().future_potentials]
    assert futures == [((("c",),), 0.6666666666666666, 0.8), ((("d",), ("e",)), 0.3333333333333333, 0.4)]


def test_example_3_multi_symbol_events_missing_fragmentation():
    s = CoreSession()
    s.learn_events(["a", "b", "c"], ["d", "e", "f"])
    s.observe_each("a", "d")
    (p,) = s.predict().predictions
    assert (p.similarity, p.fragmentation) == (0.5, 1.0)
    assert p.missing == (("b", "c"), ("e", "f")) and p.future == ()
    assert (p.evidence, p.confidence, p.snr) == (2 / 6, 2 / 6, 1.0)
    assert p.itfdf_similarity == 0.5773502691896258
    assert p.potential == 1.7440169358562925
    assert (p.entropy, p.normalized_entropy) == (2.584962500721156, 0.9999999999999999)
    assert p.tfidf_score == 0.16666666666666666 and p.predictive_information == 0.0


def test_example_4_boundary_fix_and_its_misfire():
    s = CoreSession()
    s.learn_events(["a"], ["b", "c"], ["d"])
    s.observe_each("c", "d")
    (p,) = s.predict().predictions
    assert p.past == (("a",),) and p.present == (("b", "c"), ("d",)) and p.missing == (("b",), ())
    assert (p.similarity, p.evidence, p.confidence) == (0.6666666666666665, 0.5, 0.6666666666666666)
    assert p.potential == 2.9831632475943923

    s = CoreSession()
    s.learn_events(["a"], ["a"], ["b"])
    s.observe_each("a", "b")
    (p,) = s.predict().predictions
    assert p.present == (("a",), ("a",), ("b",)) and p.past == ()
    assert (p.confidence, p.potential) == (0.6666666666666666, 3.282016631383847)

    s = CoreSession()
    s.learn_events(["a", "b", "c", "d"], ["e"])
    s.observe("b", "c")
    (p,) = s.predict().predictions
    assert p.present == (("a", "b", "c", "d"),) and p.missing == (("a", "d"),) and p.future == (("e",),)
    assert (p.similarity, p.evidence, p.confidence, p.potential) == (0.5714285714285714, 0.4, 0.5, 2.6071067811865474)


def test_example_5_lcs_similarity_vs_greedy_blocks():
    s = CoreSession()
    s.learn_events(["a"], ["b"], ["c"], ["a"])
    s.observe_each("b", "a")
    (p,) = s.predict().predictions
    assert p.similarity == 0.6666666666666665 and p.matches == ("a",)
    assert p.future == (("b",), ("c",), ("a",)) and p.extras == (("b",), ())
    assert (p.snr, p.evidence, p.confidence, p.itfdf_similarity) == (1 / 3, 0.25, 1.0, 1.0)
    assert (p.potential, p.predictive_information) == (2.4166666666666665, 0.6666666666666665)


def test_example_6_single_symbol_stm_follows_general_rules():
    s = CoreSession()
    s.learn_events(["a", "b"], ["c"])
    s.observe("b")
    (p,) = s.predict().predictions
    assert (p.similarity, p.matches, p.present, p.missing, p.future) == (
        0.5,
        ("b",),
        (("a", "b"),),
        (("a",),),
        (("c",),),
    )
    assert (p.evidence, p.confidence, p.snr, p.fragmentation) == (1 / 3, 0.5, 1.0, 0.0)
    assert (p.itfdf_similarity, p.potential) == (0.7071067811865475, 2.540440114519881)


def test_example_7_extras_aligned_to_stm_events():
    s = CoreSession()
    s.learn_events(["a"], ["b"], ["c"])
    s.observe("a", "x")
    s.observe_each("b", "y")
    (p,) = s.predict().predictions
    assert p.extras == (("x",), (), ("y",)) and p.fragmentation == 1.0
    assert (p.similarity, p.snr) == (0.5714285714285714, (6 - 4) / (2 + 4))
    assert (p.potential, p.predictive_information) == (2.0555555555555554, 0.5714285714285714)
    s.clear()
    s.observe_each("q", "a", "c", "r")
    (p,) = s.predict().predictions
    assert p.missing == ((), ("b",), ()) and p.extras == (("q",), (), (), ("r",))
    assert p.potential == 1.7609410253721705


def test_example_8_relearn_window_counters_and_noise_decides_rank():
    s = CoreSession()
    for rep in (0, 1, 2):
        for symbol in "abc":
            s.observe(symbol, emotives={"joy": float(rep)})
        s.learn()
        s.clear()
    s.learn_events(["a"], ["b"], ["d"])
    abc = s.kb.get_pattern("b98534b32c1d7489d4ce1a48724aa65aeecbdba9")
    assert abc.frequency == 3
    assert list(abc.emotives) == [{"joy": 1.0}, {"joy": 1.0}, {"joy": 2.0}, {"joy": 2.0}, {"joy": 2.0}]
    assert s.kb.total_symbols_in_patterns() == 12 and s.kb.pattern_count() == 2
    assert s.kb.symbol_stats() == [("a", 4, 2), ("b", 4, 2), ("c", 3, 1), ("d", 1, 1)]
    s.observe_each("a", "b")
    first, second = s.predict().predictions
    assert first.name.startswith("71c480f9") and second.name.startswith("b98534b3")
    assert (first.potential, second.potential) == (3.6666666666666665, 3.666666666666666)
    assert second.bayesian_posterior == 0.7500000000000001 and dict(second.emotives) == {"joy": 1.6}


def test_example_9_auto_learn_keeps_emotives_and_metadata():
    s = CoreSession(max_pattern_length=3)
    results = [s.observe(x, emotives={"e": float(i)}, metadata={"m": i}) for i, x in enumerate("abcde", 1)]
    assert results[2].auto_learned_pattern == "PTRN|b98534b32c1d7489d4ce1a48724aa65aeecbdba9"
    stored = s.kb.get_pattern("b98534b32c1d7489d4ce1a48724aa65aeecbdba9")
    assert list(stored.emotives) == [{"e": 1.0}, {"e": 2.0}, {"e": 3.0}]
    assert dict(stored.metadata) == {"m": ("1", "2", "3")}
    assert s.state.stm == (("d",), ("e",))

    rolling = CoreSession(max_pattern_length=3, stm_mode="ROLLING")
    rolling.observe_each(*"abcde")
    assert rolling.kb.pattern_count() == 3 and rolling.kb.total_symbols_in_patterns() == 9
    assert rolling.state.stm == (("d",), ("e",))


def test_example_10_fuzzy_tokens():
    s = CoreSession(fuzzy_token_threshold=0.8)
    s.learn_events(["x"], ["banana"], ["cherry"], ["grape"])
    s.observe_each("x", "bannana", "cherry")
    (p,) = s.predict().predictions
    assert (p.similarity, p.fragmentation) == (4 / 7, 1.0)
    assert p.matches == ("x", "bannana", "cherry")
    assert [(a.observed, a.expected, a.similarity) for a in p.anomalies] == [
        ("bannana", "banana", (1.0 - 1 / 13) * 100.0 / 100.0)
    ]
    assert p.missing == ((), ("banana",), ()) and p.extras == ((), ("bannana",), ())
    assert (p.evidence, p.confidence, p.itfdf_similarity, p.potential) == (
        0.75,
        1.0,
        0.8164965809277259,
        3.066496580927726,
    )


def test_example_11_affinity_weighting():
    s = CoreSession(affinity_emotive="joy")
    s.observe("a", emotives={"joy": 1.0})
    s.observe("b", emotives={"joy": 3.0})
    s.observe("c")
    s.learn()
    s.clear()
    s.observe("a", emotives={"joy": -4.0})
    s.observe("d")
    s.learn()
    s.clear()
    assert s.kb.all_affinity() == {"a": {"joy": -2.0}, "b": {"joy": 2.0}, "c": {"joy": 2.0}, "d": {"joy": -4.0}}
    s.observe_each("a", "b", "z")
    abc, ad = s.by_prefix("b98534b3"), s.predict().predictions[1]
    assert abc.weighted_similarity == 6.04 / 6.05 == 0.9983471074380166
    assert abc.weighted_snr == 0.9966996699669968 and ad.weighted_snr == 0.3333333333333334
    assert (abc.potential, ad.potential) == (3.9933993399339935, 2.613880262166625)


def test_example_12_threshold_edges():
    s = CoreSession()
    s.learn_events(*[[x] for x in "abcdef"])
    s.observe_each("a", "b")
    assert [p.similarity for p in s.predict().predictions] == [0.5]

    s = CoreSession(recall_threshold=2 / 3)
    s.learn_events(["a"], ["b"], ["c"], ["d"])
    s.observe_each("c", "d")
    assert s.predict().predictions == ()

    s = CoreSession(recall_threshold=0.0)
    s.learn_events(["a"], ["b"], ["c"])
    s.observe_each("x", "y")
    (p,) = s.predict().predictions
    assert (p.similarity, p.matches, p.snr, p.fragmentation, p.itfdf_similarity, p.potential) == (
        0.0,
        (),
        -1.0,
        -1.0,
        0.0,
        0.0,
    )
    assert p.extras == (("x",), ("y",)) and p.missing == (("a",), ("b",), ("c",))


def test_example_14_pruning_defines_the_ensemble():
    s = CoreSession(max_predictions=1)
    for x in "cdef":
        s.learn_events(["a"], ["b"], [x])
    s.learn_events(["x"], ["y"], ["z"])
    s.observe_each("a", "b")
    result = s.predict()
    (p,) = result.predictions
    assert p.name.startswith("71c480f9") and p.bayesian_prior == 1 / 3
    assert [f.future for f in result.future_potentials] == [(("d",),), (("f",),), (("c",),)]
