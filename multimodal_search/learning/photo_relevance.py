"""Fits the relevance of photo-query results: how likely a result is the product in the photo.

Data: the validation photos :func:`learning.projection.choose_photo_features` asks with (each second
photo of a set-aside product, and a random crop of it: shoppers frame worse than a studio), scored
with the photo features it chose, every product by its best photo (the query photo itself left out). Each query is used twice, as for text
(``learning.calibration``):

* as it is: the product in the photo is relevant, every other product irrelevant;
* *leave-product-out*: the same search without the photo's product, what a photo of something the shop
  does not sell looks like (the best results are then merely the most alike).

Only each query's top ``TOP`` products are used. A logistic layer over the best-photo cosine gives the
probability (``ranking.calibration.PhotoCalibration``). Cuts:

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
from typing import Any

import numpy as np

from multimodal_search.learning.calibration import EXACT_PRECISION, MAX_LOST, TOP, precision_cut
from multimodal_search.learning.fitting import fit_probability
from multimodal_search.learning.heads import best_photo_scores
from multimodal_search.ranking import calibration as c


def fit_photo_relevance(
    features: np.ndarray,
    photo_item: np.ndarray,
    queries: np.ndarray,
    *,
    extra_queries: Sequence[np.ndarray] = (),
) -> dict[str, Any]:
    """The photo calibration and its cuts, as stored in the head file (``photo_relevance``).

    Args:
        features: (P, D) the chosen photo features of every validation-time photo.
        photo_item: (P,) product index per photo.
        queries: the query photos (indices into ``features``).
        extra_queries: further (len(queries), D) query rows, each asking for the same products as
            ``queries`` (e.g. a crop of each query photo), searched the same two ways.

    Returns:
        ``{"calibration": {...}, "cuts": {"related": p, "exact": p}, "report": {...}}``.
    """
    blocks = [best_photo_scores(features, photo_item, queries)]
    blocks += [best_photo_scores(features, photo_item, queries, extra) for extra in extra_queries]
    per_item = np.concatenate(blocks)
    own = np.tile(photo_item[queries], len(blocks))
    sims: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    tops: list[tuple[float, bool]] = []
    left_best: list[float] = []
    for row, item in enumerate(own):
        values = per_item[row]
        order = np.argsort(-values, kind="stable")
        order = order[np.isfinite(values[order])]
        for keep_own in (True, False):
            ranked = order if keep_own else order[order != item]
            ranked = ranked[:TOP]
            if not len(ranked):
                continue
            sims.append(values[ranked].astype(np.float64))
            labels.append((ranked == item).astype(np.float64))
            tops.append((float(values[ranked[0]]), bool(ranked[0] == item)))
            if not keep_own:
                left_best.append(float(values[ranked[0]]))
    x = np.concatenate(sims)[:, None]
    y = np.concatenate(labels)
    weights, bias, mean, scale = fit_probability(x, y)
    model = c.PhotoCalibration(float(weights[0]), bias, float(mean[0]), float(scale[0]))
    best_left = np.sort(model.probability(np.array(left_best)))
    own_product = np.sort(model.probability(per_item[np.arange(len(own)), own]))
    # the looser of two cuts that each lose at most MAX_LOST: under the nearest other product, under the
    # photo's own product (for a photo far from the studio's, the own product can be the less alike)
    related = min(
        float(best_left[int(MAX_LOST * len(best_left))]), float(own_product[int(MAX_LOST * len(own_product))])
    )
    top_p = model.probability(np.array([score for score, _ in tops]))
    exact = precision_cut(top_p, np.array([hit for _, hit in tops]), floor=related)
    report = {
        "queries": len(own),
        "top": TOP,
        "exact_share": round(float((top_p[0::2] >= exact).mean()), 4),
        "exact_precision": EXACT_PRECISION,
    }
    return {
        "calibration": model.to_json(),
        "cuts": {c.RELATED: round(related, 6), c.EXACT: round(exact, 6)},
        "report": report,
    }
