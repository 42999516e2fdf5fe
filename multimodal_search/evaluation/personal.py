"""Offline evaluation of personalisation (``mmsearch_evaluate_personal``).

* Recommendations, leave-last-out: per shopper the chronologically last distinct product is held
  out; the profile (``ranking.personal.fold`` over the rest, the settings' weights and half-life)
  ranks the catalogue by cosine with each product's fused vector, minus the shopper's history.
  Hit-rate@k and nDCG@k (one relevant item: 1 / log2(rank + 1)) against a popularity baseline
  (event counts of the *other* shoppers' training events, minus the history) and a random one
  (seeded, averaged over several draws), on the same shoppers in the same run.
* Two sets of shoppers: the recorded ones (``services.personal.shopper_histories``; the Luma sample is tiny)
  and simulated ones with a consistent taste (one colour and one category): a history of 4-10
  products, mostly of the taste, with some noise; the held-out item is a last taste product.
* Re-ranking (when ``services.search_products`` takes ``personal``): a query naming the taste's
  category, searched with and without the shopper's ``Taste``: the share of taste items in the
  top k and how far they moved; and the relevance evaluation's nDCG@k with a *neutral* profile
  (the mean of every fused vector) against none: personalisation should not hurt relevance.
"""

from __future__ import annotations

import inspect
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from multimodal_search import services
from multimodal_search.conf import search_settings
from multimodal_search.evaluation import runner
from multimodal_search.evaluation.queries import JudgedQuery
from multimodal_search.ranking.attributes import shared_gender
from multimodal_search.ranking.personal import Event, ProfileState, Taste, fold, profile_vector
from multimodal_search.services.personal import shopper_histories
from multimodal_search.services.search import gender_apart, one_per_group
from multimodal_search.store import get_store

Progress = Callable[[int], Any] | None

#: event kinds of simulated histories and how often each is drawn
SIMULATED_KINDS = (("view", 0.6), ("click", 0.2), ("cart", 0.12), ("purchase", 0.08))
#: a taste (colour and category) needs this many products: two or more in the history, one held out
MIN_TASTE_PRODUCTS = 4
#: short words that never name a category in a query
_STOPWORDS = frozenset({"and", "for", "the", "with", "all", "other", "new"})
METHODS = ("profile", "popularity", "random")


class NoProducts(Exception):
    """No product has a fused vector for the current encoder."""


@dataclass
class Catalogue:
    """Every indexed product: unit fused vectors (rows in ``pks`` order), stored fields and categories."""

    model_id: str
    pks: list[str]
    vectors: np.ndarray
    fields: dict[str, dict[str, Any]]
    categories: dict[str, list[str]]

    def __post_init__(self) -> None:
        self.position = {pk: i for i, pk in enumerate(self.pks)}

    def vector_map(self) -> dict[str, np.ndarray]:
        return {pk: self.vectors[i] for pk, i in self.position.items()}


@dataclass(frozen=True)
class Case:
    """One shopper, left-last-out: ``train`` events (oldest first) and the ``held_out`` product, seen at ``at``."""

    shopper: str
    train: tuple[Event, ...]
    held_out: str
    at: datetime

    @property
    def history(self) -> set[str]:
        return {event.product_pk for event in self.train}


@dataclass(frozen=True)
class TasteGroup:
    """Products of one colour in one (leaf) category."""

    colour: str
    category: str
    pks: tuple[str, ...]

    @property
    def query(self) -> str:
        """A word of the category's own name ("Hoodies & Sweatshirts" -> "hoodies")."""
        leaf = re.split(r"\s*[>/]\s*", self.category)[-1]
        words = [w for w in re.findall(r"[a-z]+", leaf.lower()) if len(w) > 2 and w not in _STOPWORDS]
        return words[0] if words else leaf.strip().lower()


