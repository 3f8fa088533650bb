"""Predict: which learned patterns are unfolding in the STM (SPEC.md §6).

The pipeline, in order: candidates (§6.1) → similarity and threshold (§6.2) →
alignment (§6.3–6.5) → pruning (§6.6) → ensemble metrics (§6.7) → affinity weights
(§6.8) → potential (§6.9) → ranking and cut (§6.10). Every loop over candidates runs
in ascending pattern name order, which fixes every sum and every tie (§8).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import LCSseq

from kato_grpc.core import metrics
from kato_grpc.core.config import SessionConfig
from kato_grpc.core.knowledge import KnowledgeView, symbol_affinity
from kato_grpc.core.learning import average_emotives
from kato_grpc.core.matching import (
    Alignment,
    BlockMatcher,
    align,
    character_similarity,
    flatten,
    token_similarity,
)
from kato_grpc.core.model import Event, FuturePotential, PatternRecord, Prediction, PredictResult

__all__ = ["predict_patterns", "passes_filters"]


@dataclass(frozen=True)
class _ScoredCandidate:
    """A candidate that passed the threshold, with its own (non-ensemble) metrics."""

    record: PatternRecord
    flat: tuple[str, ...]
    similarity: float
    alignment: Alignment
    evidence: float
    confidence: float
    snr: float

    @property
    def pre_potential(self) -> float:
        frag = self.alignment.fragmentation
        return (self.evidence + self.confidence) * self.snr + (0.0 if frag == -1 else 1.0 / (frag + 1.0))


def passes_filters(config: SessionConfig, pattern: Sequence[str], state: Sequence[str]) -> bool:
    """Whether a pattern survives every stage of `filter_pipeline` (§6.1).

    The `rapidfuzz` stage keeps what the threshold keeps anyway, so it removes nothing here.
    """
    stages = set(config.filter_pipeline)
    if not stages:
        return True
    n, length = len(state), len(pattern)
    if "length" in stages:
        low = max(1, math.floor(n * config.length_min_ratio))
        if not low <= length <= math.floor(n * config.length_max_ratio):
            return False
    pattern_set, state_set = set(pattern), set(state)
    common = len(pattern_set & state_set)
    union = len(pattern_set | state_set)
    jaccard = common / union if union else 0.0
    if "jaccard" in stages and (common < config.jaccard_min_overlap or jaccard < config.jaccard_threshold):
        return False
    if "minhash" in stages and jaccard < config.minhash_threshold:
        return False
    if "bloom" in stages and common == 0:
        return False
    return True


class _Interner:
    """Maps symbols to small integers so LCS runs on exact ids (never on hash values)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def ids(self, symbols: Sequence[str]) -> list[int]:
        table = self._ids
        return [table.setdefault(s, len(table)) for s in symbols]


class _Scorer:
    """Scores candidates against one state: similarity, threshold, blocks, alignment."""

    def __init__(self, stm: Sequence[Event], q: list[str], config: SessionConfig) -> None:
        self._interner = _Interner()
        self._q_ids = self._interner.ids(q)
        self._matcher = BlockMatcher(self._q_ids)
        self._stm, self._q, self._config = stm, q, config

    def score(self, record: PatternRecord) -> _ScoredCandidate | None:
        """The candidate's own metrics, or None if a filter, the threshold or §6.3 drops it."""
        config, q = self._config, self._q
        p = record.flat
        if not passes_filters(config, p, q):
            return None
        p_ids = self._interner.ids(p)
        if config.use_token_matching:
            similarity = token_similarity(LCSseq.similarity(p_ids, self._q_ids), len(p), len(q))
        else:
            similarity = character_similarity(p, q)
        if similarity < config.recall_threshold:
            return None
        blocks = self._matcher.blocks(p_ids)
        if not blocks and config.recall_threshold > 0:
            return None
        alignment = align(record.events, p, self._stm, q, blocks, config.fuzzy_token_threshold)
        m = len(alignment.matches)
        present_length = sum(len(event) for event in alignment.present)
        return _ScoredCandidate(
            record=record,
            flat=p,
            similarity=similarity,
            alignment=alignment,
            evidence=metrics.evidence(m, len(p)),
            confidence=metrics.confidence(m, present_length),
            snr=metrics.snr(m, len(q)),
        )


# Bounds are compared with this margin, so float rounding in a bound never drops a
# candidate that the exact computation would keep.
_MARGIN = 1e-9


