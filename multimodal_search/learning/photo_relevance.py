"""Fits the relevance of photo-query results: how likely a result is the product in the photo.

Data: the validation photos :func:`learning.projection.choose_photo_features` asks with (each second
photo of a set-aside product, and a random crop of it: shoppers frame worse than a studio), scored
with the photo features it chose, every product by its best photo (the query photo itself left out). Each query is used twice, as for text
(``learning.calibration``):

* as it is: the product in the photo is relevant, every other product irrelevant;
* *leave-product-out*: the same search without the photo's product, what a photo of something the shop
  does not sell looks like (the best results are then merely the most alike).

Only each query's top ``TOP`` products are used. A logistic layer over the best-photo cosine gives the
probability (``ranking.calibration.PhotoCalibration``), and over its *margin* too (the cosine minus
the best other product's) when that predicts the searches of held-out query photos better
(``FOLDS``-fold cross-validation, the cosine alone as the floor). On Luma the cosine alone had a flat
slope: a product's colour variants look nearly as alike as the product, so even the catalogue photo
itself (cosine 1.0) got a relevance of 0.45; the margin tells it apart. Cuts:

* ``related`` (the storefront's threshold): below the best result of all but ``MAX_LOST`` of the
  leave-product-out searches *and* below the photo's own product in all but ``MAX_LOST`` of the
  searches as they are. A result under it looks less like the photo than the nearest *other* product
  and than the right product nearly always do, so a photo whose best match is under it shows nothing
  like it is sold;
* ``exact``: the lowest cut at which the top result is the photo's product at least
  ``EXACT_PRECISION`` of the time (at least ``related``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from multimodal_search.learning.calibration import EXACT_PRECISION, MAX_LOST, TOP, precision_cut
from multimodal_search.learning.fitting import fit_probability
from multimodal_search.learning.heads import best_photo_scores
from multimodal_search.ranking import calibration as c

#: folds of the cross-validation that chooses whether the margin joins the cosine
FOLDS = 5


@dataclass
class _Search:
    """One validation search's top ``TOP`` products: cosines, margins, which is the photo's product."""

    query: int
    similarity: np.ndarray
    margin: np.ndarray
    relevant: np.ndarray
    #: False: the leave-product-out search (the photo's product removed)
    kept_own: bool


def fit_photo_relevance(
    features: np.ndarray,
    photo_item: np.ndarray,
    queries: np.ndarray,
    *,
    extra_queries: Sequence[np.ndarray] = (),
    margin: bool | None = None,
) -> dict[str, Any]:
    """The photo calibration and its cuts, as stored in the head file (``photo_relevance``).

    Args:
        features: (P, D) the chosen photo features of every validation-time photo.
        photo_item: (P,) product index per photo.
        queries: the query photos (indices into ``features``).
        extra_queries: further (len(queries), D) query rows, each asking for the same products as
            ``queries`` (e.g. a crop of each query photo), searched the same two ways.
        margin: whether the calibration reads the margin beside the cosine; None (default): when it
            predicts the held-out searches better (:func:`choose_margin`).

    Returns:
        ``{"calibration": {...}, "cuts": {"related": p, "exact": p}, "report": {...}}``.
    """
    blocks = [best_photo_scores(features, photo_item, queries)]
    blocks += [best_photo_scores(features, photo_item, queries, extra) for extra in extra_queries]
    per_item = np.concatenate(blocks)
    own = np.tile(photo_item[queries], len(blocks))
    searches: list[_Search] = []
    own_inputs: list[tuple[float, float]] = []
    for row, item in enumerate(own):
        values = per_item[row]
        order = np.argsort(-values, kind="stable")
        order = order[np.isfinite(values[order])]
        others = order[order != item]
        own_inputs.append((float(values[item]), float(values[item] - values[others[0]]) if len(others) else 0.0))
        for ranked, kept_own in ((order, True), (others, False)):
            if not len(ranked):
                continue
            similarity = values[ranked].astype(np.float64)
            stands_out = c.margins(similarity)
            searches.append(
                _Search(row % len(queries), similarity[:TOP], stands_out[:TOP], ranked[:TOP] == item, kept_own)
            )
    held_out = cross_validated_loss(searches)
    use_margin = choose_margin(held_out) if margin is None else margin
    model = _fit(searches, use_margin)
    if use_margin and not _monotonic(model):
        model, use_margin = _fit(searches, False), False
    best_left = np.sort(
        np.array([model.probability(s.similarity[:1], s.margin[:1])[0] for s in searches if not s.kept_own])
    )
    own_product = np.sort(model.probability(*np.array(own_inputs).T))
    # the looser of two cuts that each lose at most MAX_LOST: under the nearest other product, under the
    # photo's own product (for a photo far from the studio's, the own product can be the less alike)
    related = min(
        float(best_left[int(MAX_LOST * len(best_left))]), float(own_product[int(MAX_LOST * len(own_product))])
    )
    top_p = np.array([model.probability(s.similarity[:1], s.margin[:1])[0] for s in searches])
    exact = precision_cut(top_p, np.array([bool(s.relevant[0]) for s in searches]), floor=related)
    report = {
        "queries": len(own),
        "top": TOP,
        "exact_share": round(float((top_p[0::2] >= exact).mean()), 4),
        "exact_precision": EXACT_PRECISION,
        "margin": use_margin,
        "held_out_log_loss": held_out,
    }
    return {
        "calibration": model.to_json(),
        "cuts": {c.RELATED: round(related, 6), c.EXACT: round(exact, 6)},
        "report": report,
    }


def _monotonic(model: c.PhotoCalibration) -> bool:
    """Whether, within one search, the more alike product stays the more likely and standing out
    counts for it: the margin's weight is positive, and so is the slope of both inputs together (a
    product's margin grows with its cosine one for one)."""
    return model.margin_weight > 0 and model.weight / model.scale + model.margin_weight / model.margin_scale > 0


