"""Fits what kinds of photo the catalogue sells (``ranking.calibration.PhotoDomain``).

The catalogue's photos, through the encoder's ImageNet classifier, cover a few hundred classes
(jerseys, sweatshirts, running shoes, backpacks in a sports shop; plates, lamps, cushions in a
homeware one). The domain is the mean class distribution of the training photos; a query photo's
support is the log of its class distribution's overlap with it. The cut is set without any photo of
unsold things: the validation fifth of the products (``learning.data.in_validation``) is scored
against the mixture of the *other* products' photos, so a product of a kind the rest of the catalogue
lacks counts as the unusual photo it is, and the cut keeps all but ``MAX_LOST`` of those photos. The
stored mixture then covers every training photo, which only makes shoppers' photos of sold kinds safer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from multimodal_search.learning.calibration import MAX_LOST
from multimodal_search.learning.data import in_validation
from multimodal_search.ranking.calibration import PhotoDomain

#: fewer validation photos than this: no cut is fitted (photo queries are never called unsold)
MIN_VALIDATION_PHOTOS = 10


def fit_photo_domain(classes: np.ndarray, photo_item: np.ndarray, keys: Sequence[str]) -> dict[str, Any] | None:
    """The domain as stored in the head file (``photo_relevance["domain"]``), or None (too few photos).

    Args:
        classes: (P, C) class probabilities of every training photo (``PackagedEncoder.backbone_views``).
        photo_item: (P,) product index of each photo.
        keys: product keys (the validation split is a hash of them).

    Returns:
        ``{"mixture": [...], "cut": x, "report": {...}}``.
    """
    classes = np.asarray(classes, dtype=np.float64)
    if classes.ndim != 2 or not classes.shape[1]:
        return None
    aside = np.array([in_validation(key) for key in keys], dtype=bool)[photo_item]
    if aside.sum() < MIN_VALIDATION_PHOTOS or not (~aside).any():
        return None
    others = PhotoDomain(classes[~aside].mean(axis=0), 0.0)
    support = np.sort([others.support(row) for row in classes[aside]])
    cut = float(support[int(MAX_LOST * len(support))])
    domain = PhotoDomain(classes.mean(axis=0), round(cut, 4))
    report = {
        "photos": int(aside.sum()),
        "median_support": round(float(np.median(support)), 4),
        "lowest_support": round(float(support[0]), 4),
    }
    return {**domain.to_json(), "report": report}
