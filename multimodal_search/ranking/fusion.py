"""Pure functions that combine modality vectors and scores (no Django).

Two rules live here and nowhere else:

* **Reciprocal rank fusion** adds ``w / (RRF_K + rank)`` per ranking (:func:`rrf_term`). The
  neighbour signal's SQL (``store.sql``) uses the same constant.
* **Ties** are ordered by :func:`tie_key` of a seed and the item: stable for one query, fair across
  queries, never by row order (:func:`rank`). Without a seed the item id itself breaks ties, which
  is what the neighbour signal's SQL does with ``product_pk COLLATE "C"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

#: the k of reciprocal rank fusion (Cormack et al.'s 60)
RRF_K = 60


def normalize(x: npt.ArrayLike) -> np.ndarray:
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


def weighted_scores(signals: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]) -> dict[str, float]:
    """Score-level fusion: sum of weight * signal over the signals a product has."""
    totals: dict[str, float] = {}
    for name, weight in weights.items():
        for key, value in signals.get(name, {}).items():
            totals[key] = totals.get(key, 0.0) + weight * value
    return totals


def rrf_term(rank: int) -> float:
    """One ranking's part of a reciprocal-rank-fusion score for an item at 1-based ``rank``."""
    return 1.0 / (RRF_K + rank)


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Decision-level fusion (RRF): sum of w / (RRF_K + rank) over per-modality rankings."""
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 0.0)
        for position, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight * rrf_term(position)
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
    signals: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Decision-level fusion on tie-aware ranks: (scores, each signal's 1/(RRF_K+rank) term)."""
    parts = {
        name: {key: rrf_term(position) for key, position in tied_ranks(values).items()}
        for name, values in signals.items()
        if name in weights
    }
    scores: dict[str, float] = {}
    for name, terms in parts.items():
        for key, term in terms.items():
            scores[key] = scores.get(key, 0.0) + weights[name] * term
    return scores, parts


def contributions(
    key: str,
    signals: Mapping[str, Mapping[str, float]],
    weights: Mapping[str, float],
    parts: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, float]:
    """Share of each signal in one product's score, over the signals that fired for it.

    A signal *fired* for a product when its value (``signals``) is above 0; one at 0, below 0
    (a cosine pointing away) or absent gets a share of 0 whatever its part. The fired signals'
    shares are their absolute parts, ``|weight * part|`` (``parts``: each signal's term in the
    score, e.g. a rank term or the re-ranker's per-modality logit; default the signal values
    themselves), divided by their sum: they add up to 1, or are all 0 when nothing fired.
    """
    parts = signals if parts is None else parts
    shares = {
        name: abs(weight * parts.get(name, {}).get(key, 0.0)) if signals.get(name, {}).get(key, 0.0) > 0 else 0.0
        for name, weight in weights.items()
    }
    total = sum(shares.values())
    if total <= 0:
        return {name: 0.0 for name in shares}
    return {name: round(value / total, 4) for name, value in shares.items()}


def tie_key(seed: str, item: str) -> str:
    """The order of ``item`` among items of equal score for one query (``seed``): sha1 of both."""
    return hashlib.sha1(f"{seed}:{item}".encode()).hexdigest()


def rank(scores: Mapping[str, float], seed: str | None = None, ndigits: int | None = None) -> list[str]:
    """Keys by descending score (rounded to ``ndigits`` when given); ties by :func:`tie_key`, else the key."""

    def order(key: str) -> tuple[float, str]:
        score = scores[key] if ndigits is None else round(scores[key], ndigits)
        return -score, key if seed is None else tie_key(seed, key)

    return sorted(scores, key=order)
