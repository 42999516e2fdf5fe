"""Fits the learned relevance layer (``ranking.reranker``) on pseudo-queries made from the indexed catalogue."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import numpy as np

from multimodal_search import artefacts
from multimodal_search.adapters import get_adapter
from multimodal_search.encoders import get_encoder
from multimodal_search.learning.calibration import MIN_QUERIES, CalibrationQuery, fit_calibrations
from multimodal_search.learning.data import TrainingError, is_held_out
from multimodal_search.learning.fitting import fit_logistic
from multimodal_search.learning.labels import Label
from multimodal_search.learning.pseudo_queries import (
    Facts,
    broad_query,
    descriptor_words,
    head_noun,
    pseudo_query,
    relevance,
    text_stems,
)
from multimodal_search.ranking import synonyms
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.attributes import category_leaf
from multimodal_search.ranking.departments import Departments, save_departments
from multimodal_search.ranking.qualities import Qualities, save_qualities, stated_text
from multimodal_search.ranking.reranker import ARTEFACT, FEATURES, Reranker, feature_matrix
from multimodal_search.ranking.spelling import Speller, save_speller, understood_words
from multimodal_search.ranking.text import stem, stems
from multimodal_search.services.search import first_stage
from multimodal_search.store import get_store

Collect = Callable[[str], tuple[list[str], dict[str, dict[str, float]]]]


def make_pseudo_queries(
    seeds: Iterable[str],
    facts: Mapping[str, Facts],
    *,
    max_queries: int = 400,
    seed: int = 13,
    exclude: Collection[str] = (),
    make: Callable[[Facts, random.Random], tuple[str, dict[str, str]] | None] = pseudo_query,
) -> dict[str, dict[str, str]]:
    """Pseudo-query text -> the facets it asks for, made from seed products (several phrasings per
    product until the cap); texts in ``exclude`` are skipped. ``make`` phrases one (default
    :func:`~multimodal_search.learning.pseudo_queries.pseudo_query`)."""
    rng = random.Random(seed)
    order = sorted(seeds)
    rng.shuffle(order)
    queries: dict[str, dict[str, str]] = {}
    for _round in range(3):
        for pk in order:
            made = make(facts[pk], rng)
            if made and made[0] not in exclude:
                queries.setdefault(made[0], made[1])
            if len(queries) >= max_queries:
                break
        if len(queries) >= max_queries:
            break
    return queries


def build_training_set(
    seeds: Iterable[str],
    facts: Mapping[str, Facts],
    collect: Collect,
    *,
    max_queries: int = 400,
    seed: int = 13,
    progress: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pseudo-queries from seed products -> (features, labels, queries used).

    Args:
        seeds: pks of the products queries may be made from.
        facts: every candidate product's facts (for labels).
        collect: runs the first search stage for a query text -> (pool, signals).
    """
    queries = make_pseudo_queries(seeds, facts, max_queries=max_queries, seed=seed)
    rows, labels = [], []
    for text, asked in queries.items():
        pool, signals = collect(text)
        if progress:
            progress(1)
        pool = [pk for pk in pool if pk in facts]
        if not pool:
            continue
        y = np.array([relevance(facts[pk], asked) for pk in pool])
        if y.min() == y.max():  # every candidate equally relevant: nothing to learn from
            continue
        rows.append(feature_matrix(pool, signals))
        labels.append(y)
    if not rows:
        return np.zeros((0, len(FEATURES))), np.zeros(0), 0
    return np.concatenate(rows), np.concatenate(labels), len(rows)


