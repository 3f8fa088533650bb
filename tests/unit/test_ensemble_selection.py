"""The bounded ensemble search (§6.6 with upper bounds) selects exactly what scoring
every candidate and sorting would select, over random knowledge bases and states."""

from hypothesis import given, settings
from hypothesis import strategies as st

from kato_grpc.core.config import SessionConfig, apply_overrides
from kato_grpc.core.learning import pattern_name
from kato_grpc.core.matching import flatten
from kato_grpc.core.model import PatternRecord
from kato_grpc.core.predict import _Scorer, _select_ensemble

symbols = st.sampled_from(list("abcdefgh"))
events = st.lists(st.lists(symbols, min_size=1, max_size=3).map(tuple), min_size=1, max_size=4).map(tuple)


def _brute_force(candidates, stm, q, config):
    scorer = _Scorer(stm, q, config)
    scored = [s for s in map(scorer.score, candidates) if s is not None]
    best = sorted(scored, key=lambda s: (-s.pre_potential, s.record.name))[: 3 * config.max_predictions]
    return sorted(s.record.name for s in best)


@settings(max_examples=200, deadline=None)
@given(
    patterns=st.lists(events, min_size=4, max_size=40, unique=True),
    stm=events,
    max_predictions=st.integers(min_value=1, max_value=3),
    threshold=st.sampled_from([0.0, 0.1, 0.3, 0.6]),
)
def test_bounded_selection_equals_brute_force(patterns, stm, max_predictions, threshold):
    config = apply_overrides(SessionConfig(), {"max_predictions": max_predictions, "recall_threshold": threshold})
    candidates = sorted((PatternRecord(pattern_name(p), p) for p in patterns), key=lambda r: r.name)
    q = flatten(stm)
    selected = [s.record.name for s in _select_ensemble(candidates, stm, q, config)]
    assert selected == _brute_force(candidates, stm, q, config)
