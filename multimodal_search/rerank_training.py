"""Trains the learned relevance layer (see reranking.py) on the indexed catalogue."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Collection, Mapping

import numpy as np

from multimodal_search import attributes, reranking
from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.encoders import get_encoder
from multimodal_search.labels import Label
from multimodal_search.models import ProductEmbedding


class TrainingError(ValueError):
    """Nothing to train on (reported as one readable line by commands)."""


def _add_descriptors(facts: dict[str, reranking.Facts], materials: Mapping[str, str], groups: Mapping[str, str]) -> None:
    """Give each product the descriptor words its pseudo-queries may use: words of its title or
    material that products of at least two groups (parents) have, but at most a fifth of them."""
    words_by_group: dict[str, set[str]] = {}
    for pk, fact in facts.items():
        words_by_group.setdefault(groups[pk], set()).update(fact.words)
    total = len(words_by_group)
    counts = Counter(word for words in words_by_group.values() for word in words)
    frequency = {word: n / total for word, n in counts.items()}
    low = min(2 / total, 1.0)
    for pk, fact in facts.items():
        fact.descriptors = reranking.descriptor_words(fact.title, materials[pk], frequency, low=low, high=0.2)


def train_reranker(
    *,
    holdout: Collection[str] = (),
    labels: Mapping[str, Label] | None = None,
    max_queries: int = 400,
    seed: int = 13,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Fit the re-ranker on pseudo-queries made from the catalogue's non-held-out products.

    Needs the catalogue indexed with the current encoder (vectors and colour profiles).

    Args:
        holdout: product identifiers (sku or group/parent sku) never used to make queries.
        labels: training labels by sku; their colour, gender and category fill in
            what the indexed fields do not say (see ``multimodal_search.labels``).
        max_queries: cap on pseudo-queries.
        seed: makes query sampling reproducible.
        progress: called with 1 after each pseudo-query.

    Returns:
        summary: version, queries, pairs, positives, weights by feature, seconds, path.
    """
    from multimodal_search.searching import collect_signals, encode_query

    started = time.perf_counter()
    adapter = get_adapter()
    model_id = get_encoder().model_id
    rows = {
        pk: (fields or {}, categories or [])
        for pk, fields, categories in ProductEmbedding.objects.filter(model_id=model_id).values_list(
            "product_pk", "fields", "categories"
        )
    }
    if not rows:
        raise TrainingError("no indexed products for the current encoder; run mmsearch_reindex first")
    held = set(holdout)
    facts: dict[str, reranking.Facts] = {}
    materials: dict[str, str] = {}
    groups: dict[str, str] = {}
    seeds = []
    for product in adapter.get_queryset().filter(pk__in=list(rows)):
        pk = str(product.pk)
        fields, categories = rows[pk]
        result = adapter.to_result(product)
        if {result.get("sku"), fields.get("group")} & held:
            continue  # held-out products are neither queried for nor seen as candidates
        leaf = attributes.category_leaf(categories)
        label = (labels or {}).get(str(result.get("sku")))
        material = str(fields.get("material") or (label.material if label else ""))
        facts[pk] = reranking.Facts(
            title=str(fields.get("title") or result.get("title") or product),
            colours=fields.get("colours", {}), color=str(fields.get("color") or (label.color if label else "")),
            gender=str(fields.get("gender") or (label.gender if label else "")),
            leaf=leaf or (label.leaf if label else ""),
            words=reranking.text_stems(f"{adapter.get_text(product)} {material}"),
        )
        materials[pk] = material
        groups[pk] = str(fields.get("group") or pk)
        seeds.append(pk)
    if not seeds:
        raise TrainingError("every indexed product is held out; nothing to train on")
    _add_descriptors(facts, materials, groups)
    candidates = int(search_settings.FUSION["CANDIDATES"])

    def collect(text: str):
        query = encode_query(text, None)
        names = {"text", "title", "image", "lexical", "neighbours"} | ({"colour"} if query.colours else set())
        names |= ({"gender"} if query.gender else set()) | set(query.facets)
        return collect_signals(query, names, model_id, candidates, [])

    x, y, queries = reranking.build_training_set(
        seeds, facts, collect, max_queries=max_queries, seed=seed, progress=progress
    )
    if queries == 0:
        raise TrainingError("could not build pseudo-queries from product titles")
    weights, bias, mean, scale = reranking.fit_logistic(x, y)
    version = reranking.new_version()
    model = reranking.Reranker(
        weights=weights, bias=bias, mean=mean, scale=scale, version=version,
        meta={"encoder": model_id, "queries": queries, "pairs": int(len(y)), "positives": int((y == 1).sum()),
              "held_out": len(held), "seed": seed},
    )
    path = reranking.save_reranker(model)
    accuracy = float(((model.decision(x) > 0) == (y > 0)).mean())
    return {
        "version": version, "queries": queries, "pairs": int(len(y)), "positives": int((y == 1).sum()),
        "train_accuracy": round(accuracy, 3), "seconds": round(time.perf_counter() - started, 1),
        "weights": {f: round(float(w), 3) for f, w in zip(reranking.FEATURES, weights)}, "path": str(path),
        "feature_mean": np.round(mean, 3).tolist(),
    }