def broad_cap(calibration: int) -> int:
    """The most broad queries (a colour, a gender, a department or a quality alone) searched beside
    ``calibration`` held-out pseudo-queries: half as many. Luma phrases 44 of a colour, a gender or a
    department and hundreds of a quality; at a quarter (50) the colour and gender queries' recall at
    the storefront cut was 0.939 on the full catalogue, at half 0.969 (``bench/broad_queries.py``)."""
    return max(calibration // 2, MIN_QUERIES) if calibration > 0 else 0


def calibration_queries(
    seeds: Iterable[str],
    facts: Mapping[str, Facts],
    collect: Collect,
    *,
    trained: Collection[str],
    max_queries: int,
    seed: int,
    progress: Callable[[int], Any] | None = None,
) -> tuple[list[CalibrationQuery], bool]:
    """Searched pseudo-queries the re-ranker was not trained on (another seed, other texts), for
    ``learning.calibration``; -> (queries, whether they are all held out). ``trained``: the texts the
    re-ranker was trained on. A catalogue too small to phrase ``MIN_QUERIES`` new ones reuses them.
    Beside them, up to :func:`broad_cap` broad queries (a colour, a gender, a department and/or a
    quality alone), for the ``broad`` calibration (the re-ranker is not trained on any)."""
    seeds = list(seeds)
    texts = make_pseudo_queries(seeds, facts, max_queries=max_queries, seed=seed + 1, exclude=trained)
    held_out = len(texts) >= MIN_QUERIES
    if not held_out:
        texts = make_pseudo_queries(seeds, facts, max_queries=max_queries, seed=seed + 1)
    broad = make_pseudo_queries(seeds, facts, max_queries=broad_cap(max_queries), seed=seed + 1, make=broad_query)
    found = []
    for text, asked in [*texts.items(), *broad.items()]:
        pool, signals = collect(text)
        if progress:
            progress(1)
        pool = [pk for pk in pool if pk in facts]
        if pool:
            relevant = np.array([relevance(facts[pk], asked) > 0 for pk in pool])
            found.append(CalibrationQuery(pool, signals, relevant, broad="noun" not in asked))
    return found, held_out


def _add_descriptors(facts: dict[str, Facts], materials: Mapping[str, str], groups: Mapping[str, str]) -> None:
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
        fact.descriptors = descriptor_words(fact.title, materials[pk], frequency, low=low, high=0.2)


def catalogue_speller(rows: Mapping[str, tuple[dict[str, Any], list[str]]]) -> Speller:
    """The catalogue's dictionary (``ranking.spelling``): the words its products state (title, colour,
    gender, material, attribute values) and their category paths, each counted once per product, and
    the words the search reads whatever they state."""
    stated_facts = (v.FIELD_COLOR, v.FIELD_GENDER)
    texts = (
        " ".join([stated_text(fields), *(str(fields.get(name) or "") for name in stated_facts), *categories])
        for fields, categories in rows.values()
    )
    return Speller.from_texts(texts, understood_words())


def catalogue_kinds(rows: Mapping[str, tuple[dict[str, Any], list[str]]]) -> set[str]:
    """The stems of the indexed products' kinds: titles' head nouns and category leaves' words."""
    kinds: set[str] = set()
    for fields, categories in rows.values():
        noun = head_noun(str(fields.get(v.FIELD_TITLE) or ""))
        kinds.update([stem(noun)] if noun else [])
        kinds.update(stems(category_leaf(categories) or ""))
    return kinds


def catalogue_qualities(
    rows: Mapping[str, tuple[dict[str, Any], list[str]]], kinds: Collection[str] | None = None
) -> Qualities:
    """The qualities the indexed products state (``ranking.qualities``), from their stored fields: kinds of
    product (``kinds``, default :func:`catalogue_kinds`) left out."""
    return Qualities.from_products(
        ((str(fields.get(v.FIELD_GROUP) or pk), stated_text(fields)) for pk, (fields, _) in rows.items()),
        catalogue_kinds(rows) if kinds is None else kinds,
    )


def train_reranker(
    *,
    holdout: Collection[str] = (),
    labels: Mapping[str, Label] | None = None,
    max_queries: int = 400,
    calibration: int | None = None,
    seed: int = 13,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Fit the re-ranker on pseudo-queries made from the catalogue's non-held-out products.

    Needs the catalogue indexed with the current encoder (vectors and colour profiles).

    Args:
        holdout: product identifiers (sku or group/parent sku) never used to make queries.
        labels: training labels by sku; their colour, gender and category fill in
            what the indexed fields do not say (see ``learning.labels``).
        max_queries: cap on pseudo-queries.
        calibration: cap on the held-out pseudo-queries the relevance calibration is fitted on
            (default half of ``max_queries``; 0: no calibration, results get no relevance).
        seed: makes query sampling reproducible.
        progress: called with 1 after each pseudo-query.

    Returns:
        summary: version, queries, pairs, positives, weights by feature, calibration report and
        relevance cuts, seconds, path.
    """
    started = time.perf_counter()
    adapter = get_adapter()
    model_id = get_encoder().model_id
    rows = get_store().product_rows(model_id)
    if not rows:
        raise TrainingError("no indexed products for the current encoder; run mmsearch_reindex first")
    # the catalogue's departments, kept first: the broad calibration queries below name them ("tops")
    kinds = catalogue_kinds(rows)  # "hoodie", "pant": what a query may join, never a quality
    paths = (path for _, categories in rows.values() for path in categories)
    departments = Departments.from_paths(paths, synonyms.configured_groups(), kinds)
    save_departments(model_id, departments)
    qualities = catalogue_qualities(rows, kinds)  # and the qualities they name ("wool")
    save_qualities(model_id, qualities)
    speller = catalogue_speller(rows)  # and the words a typo is read as ("hoddie" -> "hoodie")
    save_speller(model_id, speller)
    held = set(holdout)
    facts: dict[str, Facts] = {}
    materials: dict[str, str] = {}
    groups: dict[str, str] = {}
    seeds = []
    for product in adapter.get_queryset().filter(pk__in=list(rows)):
        pk = str(product.pk)
        fields, categories = rows[pk]
        result = adapter.to_result(product)
        if is_held_out(str(result.get("sku")), fields.get(v.FIELD_GROUP), held):
            continue  # held-out products are neither queried for nor seen as candidates
        label = (labels or {}).get(str(result.get("sku")))
        material = str(fields.get(v.FIELD_MATERIAL) or (label.material if label else ""))
        facts[pk] = Facts(
            title=str(fields.get(v.FIELD_TITLE) or result.get("title") or product),
            colours=fields.get(v.FIELD_COLOURS, {}),
            color=str(fields.get(v.FIELD_COLOR) or (label.color if label else "")),
            gender=str(fields.get(v.FIELD_GENDER) or (label.gender if label else "")),
            leaf=category_leaf(categories) or (label.leaf if label else ""),
            words=text_stems(f"{adapter.get_text(product)} {material}"),
            departments=departments.of_product(categories),
            qualities=qualities.of_product(fields),
        )
        materials[pk] = material
        groups[pk] = str(fields.get(v.FIELD_GROUP) or pk)
        seeds.append(pk)
    if not seeds:
        raise TrainingError("every indexed product is held out; nothing to train on")
    _add_descriptors(facts, materials, groups)

    def collect(text: str) -> tuple[list[str], dict[str, dict[str, float]]]:
        return first_stage(text, model_id=model_id)

    x, y, queries = build_training_set(seeds, facts, collect, max_queries=max_queries, seed=seed, progress=progress)
    if queries == 0:
        raise TrainingError("could not build pseudo-queries from product titles")
    weights, bias, mean, scale = fit_logistic(x, y)
    version = time.strftime("%Y%m%d%H%M%S")
    model = Reranker(
        weights=weights,
        bias=bias,
        mean=mean,
        scale=scale,
        version=version,
        meta={
            "encoder": model_id,
            "queries": queries,
            "pairs": len(y),
            "positives": int((y == 1).sum()),
            "held_out": len(held),
            "seed": seed,
        },
    )
    calibration = max_queries // 2 if calibration is None else calibration
    found: list[CalibrationQuery] = []
    held_out = True
    if calibration > 0:
        trained = make_pseudo_queries(seeds, facts, max_queries=max_queries, seed=seed)
        found, held_out = calibration_queries(
            seeds, facts, collect, trained=trained, max_queries=calibration, seed=seed, progress=progress
        )
    model.calibrations, model.cuts, report = fit_calibrations(model, found)
    model.meta["calibration"] = {**report, "held_out": held_out}
    path = artefacts.save(ARTEFACT, model_id, model.to_json(), indent=1)
    accuracy = float(((model.decision(x) > 0) == (y > 0)).mean())
    return {
        "version": version,
        "queries": queries,
        "pairs": len(y),
        "positives": int((y == 1).sum()),
        "train_accuracy": round(accuracy, 3),
        "seconds": round(time.perf_counter() - started, 1),
        "weights": {f: round(float(w), 3) for f, w in zip(FEATURES, weights)},
        "calibration": model.meta["calibration"],
        "cuts": model.cuts,
        "path": str(path),
        "feature_mean": np.round(mean, 3).tolist(),
        "departments": sorted(departments.leaves),
        "classes": sorted(departments.classes),
        "qualities": qualities.most_stated(),
        "spelling_words": len(speller),
    }