def _inputs(searches: Sequence[_Search], use_margin: bool) -> tuple[np.ndarray, np.ndarray]:
    columns = [np.concatenate([s.similarity for s in searches])]
    if use_margin:
        columns.append(np.concatenate([s.margin for s in searches]))
    return np.stack(columns, axis=1), np.concatenate([s.relevant for s in searches]).astype(np.float64)


def _fit(searches: Sequence[_Search], use_margin: bool) -> c.PhotoCalibration:
    weights, bias, mean, scale = fit_probability(*_inputs(searches, use_margin))
    if not use_margin:
        return c.PhotoCalibration(float(weights[0]), bias, float(mean[0]), float(scale[0]))
    return c.PhotoCalibration(
        float(weights[0]), bias, float(mean[0]), float(scale[0]), float(weights[1]), float(mean[1]), float(scale[1])
    )


def cross_validated_loss(searches: Sequence[_Search]) -> dict[str, float]:
    """Mean held-out log-loss of the cosine alone (``"similarity"``) and with the margin
    (``"margin"``), ``FOLDS`` folds of whole query photos (a photo's crop and its leave-product-out
    search in the same fold); {} with fewer than ``FOLDS`` query photos."""
    photos = sorted({s.query for s in searches})
    if len(photos) < FOLDS:
        return {}
    fold_of = {photo: n % FOLDS for n, photo in enumerate(np.random.default_rng(0).permutation(photos))}
    losses: dict[str, list[float]] = {"similarity": [], "margin": []}
    for fold in range(FOLDS):
        train = [s for s in searches if fold_of[s.query] != fold]
        test = [s for s in searches if fold_of[s.query] == fold]
        for name, use_margin in (("similarity", False), ("margin", True)):
            model = _fit(train, use_margin)
            x, y = _inputs(test, use_margin)
            p = np.clip(model.probability(x[:, 0], x[:, 1] if use_margin else None), 1e-6, 1 - 1e-6)
            losses[name].append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return {name: round(float(np.mean(values)), 5) for name, values in losses.items()}


def choose_margin(held_out: dict[str, float]) -> bool:
    """Whether the margin joins the cosine: only when it lowered the held-out log-loss (the cosine
    alone is the floor)."""
    return bool(held_out) and held_out["margin"] < held_out["similarity"]
