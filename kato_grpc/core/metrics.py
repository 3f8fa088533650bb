"""Prediction metrics (SPEC.md §6.5–6.9). Each function is one formula.

Floating-point operations run exactly in the order written in SPEC.md: running sums
left to right from 0.0, products and divisions left to right. Changing that order
changes the last bits, and the bits are part of the contract (§8).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "evidence",
    "confidence",
    "snr",
    "itfdf_similarity",
    "confluence",
    "entropy",
    "normalized_entropy",
    "global_normalized_entropy",
    "tfidf_score",
    "potential",
    "first_occurrence_counts",
    "weighted_sum",
]


def evidence(m: int, pattern_length: int) -> float:
    """``m / L``: the share of the pattern that was observed."""
    return m / pattern_length


def confidence(m: int, present_length: int) -> float:
    """``m / len(R)``; 0.0 when `present` is empty."""
    return m / present_length if present_length else 0.0


def snr(m: int, n: int) -> float:
    """``(3m − n) / (m + n)``, one division of integers; 0.0 when ``m + n = 0``.

    >>> snr(2, 2)
    1.0
    """
    return (3 * m - n) / (m + n) if m + n else 0.0


def first_occurrence_counts(symbols: Sequence[str]) -> dict[str, int]:
    """Counts of the distinct symbols, in order of first occurrence."""
    counts: dict[str, int] = {}
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
    return counts


def itfdf_similarity(
    present_counts: Mapping[str, int],
    dimensions: Sequence[str],
    probability: Mapping[str, float],
    state_norm: float,
    state_vector: Mapping[str, float],
    frequency: int,
    ensemble_frequency: int,
) -> float:
    """``1 − dist · f / F`` with dist the cosine distance of the member's and the state's
    probability-weighted count vectors over `dimensions` (§6.7).

    Dimensions where the member's vector is zero add exactly 0.0 to both sums, so only
    the member's own symbols are visited, in dimension order.
    """
    if state_norm == 0.0:
        dist = 1.0
    else:
        norm_sq = 0.0
        dot = 0.0
        for d in dimensions:
            count = present_counts.get(d)
            if count is None:
                continue
            pv = probability.get(d, 0.0) * count
            norm_sq += pv * pv
            dot += pv * state_vector[d]
        den = math.sqrt(norm_sq) * state_norm
        cos = dot / den if den != 0.0 else 0.0
        dist = 1.0 - cos
    return 1 - dist * frequency / ensemble_frequency


def confluence(present: Sequence[str], probability: Mapping[str, float], frequency: int, total_patterns: int) -> float:
    """``(f / T) · (1 − 10^g)``, g = Σ log10 P'(s) over `present` with multiplicity,
    P'(s) = P(s) or 1e-10 when P(s) = 0. 0.0 for an empty `present`."""
    if not present:
        return 0.0
    g = 0.0
    for symbol in present:
        p = probability.get(symbol, 0.0)
        g += math.log10(p if p > 0 else 1e-10)
    power: float = 10.0**g  # typeshed types float ** float as Any (a negative base gives a complex)
    return (frequency / total_patterns) * (1.0 - power)


def entropy(counts: Mapping[str, int], size: int) -> float:
    """Shannon entropy (bits) of the symbol distribution of `present`; 0.0 if empty."""
    acc = 0.0
    for c in counts.values():
        q = c / size
        acc = acc - q * math.log2(q)
    return acc


def normalized_entropy(counts: Mapping[str, int], size: int, symbol_table_size: int) -> float:
    """Entropy with logarithms in base `N_sym`; 0.0 if `present` is empty or N_sym ≤ 1."""
    if not counts or symbol_table_size <= 1:
        return 0.0
    log_n = math.log(symbol_table_size)
    acc = 0.0
    for c in counts.values():
        q = c / size
        acc = acc - q * (math.log(q) / log_n)
    return acc


def global_normalized_entropy(
    counts: Mapping[str, int], probability: Mapping[str, float], symbol_table_size: int
) -> float:
    """``−Σ P(s)·log_Nsym P(s)`` over the distinct symbols of `present` with P(s) > 0."""
    if not counts or symbol_table_size <= 1:
        return 0.0
    log_n = math.log(symbol_table_size)
    acc = 0.0
    for symbol in counts:
        p = probability.get(symbol, 0.0)
        if p > 0:
            acc = acc - p * (math.log(p) / log_n)
    return acc


def tfidf_score(counts: Mapping[str, int], size: int, probability: Mapping[str, float], total_patterns: int) -> float:
    """Mean over distinct symbols of ``tf · (log2(U / df) + 1)`` with
    df = trunc(P(s)·U) (1 when it truncates to 0). 0.0 if `present` is empty or U = 0."""
    if not counts or total_patterns == 0:
        return 0.0
    acc = 0.0
    for symbol, c in counts.items():
        tf = c / size
        df = math.trunc(probability.get(symbol, 0.0) * total_patterns) or 1
        acc += tf * (math.log2(total_patterns / df) + 1.0)
    return acc / len(counts)


def potential(e: float, c: float, s: float, itfdf: float, fragmentation: float) -> float:
    """``(E + C)·S + itfdf + 1/(fragmentation + 1)``; the last term is 0 when fragmentation is −1."""
    frag_term = 0.0 if fragmentation == -1 else 1.0 / (fragmentation + 1.0)
    return (e + c) * s + itfdf + frag_term


def weighted_sum(symbols: Sequence[str], weights: Mapping[str, float]) -> float:
    """Σ w(x) over `symbols` in order; a symbol without a weight weighs 0."""
    acc = 0.0
    for symbol in symbols:
        acc += weights.get(symbol, 0.0)
    return acc
