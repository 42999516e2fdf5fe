"""Personal re-ranking of one search: the ranking nudged towards what the shopper viewed and bought.

``search.rank_products`` calls :func:`personalise` with the fused scores of its candidate pool and the
shopper's :class:`~multimodal_search.ranking.personal.Taste` (``services.personal`` reads it from their
profile). Nothing happens for anonymous visitors (no taste), a thin profile (``MIN_WEIGHT``) or
``BLEND`` 0. Each candidate's affinity is the cosine of its fused vector with the profile; the scores
move by ``BLEND`` score standard deviations per affinity standard deviation (``ranking.personal.blend``),
so a gentle blend reorders near-ties and leaves clear winners where they are. A result that moved up
is explained by the recent product it most resembles ("because you viewed …").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.ranking import fusion, personal
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.personal import Taste
from multimodal_search.store import get_store

FUSED_COLUMN = "fused_vector"


@dataclass
class Nudge:
    """A personalised ranking: the new ``order`` and ``scores``, each candidate's ``affinity`` with the
    profile, and per result that moved up the positions it gained and the recent event behind it."""

    order: list[str]
    scores: dict[str, float]
    affinity: dict[str, float]
    moved: dict[str, int] = field(default_factory=dict)
    because: dict[str, dict[str, str]] = field(default_factory=dict)


def active(taste: Taste | None) -> bool:
    """Whether ``taste`` re-ranks searches (personalisation on, a blend, enough evidence)."""
    chosen = search_settings.PERSONALISATION
    return (
        taste is not None
        and bool(chosen["ENABLED"])
        and float(chosen["BLEND"]) > 0
        and taste.weight >= float(chosen["MIN_WEIGHT"])
    )


def personalise(
    scores: Mapping[str, float], order: list[str], taste: Taste | None, *, model_id: str, seed: str | None
) -> Nudge | None:
    """``order`` (ranked by ``scores``) re-ranked for ``taste``; None when personalisation does not apply."""
    if not active(taste) or not order:
        return None
    assert taste is not None
    recent = [(kind, pk) for kind, pk in taste.recent]
    wanted = list(dict.fromkeys([*order, *(pk for _, pk in recent)]))
    vectors = get_store().product_vectors(wanted, FUSED_COLUMN, model_id=model_id)
    affinity = personal.affinities(taste.vector, {pk: vectors[pk] for pk in order if pk in vectors})
    nudged = personal.blend(
        {pk: scores.get(pk, 0.0) for pk in order}, affinity, float(search_settings.PERSONALISATION["BLEND"])
    )
    new_order = fusion.rank(nudged, seed=seed)
    before = {pk: position for position, pk in enumerate(order)}
    moved = {pk: before[pk] - position for position, pk in enumerate(new_order) if before[pk] > position}
    kinds: dict[str, str] = {}
    for kind, pk in recent:
        kinds.setdefault(pk, kind)  # newest first: the latest thing done with it
    seen = {pk: vectors[pk] for pk in kinds if pk in vectors}
    because: dict[str, dict[str, str]] = {}
    for pk in moved:
        if pk in vectors:
            like = personal.closest(vectors[pk], {other: vector for other, vector in seen.items() if other != pk})
            if like is not None:
                because[pk] = {"product": like, "kind": kinds[like]}
    _add_titles(because)
    return Nudge(new_order, nudged, affinity, moved, because)


def explain(explanation: Mapping[str, float], before: float, after: float) -> dict[str, float]:
    """A result's explanation with the profile's share: how far the nudge moved its score, against the
    score itself; the other shares are scaled down so that all still add up to 1."""
    delta = abs(after - before)
    if delta == 0:
        return dict(explanation)
    share = delta / (delta + abs(before)) if before else 1.0
    if not any(explanation.values()):
        return {**explanation, v.PERSONAL: round(share, 4)}
    return {
        **{name: round(value * (1 - share), 4) for name, value in explanation.items()},
        v.PERSONAL: round(share, 4),
    }


def _add_titles(because: dict[str, dict[str, str]]) -> None:
    pks = {entry["product"] for entry in because.values()}
    if not pks:
        return
    adapter = get_adapter()
    titles: dict[str, Any] = {
        str(product.pk): adapter.to_result(product).get("title", "")
        for product in adapter.get_queryset().filter(pk__in=pks)
    }
    for entry in because.values():
        entry["title"] = str(titles.get(entry["product"], ""))
