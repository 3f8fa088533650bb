"""Predict: which learned patterns are unfolding in the STM (SPEC.md §6).

The pipeline, in order: candidates (§6.1) → similarity and threshold (§6.2) →
alignment (§6.3–6.5) → pruning (§6.6) → ensemble metrics (§6.7) → affinity weights
(§6.8) → potential (§6.9) → ranking and cut (§6.10). Every loop over candidates runs
in ascending pattern name order, which fixes every sum and every tie (§8).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Sequence

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
class _Scored:
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

    def score(self, record: PatternRecord) -> _Scored | None:
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
        return _Scored(
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
) -> list[_Scored]:
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
        scored = [s for s in map(scorer.score, candidates) if s is not None]
        if len(scored) <= keep:
            return scored
        best = sorted(scored, key=lambda s: (-s.pre_potential, s.record.name))[:keep]
        return sorted(best, key=lambda s: s.record.name)

    # A min-heap of the kept members by (pre_potential, -position): its root is the
    # member a newcomer must beat (a lower potential, or equal with a later name).
    heap: list[tuple[float, int, _Scored]] = []
    for bound, position in sorted(_upper_bounds(candidates, q, config.recall_threshold), key=lambda b: (-b[0], b[1])):
        if len(heap) == keep and bound < heap[0][0]:
            break
        scored = scorer.score(candidates[position])
        if scored is None:
            continue
        item = (scored.pre_potential, -position, scored)
        if len(heap) < keep:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    return [item[2] for item in sorted(heap, key=lambda item: -item[1])]


def _future_key(future: Sequence[Event]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(sorted(event)) for event in future)


def _weights(q: Sequence[str], kb: KnowledgeView, emotive: str) -> dict[str, float]:
    """w(t) = |affinity(t)[e]| / freq(t) + 0.01, or 0.01 without affinity (§6.8)."""
    weights: dict[str, float] = {}
    for t in dict.fromkeys(q):
        value = symbol_affinity(kb, t).get(emotive, 0.0)
        freq = kb.freq(t)
        weights[t] = abs(value) / freq + 0.01 if freq > 0 and value != 0 else 0.01
    return weights


def _rank_key(field: str):
    def key(prediction: Prediction) -> tuple:
        value = getattr(prediction, field)
        # Descending by value, nulls last, then name ascending.
        return (value is None, -value if value is not None else 0.0, prediction.name)

    return key


def predict_patterns(stm: Sequence[Event], config: SessionConfig, kb: KnowledgeView) -> PredictResult:
    """Predictions and future potentials for `stm` against `kb` (§6)."""
    q = flatten(stm)
    if not q:
        return PredictResult()
    needs_every_pattern = config.recall_threshold == 0 or not config.use_token_matching
    candidates = kb.candidates(None if needs_every_pattern else q)
    scored = _select_ensemble(candidates, stm, q, config)
    if not scored:
        return PredictResult()

    # Ensemble-wide quantities (§6.7).
    total_patterns = kb.pattern_count()
    symbol_table_size = kb.symbol_table_size()
    ensemble_frequency = sum(s.record.frequency for s in scored)
    presents = [flatten(s.alignment.present) for s in scored]
    probability: dict[str, float] = {}
    for s, present in zip(scored, presents):
        for symbol in (*s.alignment.matches, *present):
            if symbol not in probability:
                pmf = kb.pmf(symbol)
                probability[symbol] = pmf / total_patterns if pmf > 0 else 0.0
    dimensions = sorted(set(q).union(*presents))
    q_counts = metrics.first_occurrence_counts(q)
    state_vector = {d: probability.get(d, 0.0) * q_counts.get(d, 0) for d in dimensions}
    norm_sq = 0.0
    for d in dimensions:
        norm_sq += state_vector[d] * state_vector[d]
    state_norm = math.sqrt(norm_sq)

    # Predictive information groups members by their (sorted) future.
    group_weight: dict[tuple, float] = {}
    group_size: dict[tuple, int] = {}
    group_future: dict[tuple, tuple[Event, ...]] = {}
    for s in scored:
        if s.alignment.future:
            key = _future_key(s.alignment.future)
            group_weight[key] = group_weight.get(key, 0.0) + s.similarity * s.record.frequency
            group_size[key] = group_size.get(key, 0) + 1
            group_future.setdefault(key, s.alignment.future)
    total_weight = 0.0
    for weight in group_weight.values():
        total_weight += weight
    aggregate = {key: (w / total_weight if total_weight else 0.0) for key, w in group_weight.items()}

    evidence_sum = 0.0
    for s in scored:
        evidence_sum += s.similarity * (s.record.frequency / ensemble_frequency)

    weights = _weights(q, kb, config.affinity_emotive) if config.affinity_emotive else None
    q_weight = metrics.weighted_sum(q, weights) if weights is not None else 0.0

    predictions = []
    for s, present in zip(scored, presents):
        f = s.record.frequency
        a = s.alignment
        counts = metrics.first_occurrence_counts(present)
        itfdf = metrics.itfdf_similarity(
            counts, dimensions, probability, state_norm, state_vector, f, ensemble_frequency
        )
        prior = f / ensemble_frequency
        weighted_strength = s.similarity * f / ensemble_frequency
        if a.future:
            agg = aggregate[_future_key(a.future)]
            information = weighted_strength / agg if agg else 0.0
        else:
            information = 0.0
        e, c, r = s.evidence, s.confidence, s.snr
        w_sim = w_ev = w_conf = w_snr = None
        if weights is not None:
            w_matches = metrics.weighted_sum(a.matches, weights)
            w_pattern = metrics.weighted_sum(s.flat, weights)
            w_present = metrics.weighted_sum(present, weights)
            w_extras = metrics.weighted_sum(flatten(a.extras), weights)
            den = q_weight + w_pattern
            w_sim = 2 * w_matches / den if den else None
            w_ev = w_matches / w_pattern if w_pattern else 0.0
            w_conf = w_matches / w_present if w_present else 0.0
            w_snr = w_matches / (w_matches + w_extras) if w_matches + w_extras else 0.0
            e, c, r = w_ev, w_conf, w_snr
        predictions.append(Prediction(
            name=s.record.name,
            frequency=f,
            sequence=s.record.events,
            emotives=average_emotives(s.record.emotives),
            metadata=s.record.metadata,
            matches=a.matches,
            past=a.past,
            present=a.present,
            future=a.future,
            missing=a.missing,
            extras=a.extras,
            anomalies=a.anomalies,
            similarity=s.similarity,
            evidence=s.evidence,
            confidence=s.confidence,
            snr=s.snr,
            fragmentation=a.fragmentation,
            entropy=metrics.entropy(counts, len(present)),
            normalized_entropy=metrics.normalized_entropy(counts, len(present), symbol_table_size),
            global_normalized_entropy=metrics.global_normalized_entropy(counts, probability, symbol_table_size),
            itfdf_similarity=itfdf,
            confluence=metrics.confluence(present, probability, f, total_patterns),
            tfidf_score=metrics.tfidf_score(counts, len(present), probability, total_patterns),
            pattern_probability=prior,
            weighted_strength=weighted_strength,
            predictive_information=information,
            bayesian_prior=prior,
            bayesian_likelihood=s.similarity,
            bayesian_posterior=s.similarity * prior / evidence_sum if evidence_sum else 0.0,
            potential=metrics.potential(e, c, r, itfdf, a.fragmentation),
            weighted_similarity=w_sim,
            weighted_evidence=w_ev,
            weighted_confidence=w_conf,
            weighted_snr=w_snr,
        ))

    predictions.sort(key=_rank_key(config.rank_sort_algo))
    futures = sorted(
        (
            FuturePotential(group_future[key], aggregate[key], group_size[key], group_weight[key])
            for key in group_weight
        ),
        key=lambda fp: -fp.aggregate_potential,
    )
    return PredictResult(tuple(predictions[: config.max_predictions]), tuple(futures))