@dataclass(frozen=True)
class Settings:
    """What a profile is built with (``PERSONALISATION``)."""

    event_weights: Mapping[str, float]
    half_life_days: float
    min_weight: float

    @classmethod
    def from_settings(cls) -> Settings:
        conf = search_settings.PERSONALISATION
        return cls(dict(conf["EVENT_WEIGHTS"]), float(conf["HALF_LIFE_DAYS"]), float(conf["MIN_WEIGHT"]))


def load_catalogue(model_id: str | None = None) -> Catalogue:
    """The indexed catalogue of ``model_id`` (default: the current encoder's).

    Raises:
        NoProducts: nothing is indexed with a fused vector.
    """
    model_id = model_id or services.current_model_id()
    store = get_store()
    rows = store.product_rows(model_id)
    vectors = store.product_vectors(sorted(rows), "fused_vector", model_id=model_id) if rows else {}
    pks = sorted(vectors)
    if not pks:
        raise NoProducts(f"no products are indexed for {model_id}; run mmsearch_reindex first")
    matrix = np.stack([np.asarray(vectors[pk], dtype=np.float32) for pk in pks])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    return Catalogue(
        model_id=model_id,
        pks=pks,
        vectors=unit,
        fields={pk: rows[pk][0] for pk in pks},
        categories={pk: rows[pk][1] for pk in pks},
    )


# --- shoppers ---------------------------------------------------------------------------------


def leave_last_out(shopper: str, events: Sequence[Event]) -> Case | None:
    """The shopper's case: the product of the latest event held out, every event of it left out of training.

    None when fewer than two distinct products remain.
    """
    ordered = sorted(events, key=lambda e: e.at)
    if len({e.product_pk for e in ordered}) < 2:
        return None
    last = ordered[-1]
    train = tuple(e for e in ordered if e.product_pk != last.product_pk)
    return Case(shopper=shopper, train=train, held_out=last.product_pk, at=last.at)


def recorded_cases(catalogue: Catalogue, settings: Settings) -> tuple[list[Case], int]:
    """Leave-last-out cases of recorded shoppers (``services.personal.shopper_histories``) and how many were unusable
    (held-out product not indexed, or no training event that counts towards a profile)."""
    cases, unusable = [], 0
    for shopper, events in shopper_histories(min_products=2).items():
        case = leave_last_out(shopper, events)
        if case is None:
            continue
        if case.held_out not in catalogue.position or _profile(case, catalogue, settings)[0] is None:
            unusable += 1
            continue
        cases.append(case)
    return cases, unusable


def _leaf(categories: Sequence[str]) -> str | None:
    # ancestor paths are prefixes of the leaf's, so the longest path is the deepest
    return max(categories, key=len) if categories else None


