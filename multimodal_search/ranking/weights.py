"""Which signals each search method reads, and how much each counts (pure).

``signal_weights`` is the one place that decides, for a query and a method, the signals that are
collected and their weights in feature-level fusion (a weighted sum), decision-level fusion
(reciprocal rank fusion, unit weights) or the learned re-ranker (which weighs them itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.query import Query


def signal_weights(
    query: Query, method: str, fusion: Mapping[str, Any], *, features_carry_colour: bool = False
) -> dict[str, float]:
    """Signal -> weight for one query and method.

    Args:
        query: the encoded query.
        method: one of ``vocabulary.METHODS``; ``rerank`` of a photo query uses ``feature``.
        fusion: the ``FUSION`` settings (weights of text, colour, gender and facets).
        features_carry_colour: the encoder's photo features already encode colour, so photo queries
            get no separate photo-colour signal unless ``PHOTO_COLOUR_WEIGHT`` says so.
    """
    if method == v.RERANK and query.text_vector is not None and query.image_features is None:
        names = [v.TEXT, v.TITLE, v.IMAGE, v.LEXICAL, v.NEIGHBOURS] + ([v.COLOUR] if query.colours else [])
        return {name: 1.0 for name in names + ([v.GENDER] if query.gender else []) + list(query.facets)}
    if method == v.RERANK:  # the re-ranker is trained for text queries; photo queries use feature fusion
        method = v.FEATURE
    weights = _modality_weights(query, method, float(fusion["TEXT_WEIGHT"]))
    if method not in (v.FEATURE, v.DECISION):
        return weights
    decision = method == v.DECISION
    if query.colours:
        weights[v.COLOUR] = 1.0 if decision else float(fusion["COLOUR_WEIGHT"])
    elif query.photo_colours is not None:
        # colour variants share a shape: the photo's colours tell them apart
        weight = 1.0 if decision else _photo_colour_weight(fusion, features_carry_colour)
        if weight > 0:
            weights[v.COLOUR] = weight
    if query.gender:
        weights[v.GENDER] = 1.0 if decision else float(fusion["GENDER_WEIGHT"])
    for facet in query.facets:
        weights[facet] = 1.0 if decision else float(fusion["FACET_WEIGHT"])
    return weights


def _photo_colour_weight(fusion: Mapping[str, Any], features_carry_colour: bool) -> float:
    configured = fusion["PHOTO_COLOUR_WEIGHT"]
    if configured is not None:
        return float(configured)
    return 0.0 if features_carry_colour else 0.2


def _modality_weights(query: Query, method: str, text_weight: float) -> dict[str, float]:
    has_text = query.text_vector is not None
    has_image = query.image_features is not None
    if method == v.TEXT_ONLY:
        return {v.TEXT: 1.0}
    if method == v.LEXICAL_ONLY:
        return {v.LEXICAL: 1.0}
    if method == v.IMAGE_ONLY:
        return {v.VISUAL: 1.0} if has_image else {v.IMAGE: 1.0}
    if method == v.DECISION:
        names = ([v.TEXT, v.TITLE, v.IMAGE, v.LEXICAL] if has_text else []) + ([v.VISUAL] if has_image else [])
        return {name: 1.0 for name in names}
    words = {v.TEXT: 0.5 * text_weight, v.TITLE: 0.5 * text_weight, v.IMAGE: 1 - text_weight}
    if has_text and has_image:
        return {v.VISUAL: 0.5, **{name: 0.5 * weight for name, weight in words.items()}}
    if has_image:
        return {v.VISUAL: 1.0}
    return words
