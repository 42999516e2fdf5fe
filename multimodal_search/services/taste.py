"""Personal re-ranking of one search: the ranking nudged towards what the shopper viewed and bought.

``search.rank_products`` calls :func:`personalise` with the fused scores of its candidate pool and the
shopper's :class:`~multimodal_search.ranking.personal.Taste` (``services.personal`` reads it from their
profile). Nothing happens for anonymous visitors (no taste), a thin profile (``MIN_WEIGHT``) or
``BLEND`` 0. Each candidate's affinity is the cosine of its fused vector with the profile; the scores
move by ``BLEND`` score standard deviations per affinity standard deviation (``ranking.personal.blend``),
so a gentle blend reorders near-ties and leaves clear winners where they are. A result that moved up
``BECAUSE_MIN_MOVE`` places or more is explained by the recent product it most resembles ("because
you viewed …").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from multimodal_search.conf import search_settings
from multimodal_search.ranking import fusion, personal
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.personal import Taste
from multimodal_search.services.health import product_cards
from multimodal_search.store import get_store

FUSED_COLUMN = "fused_vector"
#: a result says "because you viewed …" when the profile moved it up at least this many places (a swap
#: of neighbours is too small a change to explain to a shopper)
BECAUSE_MIN_MOVE = 3


@dataclass
class Nudge:
    """A personalised ranking: the new ``order`` and ``scores``, each candidate's ``affinity`` with the
    profile, and per result that moved up the positions it gained and the recent event behind it."""

    order: list[str]
    scores: dict[str, float]
    affinity: dict[str, float]
    moved: dict[str, int] = field(default_factory=dict)
    because: dict[str, dict[str, str]] = field(default_factory=dict)


def blend_of(taste: Taste) -> float:
    """The re-ranking strength for ``taste``: its own ``blend``, else ``PERSONALISATION["BLEND"]``."""
    return float(search_settings.PERSONALISATION["BLEND"] if taste.blend is None else taste.blend)


def active(taste: Taste | None) -> bool:
    """Whether ``taste`` re-ranks searches (personalisation on, a blend, enough evidence)."""
    chosen = search_settings.PERSONALISATION
    return (
        taste is not None
        and bool(chosen["ENABLED"])
        and blend_of(taste) > 0
        and taste.weight >= float(chosen["MIN_WEIGHT"])
    )


def personalise(
    scores: Mapping[str, float], order: list[str], taste: Taste | None, *, model_id: str, seed: str | None
) -> Nudge | None:
    """``order`` (ranked by ``scores``) re-ranked for ``taste``; None when personalisation does not apply."""
    if not active(taste) or not order:
        return None
    assert taste is not None
    store = get_store()
    # cosines computed in the database: no candidate's vector travels
    affinity = store.similarities(order, FUSED_COLUMN, taste.vector, model_id=model_id)
    nudged = personal.blend({pk: scores.get(pk, 0.0) for pk in order}, affinity, blend_of(taste))
    new_order = fusion.rank(nudged, seed=seed)
    before = {pk: position for position, pk in enumerate(order)}
    moved = {pk: before[pk] - position for position, pk in enumerate(new_order) if before[pk] > position}
    because = _because({pk: n for pk, n in moved.items() if n >= BECAUSE_MIN_MOVE}, taste, model_id)
    return Nudge(new_order, nudged, affinity, moved, because)


def _because(moved: Mapping[str, int], taste: Taste, model_id: str) -> dict[str, dict[str, str]]:
    """For each result that moved up, the recent event whose product it most resembles (fused cosine)."""
    kinds: dict[str, str] = {}
    for kind, pk in taste.recent:
        kinds.setdefault(pk, kind)  # newest first: the latest thing done with it
    if not moved or not kinds:
        return {}
    closest = get_store().closest_products(list(moved), list(kinds), FUSED_COLUMN, model_id=model_id)
    because = {pk: {"product": like, "kind": kinds[like]} for pk, (like, _sim) in closest.items()}
    _add_titles(because)
    return because


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
    cards = product_cards(sorted({entry["product"] for entry in because.values()}))
    for entry in because.values():
        entry["title"] = str((cards.get(entry["product"]) or {}).get("title", ""))