def taste_groups(catalogue: Catalogue, min_products: int = MIN_TASTE_PRODUCTS) -> list[TasteGroup]:
    """Every (colour, leaf category) with at least ``min_products`` products, largest first."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for pk in catalogue.pks:
        colour = str(catalogue.fields[pk].get("color") or "").strip().lower()
        category = _leaf(catalogue.categories[pk])
        if colour and category:
            grouped.setdefault((colour, category), []).append(pk)
    groups = [TasteGroup(c, cat, tuple(pks)) for (c, cat), pks in grouped.items() if len(pks) >= min_products]
    return sorted(groups, key=lambda g: (-len(g.pks), g.category, g.colour))


def simulate_shoppers(
    catalogue: Catalogue, n: int, *, seed: int = 0, noise: float = 0.2, groups: Sequence[TasteGroup] | None = None
) -> list[tuple[Case, TasteGroup]]:
    """``n`` shoppers with a consistent taste (one colour and category, chosen uniformly among ``groups``).

    Each history has 4-10 products (fewer for a small taste): mostly of the taste, each other
    product with probability ``noise`` from outside it; one event each (view, click, cart or purchase), hours to days apart.
    The held-out item is a taste product outside the history, seen last.
    """
    groups = list(groups if groups is not None else taste_groups(catalogue))
    if not groups:
        return []
    rng = np.random.default_rng(seed)
    kinds = [kind for kind, _ in SIMULATED_KINDS]
    p = np.array([share for _, share in SIMULATED_KINDS])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for number in range(n):
        group = groups[int(rng.integers(len(groups)))]
        available = len(group.pks) - 1  # one is held out
        # a small taste makes a short history, so that noise stays the smaller part of it
        size = min(int(rng.integers(4, 11)), max(4, available + available // 2))
        taste = list(rng.permutation(group.pks))
        held_out, taste = taste[0], taste[1 : 1 + min(size - min(int(rng.binomial(size, noise)), size - 2), available)]
        noisy = size - len(taste)
        outside = [pk for pk in catalogue.pks if pk not in set(group.pks)]
        extra = list(rng.choice(outside, size=min(noisy, len(outside)), replace=False)) if outside else []
        history = [str(pk) for pk in rng.permutation(taste + extra)]
        at = start + timedelta(days=number)
        events = []
        for pk in history:
            at += timedelta(hours=float(rng.uniform(1, 48)))
            events.append(Event(kind=str(rng.choice(kinds, p=p)), product_pk=pk, at=at))
        at += timedelta(hours=float(rng.uniform(1, 48)))
        out.append((Case(f"simulated:{number}", tuple(events), str(held_out), at), group))
    return out


# --- recommenders and metrics -----------------------------------------------------------------


def _profile(case: Case, catalogue: Catalogue, settings: Settings) -> tuple[np.ndarray | None, ProfileState]:
    vectors = {
        e.product_pk: catalogue.vectors[catalogue.position[e.product_pk]]
        for e in case.train
        if e.product_pk in catalogue.position
    }
    state = fold(
        ProfileState(None, 0.0, None),
        case.train,
        vectors,
        now=case.at,
        event_weights=settings.event_weights,
        half_life_days=settings.half_life_days,
    )
    return profile_vector(state), state


def _top(scores: np.ndarray, exclude: Sequence[int], k: int, tiebreak: np.ndarray) -> list[int]:
    scores = scores.astype(np.float64).copy()
    scores[list(exclude)] = -np.inf
    order = np.lexsort((tiebreak, -scores))
    return [int(i) for i in order[:k] if np.isfinite(scores[i])]


def _top_groups(catalogue: Catalogue, scores: np.ndarray, history: set[str], k: int, tiebreak: np.ndarray) -> list[int]:
    """:func:`_top` as ``services.recommended_for_vector`` keeps it: one product per group, none of the
    ``history``'s groups, products stating another gender than the history's after the rest."""
    ranked = [(catalogue.pks[i], float(scores[i])) for i in _top(scores, [], len(catalogue.pks), tiebreak)]
    fields = catalogue.fields
    gender = shared_gender(fields.get(pk) or {} for pk in history)
    order = gender_apart(gender, list(one_per_group(ranked, fields, taken=history)), fields)
    return [catalogue.position[pk] for pk in order[:k]]


def hit_and_ndcg(ranked: Sequence[str], held_out: str, k: int) -> tuple[float, float]:
    """(1, 1 / log2(rank + 1)) when the held-out item is in the first k, else (0, 0)."""
    for rank, pk in enumerate(ranked[:k], start=1):
        if pk == held_out:
            return 1.0, 1.0 / math.log2(rank + 1)
    return 0.0, 0.0


def evaluate_recommendations(
    cases: Sequence[Case],
    catalogue: Catalogue,
    settings: Settings,
    *,
    k: int = 10,
    seed: int = 0,
    draws: int = 10,
    progress: Progress = None,
) -> dict[str, Any]:
    """Hit-rate@k and nDCG@k of the profile, popularity and random recommenders on the same cases.

    Returns:
        ``{"n", "methods": {method: {"hit_rate", "ndcg"}}, "ratio_vs_popularity", "ratio_vs_random"}``
        (a ratio is None when its baseline scored 0).
    """
    rng = np.random.default_rng(seed)
    size = len(catalogue.pks)
    counts = Counter(e.product_pk for case in cases for e in case.train)
    totals = np.zeros(size)
    for pk, count in counts.items():
        if pk in catalogue.position:
            totals[catalogue.position[pk]] = count
    scores: dict[str, list[tuple[float, float]]] = {method: [] for method in METHODS}
    for case in cases:
        exclude = [catalogue.position[pk] for pk in case.history if pk in catalogue.position]
        tiebreak = rng.permutation(size)
        vector, _state = _profile(case, catalogue, settings)
        # as ``services.recommended_for_shopper``: one colour of a product, none of a product in the history, the
        # history's gender first
        ranked = [] if vector is None else _top_groups(catalogue, catalogue.vectors @ vector, case.history, k, tiebreak)
        scores["profile"].append(hit_and_ndcg([catalogue.pks[i] for i in ranked], case.held_out, k))
        own = np.zeros(size)
        for pk, count in Counter(e.product_pk for e in case.train).items():
            if pk in catalogue.position:
                own[catalogue.position[pk]] = count
        ranked = _top(totals - own, exclude, k, tiebreak)
        scores["popularity"].append(hit_and_ndcg([catalogue.pks[i] for i in ranked], case.held_out, k))
        allowed = np.setdiff1d(np.arange(size), exclude)
        drawn = [
            hit_and_ndcg(
                [catalogue.pks[i] for i in rng.choice(allowed, size=min(k, len(allowed)), replace=False)],
                case.held_out,
                k,
            )
            for _ in range(draws)
        ]
        scores["random"].append((statistics.fmean(h for h, _ in drawn), statistics.fmean(g for _, g in drawn)))
        if progress is not None:
            progress(1)
    methods = {
        method: {
            "hit_rate": round(statistics.fmean(h for h, _ in pairs), 4) if pairs else None,
            "ndcg": round(statistics.fmean(g for _, g in pairs), 4) if pairs else None,
        }
        for method, pairs in scores.items()
    }
    return {
        "n": len(cases),
        "methods": methods,
        "ratio_vs_popularity": _ratio(methods["profile"]["hit_rate"], methods["popularity"]["hit_rate"]),
        "ratio_vs_random": _ratio(methods["profile"]["hit_rate"], methods["random"]["hit_rate"]),
    }


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return round(value / baseline, 3)


# --- re-ranking -------------------------------------------------------------------------------


def reranking_available() -> bool:
    """Whether ``services.search_products`` takes a shopper's ``personal`` taste."""
    return "personal" in inspect.signature(services.search_products).parameters


