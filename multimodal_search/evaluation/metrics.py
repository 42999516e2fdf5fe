"""Relevance metrics (pure): graded nDCG, recall, reciprocal rank, and the fair order of tied results."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from multimodal_search.ranking.fusion import rank


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain: sum of gain / log2(rank + 1), ranks from 1."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def gain(grade: int) -> float:
    """Graded gain 2^grade - 1 (0, 1, 3 for grades 0, 1, 2)."""
    return float(2**grade - 1) if grade > 0 else 0.0


def ndcg_at_k(ranked: Sequence[str], graded: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains; the ideal ranking comes from ``graded``.

    Args:
        ranked: result ids, best first.
        graded: id -> grade (unlisted ids are 0).
        k: cut-off.

    Returns:
        a value in [0, 1]; 0 when nothing is relevant.
    """
    ideal = dcg(sorted((gain(g) for g in graded.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg(gain(graded.get(item, 0)) for item in ranked[:k]) / ideal


def target_items(graded: Mapping[str, int]) -> set[str]:
    """The items recall and MRR look for: grade 2, or grade >= 1 when none has grade 2."""
    best = {item for item, g in graded.items() if g >= 2}
    return best or {item for item, g in graded.items() if g >= 1}


def recall_at_k(ranked: Sequence[str], graded: Mapping[str, int], k: int = 10) -> float:
    """Fraction of ``target_items(graded)`` found in the first k results."""
    targets = target_items(graded)
    if not targets:
        return 0.0
    return len(targets & set(ranked[:k])) / len(targets)


def reciprocal_rank(ranked: Sequence[str], graded: Mapping[str, int], k: int | None = None) -> float:
    """1 / rank of the first target item within the first k results (0 if none)."""
    targets = target_items(graded)
    for position, item in enumerate(ranked[:k] if k else ranked, start=1):
        if item in targets:
            return 1.0 / position
    return 0.0


def fair_ranking(qid: str, scored: Iterable[tuple[str, float]], k: int | None = None) -> list[str]:
    """Sort ``(item, score)`` pairs by score (6 decimals), then by ``ranking.fusion.tie_key(qid, item)``.

    Input order never decides: two items with equal scores keep the order that
    their hashes give for this query. A repeated item keeps its best score.
    """
    best: dict[str, float] = {}
    for item, score in scored:
        rounded = round(float(score), 6)
        if item not in best or rounded > best[item]:
            best[item] = rounded
    ranked = rank(best, seed=qid)
    return ranked[:k] if k else ranked


def query_metrics(ranked: Sequence[str], graded: Mapping[str, int], k: int = 10) -> dict[str, float]:
    """Every metric of one ranked list: ndcg, recall (@k), mrr (@k), r1, r5."""
    return {
        "ndcg": ndcg_at_k(ranked, graded, k),
        "recall": recall_at_k(ranked, graded, k),
        "mrr": reciprocal_rank(ranked, graded, k),
        "r1": recall_at_k(ranked, graded, 1),
        "r5": recall_at_k(ranked, graded, 5),
    }
