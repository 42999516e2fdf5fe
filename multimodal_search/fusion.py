"""Pure functions that combine modality vectors and scores (no Django)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / max(float(np.linalg.norm(x)), 1e-12)


def fuse_vectors(text: np.ndarray, image: np.ndarray | None, text_weight: float) -> np.ndarray:
    """Feature-level fusion: weighted sum of unit modality vectors, renormalised.

    With unit inputs, ``cos(q, fused)`` is proportional to
    ``w*cos(q, text) + (1-w)*cos(q, image)``, so one ANN query on the fused
    column ranks by the weighted score.
    """
    if image is None:
        return normalize(text)
    return normalize(text_weight * normalize(text) + (1.0 - text_weight) * normalize(image))


def mean_pool(vectors: np.ndarray) -> np.ndarray | None:
    """Unit mean of unit row vectors (None when there are none)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.size == 0:
        return None
    return normalize(vectors.mean(axis=0))


def weighted_scores(
    signals: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]
) -> dict[str, float]:
    """Score-level fusion: sum of weight * signal over the signals a product has."""
    totals: dict[str, float] = {}
    for name, weight in weights.items():
        for key, value in signals.get(name, {}).items():
            totals[key] = totals.get(key, 0.0) + weight * value
    return totals


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], weights: Mapping[str, float] | None = None, k: int = 60
) -> dict[str, float]:
    """Decision-level fusion (RRF): sum of w / (k + rank) over per-modality rankings."""
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 0.0)
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return scores


def tied_ranks(values: Mapping[str, float], ndigits: int = 6) -> dict[str, int]:
    """1-based rank of each key by descending value; equal values share a rank ("1224")."""
    ordered = sorted({round(v, ndigits) for v in values.values()}, reverse=True)
    first: dict[float, int] = {}
    position = 1
    counts: dict[float, int] = {}
    for value in values.values():
        counts[round(value, ndigits)] = counts.get(round(value, ndigits), 0) + 1
    for value in ordered:
        first[value] = position
        position += counts[value]
    return {key: first[round(value, ndigits)] for key, value in values.items()}


def rrf_scores(
    signals: Mapping[str, Mapping[str, float]], weights: Mapping[str, float], k: int = 60
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Decision-level fusion on tie-aware ranks: (scores, each signal's 1/(k+rank) term)."""
    parts = {
        name: {key: 1.0 / (k + rank) for key, rank in tied_ranks(values).items()}
        for name, values in signals.items()
        if name in weights
    }
    scores: dict[str, float] = {}
    for name, terms in parts.items():
        for key, term in terms.items():
            scores[key] = scores.get(key, 0.0) + weights[name] * term
    return scores, parts


def contributions(
    key: str, signals: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]
) -> dict[str, float]:
    """Share of each signal in one product's weighted score (absolute values, sums to 1)."""
    parts = {name: abs(weight * signals.get(name, {}).get(key, 0.0)) for name, weight in weights.items()}
    total = sum(parts.values())
    if total <= 0:
        return {name: 0.0 for name in parts}
    return {name: round(value / total, 4) for name, value in parts.items()}


def rank(scores: Mapping[str, float], tie_break: Mapping[str, str] | None = None) -> list[str]:
    """Keys by descending score; ties broken by ``tie_break[key]`` (else the key)."""
    tie_break = tie_break or {}
    return sorted(scores, key=lambda key: (-scores[key], tie_break.get(key, key)))