def taste_of(case: Case, catalogue: Catalogue, settings: Settings, recent: int = 20) -> Taste | None:
    """The ``Taste`` a search gets for this shopper's training events (None: no profile vector)."""
    vector, state = _profile(case, catalogue, settings)
    if vector is None:
        return None
    latest = tuple((e.kind, e.product_pk) for e in reversed(case.train))[:recent]
    return Taste(vector=vector, weight=state.weight, recent=latest)


def evaluate_reranking(
    simulated: Sequence[tuple[Case, TasteGroup]],
    catalogue: Catalogue,
    settings: Settings,
    *,
    k: int = 10,
    fetch: int = 50,
    progress: Progress = None,
    blend: float | None = None,
) -> dict[str, Any]:
    """Per simulated shopper, search a word of their taste's category with and without their ``Taste``
    (re-ranked at ``blend``; None: ``PERSONALISATION["BLEND"]``).

    Returns:
        ``{"n", "share_off", "share_on", "lift", "mean_rank_change", "moved_up_share"}``: mean share
        of taste items in the top k without and with the profile, its difference, the mean places a
        taste item found both ways moved up (positive: higher with the profile), and the share of
        those that moved up.
    """
    share_off, share_on, changes = [], [], []
    for case, group in simulated:
        taste = taste_of(case, catalogue, settings)
        if taste is not None:
            taste = replace(taste, blend=blend)
            off = [h.product_pk for h in services.search_products(group.query, None, k=fetch).hits]
            personal: dict[str, Any] = {"personal": taste}  # a keyword of builds with personal re-ranking
            on = [h.product_pk for h in services.search_products(group.query, None, k=fetch, **personal).hits]
            members = set(group.pks)
            share_off.append(sum(pk in members for pk in off[:k]) / k)
            share_on.append(sum(pk in members for pk in on[:k]) / k)
            where = {pk: rank for rank, pk in enumerate(on)}
            changes += [rank - where[pk] for rank, pk in enumerate(off) if pk in members and pk in where]
        if progress is not None:
            progress(1)
    if not share_off:
        return {"n": 0}
    off_mean, on_mean = statistics.fmean(share_off), statistics.fmean(share_on)
    return {
        "n": len(share_off),
        "share_off": round(off_mean, 4),
        "share_on": round(on_mean, 4),
        "lift": round(on_mean - off_mean, 4),
        "mean_rank_change": round(statistics.fmean(changes), 3) if changes else None,
        "moved_up_share": round(sum(c > 0 for c in changes) / len(changes), 4) if changes else None,
    }


