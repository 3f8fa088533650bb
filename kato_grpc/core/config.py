"""Session configuration: every key of SPEC.md §7, its default and its valid range."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from kato_grpc.core.errors import FieldViolation, ValidationError

__all__ = ["SessionConfig", "RANK_KEYS", "FILTER_STAGES", "apply_overrides", "config_to_dict"]

RANK_KEYS = (
    "potential",
    "similarity",
    "evidence",
    "confidence",
    "snr",
    "fragmentation",
    "frequency",
    "normalized_entropy",
    "global_normalized_entropy",
    "itfdf_similarity",
    "confluence",
    "predictive_information",
    "bayesian_posterior",
    "bayesian_prior",
    "bayesian_likelihood",
    "tfidf_score",
    "weighted_similarity",
    "weighted_evidence",
    "weighted_confidence",
    "weighted_snr",
)
FILTER_STAGES = ("length", "jaccard", "minhash", "bloom", "rapidfuzz")
STM_MODES = ("CLEAR", "ROLLING")
INDEXER_TYPES = ("VI", "LSH", "ANNOY", "FAISS")


@dataclass(frozen=True)
class SessionConfig:
    """The effective configuration of one session (defaults of SPEC.md §7)."""

    recall_threshold: float = 0.1
    max_predictions: int = 100
    max_pattern_length: int = 0
    stm_mode: str = "CLEAR"
    persistence: int = 5
    sort_symbols: bool = True
    process_predictions: bool = True
    use_token_matching: bool = True
    fuzzy_token_threshold: float = 0.0
    rank_sort_algo: str = "potential"
    affinity_emotive: str = ""
    filter_pipeline: tuple[str, ...] = ()
    length_min_ratio: float = 0.5
    length_max_ratio: float = 2.0
    jaccard_threshold: float = 0.3
    jaccard_min_overlap: int = 2
    minhash_threshold: float = 0.7
    minhash_bands: int = 20
    minhash_rows: int = 5
    minhash_num_hashes: int = 100
    bloom_false_positive_rate: float = 0.01
    max_candidates_per_stage: int = 100000
    enable_filter_metrics: bool = True
    indexer_type: str = "VI"


# key -> (kind, lower bound, upper bound or None, allowed values: () unless an enum)
_RULES: dict[str, tuple[str, Any, Any, tuple[str, ...]]] = {
    "recall_threshold": ("double", 0.0, 1.0, ()),
    "max_predictions": ("int", 1, 10000, ()),
    "max_pattern_length": ("int", 0, None, ()),
    "stm_mode": ("enum", None, None, STM_MODES),
    "persistence": ("int", 1, 100, ()),
    "sort_symbols": ("bool", None, None, ()),
    "process_predictions": ("bool", None, None, ()),
    "use_token_matching": ("bool", None, None, ()),
    "fuzzy_token_threshold": ("double", 0.0, 1.0, ()),
    "rank_sort_algo": ("enum", None, None, RANK_KEYS),
    "affinity_emotive": ("string", 0, 256, ()),
    "filter_pipeline": ("enum_list", None, None, FILTER_STAGES),
    "length_min_ratio": ("double", 0.0, 1.0, ()),
    "length_max_ratio": ("double", 1.0, None, ()),
    "jaccard_threshold": ("double", 0.0, 1.0, ()),
    "jaccard_min_overlap": ("int", 1, None, ()),
    "minhash_threshold": ("double", 0.0, 1.0, ()),
    "minhash_bands": ("int", 1, 100, ()),
    "minhash_rows": ("int", 1, 20, ()),
    "minhash_num_hashes": ("int", 10, 256, ()),
    "bloom_false_positive_rate": ("double", 0.0001, 0.1, ()),
    "max_candidates_per_stage": ("int", 100, None, ()),
    "enable_filter_metrics": ("bool", None, None, ()),
    "indexer_type": ("enum", None, None, INDEXER_TYPES),
}
assert set(_RULES) == {f.name for f in fields(SessionConfig)}


def _range_text(lo: Any, hi: Any) -> str:
    return f"[{lo}, {hi}]" if hi is not None else f">= {lo}"


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(key: str, value: Any) -> tuple[Any, str | None]:
    """Return (normalised value, None) or (None, reason)."""
    kind, lo, hi, allowed = _RULES[key]
    if kind == "bool":
        if not isinstance(value, bool):
            return None, "must be a boolean"
        return value, None
    if kind in ("int", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"must be {'an integer' if kind == 'int' else 'a number'}"
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                return None, "must be an integer"
            value = int(value)
        else:
            value = float(value)
            if math.isnan(value) or math.isinf(value):
                return None, "must be a finite number"
        if value < lo or (hi is not None and value > hi):
            return None, f"must be in {_range_text(lo, hi)}"
        return value, None
    if kind == "string":
        if value is None:
            return "", None
        if not isinstance(value, str):
            return None, "must be a string"
        if len(value) > hi:
            return None, f"must be at most {hi} characters"
        return value, None
    if kind == "enum":
        if not isinstance(value, str) or value not in allowed:
            return None, f"must be one of {', '.join(allowed)}"
        return value, None
    # enum_list
    if not isinstance(value, (list, tuple)):
        return None, f"must be a list of {', '.join(allowed)}"
    for item in value:
        if not isinstance(item, str) or item not in allowed:
            return None, f"unknown stage {_brief(item)}; stages are {', '.join(allowed)}"
    return tuple(value), None


def apply_overrides(config: SessionConfig, overrides: Mapping[str, Any], prefix: str = "config") -> SessionConfig:
    """Return `config` with `overrides` applied, all or nothing (SPEC.md §7).

    Unknown keys are ignored (KATO compatibility). Every bad key is reported in one
    `ValidationError` naming the key, the value and the allowed range.

    >>> apply_overrides(SessionConfig(), {"recall_threshold": 0.5}).recall_threshold
    0.5
    """
    changes: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for key in sorted(overrides):
        if key not in _RULES:
            continue
        value, reason = _check(key, overrides[key])
        if reason is not None:
            violations.append(FieldViolation(f"{prefix}.{key}", f"{_brief(overrides[key])} {reason}"))
        else:
            changes[key] = value
    if violations:
        raise ValidationError(violations)
    return replace(config, **changes)


def config_to_dict(config: SessionConfig) -> dict[str, Any]:
    """Every key with its effective value, as GetConfig returns it."""
    out = {f.name: getattr(config, f.name) for f in fields(SessionConfig)}
    out["filter_pipeline"] = list(config.filter_pipeline)
    out["affinity_emotive"] = config.affinity_emotive or None
    return out