def _upper_bounds(candidates: Sequence[PatternRecord], q: Sequence[str], threshold: float) -> list[tuple[float, int]]:
    """(bound on pre_potential, position) of each candidate that can pass the threshold.

    With c the multiset overlap of pattern and state, the matches m ≤ LCS ≤ c, so
    similarity ≤ 2c/(L+n), evidence ≤ c/L, confidence ≤ 1, snr ≤ (3c−n)/(c+n) and the
    fragmentation term ≤ 1: pre_potential ≤ (c/L + 1)·max(snr bound, 0) + 1. Only valid
    for exact tokens (fuzzy matches can exceed c).
    """
    n = len(q)
    q_counts: dict[str, int] = {}
    for symbol in q:
        q_counts[symbol] = q_counts.get(symbol, 0) + 1
    bounds = []
    for position, record in enumerate(candidates):
        length = len(record.flat)
        c = sum(min(count, q_counts[s]) for s, count in record.symbol_counts.items() if s in q_counts)
        if 2.0 * c / (length + n) + _MARGIN < threshold:
            continue
        snr_bound = (3 * c - n) / (c + n) if c + n else 0.0
        bounds.append(((c / length + 1.0) * max(snr_bound, 0.0) + 1.0 + _MARGIN, position))
    return bounds


def _select_ensemble(
    candidates: Sequence[PatternRecord], stm: Sequence[Event], q: list[str], config: SessionConfig
) -> list[_ScoredCandidate]:
    """The ensemble of §6.6: the 3·max_predictions best pre-potentials (ties by name),
    in name order, among the candidates that pass the threshold.

    With many candidates and exact tokens, candidates are scored in decreasing order of
    an upper bound on their pre-potential, stopping once no unscored candidate can beat
    (or tie) the ensemble's worst member: the same ensemble, far fewer alignments.
    """
    keep = 3 * config.max_predictions
    scorer = _Scorer(stm, q, config)
    exact_tokens = config.use_token_matching and config.fuzzy_token_threshold == 0.0
    if len(candidates) <= keep or not exact_tokens:
        passing = [c for c in map(scorer.score, candidates) if c is not None]
        if len(passing) <= keep:
            return passing
        best = sorted(passing, key=lambda c: (-c.pre_potential, c.record.name))[:keep]
        return sorted(best, key=lambda c: c.record.name)

    # A min-heap of the kept members by (pre_potential, -position): its root is the
    # member a newcomer must beat (a lower potential, or equal with a later name).
    heap: list[tuple[float, int, _ScoredCandidate]] = []
    for bound, position in sorted(_upper_bounds(candidates, q, config.recall_threshold), key=lambda b: (-b[0], b[1])):
        if len(heap) == keep and bound < heap[0][0]:
            break
        contender = scorer.score(candidates[position])
        if contender is None:
            continue
        item = (contender.pre_potential, -position, contender)
        if len(heap) < keep:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return [item[2] for item in sorted(heap, key=lambda item: -item[1])]


@dataclass(frozen=True)
class _EnsembleStatistics:
    """The ensemble-wide quantities every member's metrics read (§6.7)."""

    total_patterns: int
    symbol_table_size: int
    ensemble_frequency: int  # the sum of the members' frequencies
    probability: dict[str, float]  # pmf(symbol) / total_patterns
    dimensions: list[str]  # every symbol of the state or of a member's present, sorted
    state_vector: dict[str, float]
    state_norm: float
    evidence: float  # the Bayesian evidence: Σ similarity · frequency / ensemble frequency


def _ensemble_statistics(
    ensemble: Sequence[_ScoredCandidate], presents: Sequence[list[str]], q: Sequence[str], kb: KnowledgeView
) -> _EnsembleStatistics:
    """Probabilities, the state vector and the sums over the ensemble (§6.7)."""
    total_patterns = kb.pattern_count()
    symbol_table_size = kb.symbol_table_size()
    ensemble_frequency = sum(member.record.frequency for member in ensemble)
    probability: dict[str, float] = {}
    for member, present in zip(ensemble, presents, strict=True):
        for symbol in (*member.alignment.matches, *present):
            if symbol not in probability:
                pmf = kb.pmf(symbol)
                probability[symbol] = pmf / total_patterns if pmf > 0 else 0.0
    dimensions = sorted(set(q).union(*presents))
    q_counts = metrics.first_occurrence_counts(q)
    state_vector = {d: probability.get(d, 0.0) * q_counts.get(d, 0) for d in dimensions}
    norm_sq = 0.0
    for d in dimensions:
        norm_sq += state_vector[d] * state_vector[d]
    evidence = 0.0
    for member in ensemble:
        evidence += member.similarity * (member.record.frequency / ensemble_frequency)
    return _EnsembleStatistics(
        total_patterns=total_patterns,
        symbol_table_size=symbol_table_size,
        ensemble_frequency=ensemble_frequency,
        probability=probability,
        dimensions=dimensions,
        state_vector=state_vector,
        state_norm=math.sqrt(norm_sq),
        evidence=evidence,
    )