def neutral_taste(catalogue: Catalogue, settings: Settings, blend: float | None = None) -> Taste:
    """A profile that prefers nothing in particular: the unit mean of every fused vector, with
    evidence well above ``MIN_WEIGHT`` so that it does re-rank (at ``blend``; None: the setting)."""
    mean = catalogue.vectors.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean)) or 1.0
    return Taste(vector=(mean / norm).astype(np.float32), weight=max(10 * settings.min_weight, 10.0), blend=blend)


#: a blend is suggested when the neutral profile costs at most this much nDCG (half the issue's 0.02)
SUGGEST_MAX_DROP = 0.01


def suggest_blend(sweep: Sequence[Mapping[str, Any]]) -> float | None:
    """The strongest blend of a sweep (``[{"blend", "lift": {...}, "neutral": {...}}]``) that lifts the
    shoppers' taste and costs a neutral profile at most ``SUGGEST_MAX_DROP`` nDCG; None: none does."""
    good = [
        float(row["blend"])
        for row in sweep
        if (row.get("lift") or {}).get("lift", 0) > 0
        and (row.get("neutral") or {}).get("drop") is not None
        and row["neutral"]["drop"] <= SUGGEST_MAX_DROP
    ]
    return max(good) if good else None


def evaluate_neutral(
    queries: Sequence[JudgedQuery],
    taste: Taste,
    *,
    method: str | None = None,
    k: int = 10,
    progress: Progress = None,
) -> dict[str, Any]:
    """The relevance evaluation's nDCG@k (``evaluation.runner``) with ``taste`` and without, one method.

    Returns:
        ``{"method", "n", "ndcg_off", "ndcg_on", "drop", "per_kind": {kind: {...}}}``; ``drop`` is
        off minus on, averaged over every judged query (positive: personalisation hurt).
    """
    method = method or str(search_settings.FUSION["METHOD"])
    off = runner.run_evaluation(queries, [method], k=k, progress=progress)
    on = runner.run_evaluation(queries, [method], k=k, progress=progress, search_options={"personal": taste})
    per_kind: dict[str, dict[str, Any]] = {}
    weighted_off = weighted_on = 0.0
    total = 0
    for kind, n in off["counts"].items():
        before, after = off["methods"][method][kind], on["methods"][method][kind]
        if not n or before.get("ndcg") is None or after.get("ndcg") is None:
            continue
        per_kind[kind] = {"n": n, "ndcg_off": before["ndcg"], "ndcg_on": after["ndcg"]}
        per_kind[kind]["drop"] = round(before["ndcg"] - after["ndcg"], 4)
        weighted_off += before["ndcg"] * n
        weighted_on += after["ndcg"] * n
        total += n
    if not total:
        return {"method": method, "n": 0, "per_kind": per_kind}
    return {
        "method": method,
        "n": total,
        "ndcg_off": round(weighted_off / total, 4),
        "ndcg_on": round(weighted_on / total, 4),
        "drop": round((weighted_off - weighted_on) / total, 4),
        "per_kind": per_kind,
    }