_FutureKey = tuple[Event, ...]
"""A future with the symbols of each event sorted: members with equal keys share a group."""


def _future_key(future: Sequence[Event]) -> _FutureKey:
    return tuple(tuple(sorted(event)) for event in future)


@dataclass(frozen=True)
class _FutureGroups:
    """The members that predict the same future, grouped for predictive information (§6.7)."""

    weight: dict[_FutureKey, float]  # Σ similarity · frequency of the group's members
    size: dict[_FutureKey, int]
    future: dict[_FutureKey, tuple[Event, ...]]  # the first member's future, as stored
    aggregate: dict[_FutureKey, float]  # the group's share of the total weight


def _group_futures(ensemble: Sequence[_ScoredCandidate]) -> _FutureGroups:
    """Groups the members with a future by `_future_key`, in ensemble (name) order."""
    weight: dict[_FutureKey, float] = {}
    size: dict[_FutureKey, int] = {}
    future: dict[_FutureKey, tuple[Event, ...]] = {}
    for member in ensemble:
        if member.alignment.future:
            key = _future_key(member.alignment.future)
            weight[key] = weight.get(key, 0.0) + member.similarity * member.record.frequency
            size[key] = size.get(key, 0) + 1
            future.setdefault(key, member.alignment.future)
    total_weight = 0.0
    for group_weight in weight.values():
        total_weight += group_weight
    aggregate = {key: (w / total_weight if total_weight else 0.0) for key, w in weight.items()}
    return _FutureGroups(weight, size, future, aggregate)


@dataclass(frozen=True)
class _AffinityWeights:
    """Symbol weights for `affinity_emotive` (§6.8), and the weight of the whole state."""

    weights: dict[str, float]
    state_weight: float


def _affinity_weights(q: Sequence[str], kb: KnowledgeView, emotive: str) -> _AffinityWeights:
    """w(t) = |affinity(t)[e]| / freq(t) + 0.01, or 0.01 without affinity (§6.8)."""
    weights: dict[str, float] = {}
    for t in dict.fromkeys(q):
        value = symbol_affinity(kb, t).get(emotive, 0.0)
        freq = kb.freq(t)
        weights[t] = abs(value) / freq + 0.01 if freq > 0 and value != 0 else 0.01
    return _AffinityWeights(weights, metrics.weighted_sum(q, weights))


@dataclass(frozen=True)
class _WeightedMetrics:
    """A member's similarity, evidence, confidence and snr with symbols weighted (§6.8)."""

    similarity: float | None
    evidence: float
    confidence: float
    snr: float


def _weighted_metrics(member: _ScoredCandidate, present: Sequence[str], affinity: _AffinityWeights) -> _WeightedMetrics:
    weights = affinity.weights
    alignment = member.alignment
    w_matches = metrics.weighted_sum(alignment.matches, weights)
    w_pattern = metrics.weighted_sum(member.flat, weights)
    w_present = metrics.weighted_sum(present, weights)
    w_extras = metrics.weighted_sum(flatten(alignment.extras), weights)
    den = affinity.state_weight + w_pattern
    return _WeightedMetrics(
        similarity=2 * w_matches / den if den else None,
        evidence=w_matches / w_pattern if w_pattern else 0.0,
        confidence=w_matches / w_present if w_present else 0.0,
        snr=w_matches / (w_matches + w_extras) if w_matches + w_extras else 0.0,
    )


def _member_prediction(
    member: _ScoredCandidate,
    present: list[str],
    statistics: _EnsembleStatistics,
    groups: _FutureGroups,
    affinity: _AffinityWeights | None,
) -> Prediction:
    """One member's prediction with every metric of §6.7–6.9."""
    f = member.record.frequency
    a = member.alignment
    counts = metrics.first_occurrence_counts(present)
    itfdf = metrics.itfdf_similarity(
        counts,
        statistics.dimensions,
        statistics.probability,
        statistics.state_norm,
        statistics.state_vector,
        f,
        statistics.ensemble_frequency,
    )
    prior = f / statistics.ensemble_frequency
    weighted_strength = member.similarity * f / statistics.ensemble_frequency
    if a.future:
        agg = groups.aggregate[_future_key(a.future)]
        information = weighted_strength / agg if agg else 0.0
    else:
        information = 0.0
    # The potential reads the weighted evidence, confidence and snr when weights apply.
    weighted = _weighted_metrics(member, present, affinity) if affinity is not None else None
    if weighted is not None:
        e, c, r = weighted.evidence, weighted.confidence, weighted.snr
    else:
        e, c, r = member.evidence, member.confidence, member.snr
    return Prediction(
        name=member.record.name,
        frequency=f,
        sequence=member.record.events,
        emotives=average_emotives(member.record.emotives),
        metadata=member.record.metadata,
        matches=a.matches,
        past=a.past,
        present=a.present,
        future=a.future,
        missing=a.missing,
        extras=a.extras,
        anomalies=a.anomalies,
        similarity=member.similarity,
        evidence=member.evidence,
        confidence=member.confidence,
        snr=member.snr,
        fragmentation=a.fragmentation,
        entropy=metrics.entropy(counts, len(present)),
        normalized_entropy=metrics.normalized_entropy(counts, len(present), statistics.symbol_table_size),
        global_normalized_entropy=metrics.global_normalized_entropy(
            counts, statistics.probability, statistics.symbol_table_size
        ),
        itfdf_similarity=itfdf,
        confluence=metrics.confluence(present, statistics.probability, f, statistics.total_patterns),
        tfidf_score=metrics.tfidf_score(counts, len(present), statistics.probability, statistics.total_patterns),
        pattern_probability=prior,
        weighted_strength=weighted_strength,
        predictive_information=information,
        bayesian_prior=prior,
        bayesian_likelihood=member.similarity,
        bayesian_posterior=member.similarity * prior / statistics.evidence if statistics.evidence else 0.0,
        potential=metrics.potential(e, c, r, itfdf, a.fragmentation),
        weighted_similarity=weighted.similarity if weighted is not None else None,
        weighted_evidence=weighted.evidence if weighted is not None else None,
        weighted_confidence=weighted.confidence if weighted is not None else None,
        weighted_snr=weighted.snr if weighted is not None else None,
    )


def _rank_key(field: str) -> Callable[[Prediction], tuple[bool, float, str]]:
    def key(prediction: Prediction) -> tuple[bool, float, str]:
        value = getattr(prediction, field)
        # Descending by value, nulls last, then name ascending.
        return (value is None, -value if value is not None else 0.0, prediction.name)

    return key


def _rank(predictions: list[Prediction], groups: _FutureGroups, config: SessionConfig) -> PredictResult:
    """The best `max_predictions` by `rank_sort_algo`, and the future potentials by aggregate (§6.10)."""
    ranked = sorted(predictions, key=_rank_key(config.rank_sort_algo))
    futures = sorted(
        (
            FuturePotential(groups.future[key], groups.aggregate[key], groups.size[key], groups.weight[key])
            for key in groups.weight
        ),
        key=lambda fp: -fp.aggregate_potential,
    )
    return PredictResult(tuple(ranked[: config.max_predictions]), tuple(futures))


def predict_patterns(stm: Sequence[Event], config: SessionConfig, kb: KnowledgeView) -> PredictResult:
    """Predictions and future potentials for `stm` against `kb` (§6)."""
    q = flatten(stm)
    if not q:
        return PredictResult()
    needs_every_pattern = config.recall_threshold == 0 or not config.use_token_matching
    candidates = kb.candidates(None if needs_every_pattern else q)
    ensemble = _select_ensemble(candidates, stm, q, config)
    if not ensemble:
        return PredictResult()
    presents = [flatten(member.alignment.present) for member in ensemble]
    statistics = _ensemble_statistics(ensemble, presents, q, kb)
    groups = _group_futures(ensemble)
    affinity = _affinity_weights(q, kb, config.affinity_emotive) if config.affinity_emotive else None
    predictions = [
        _member_prediction(member, present, statistics, groups, affinity)
        for member, present in zip(ensemble, presents, strict=True)
    ]
    return _rank(predictions, groups, config)
