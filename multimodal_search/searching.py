"""Search service: one entry point for text, photo and text+photo queries."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from multimodal_search import attributes, colour, fusion, reranking, synonyms
from multimodal_search.adapters import get_adapter
from multimodal_search.backends import pgvector as backend
from multimodal_search.conf import search_settings
from multimodal_search.encoders import get_encoder
from multimodal_search.signals import search_performed

METHODS = ("feature", "embedding", "decision", "rerank", "text", "image", "lexical")
# methods that rank by the query's words alone
TEXT_ONLY_METHODS = ("text", "lexical")


class SearchError(ValueError):
    """Bad search input (reported to users as a 400)."""


@dataclass
class SearchHit:
    product_pk: str
    product: Any
    score: float
    signals: dict[str, float]
    explanation: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        data = get_adapter().to_result(self.product)
        data["score"] = round(self.score, 6)
        data["explanation"] = self.explanation
        data["signals"] = {k: round(v, 6) for k, v in self.signals.items()}
        return data


@dataclass
class SearchResponse:
    hits: list[SearchHit]
    method: str
    took_ms: float
    model_id: str
    query: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Query:
    text: str | None
    text_vector: np.ndarray | None
    image_shared: np.ndarray | None
    image_features: np.ndarray | None
    colours: list[str] = field(default_factory=list)
    photo_colours: np.ndarray | None = None
    gender: str | None = None
    #: learned facet -> the values the words name ({"category": ["hoodies & sweatshirts"]})
    facets: dict[str, list[str]] = field(default_factory=dict)


def _wants_colour(query: _Query) -> bool:
    return bool(query.colours) or query.photo_colours is not None


def _weights(query: _Query, method: str, fusion_settings: dict) -> dict[str, float]:
    if method == "rerank" and query.text_vector is not None and query.image_features is None:
        names = ["text", "title", "image", "lexical", "neighbours"] + (["colour"] if query.colours else [])
        return {name: 1.0 for name in names + (["gender"] if query.gender else []) + list(query.facets)}
    if method == "rerank":  # the re-ranker is trained for text queries; photo queries use feature fusion
        method = "feature"
    weights = _base_weights(query, method, float(fusion_settings["TEXT_WEIGHT"]))
    if query.colours and method in ("feature", "decision"):
        weights["colour"] = 1.0 if method == "decision" else float(fusion_settings["COLOUR_WEIGHT"])
    elif query.photo_colours is not None and method in ("feature", "decision"):
        # colour variants share a shape: the photo's colours tell them apart
        weight = 1.0 if method == "decision" else _photo_colour_weight(fusion_settings)
        if weight > 0:
            weights["colour"] = weight
    if query.gender and method in ("feature", "decision"):
        weights["gender"] = 1.0 if method == "decision" else float(fusion_settings["GENDER_WEIGHT"])
    if method in ("feature", "decision"):
        for facet in query.facets:
            weights[facet] = 1.0 if method == "decision" else float(fusion_settings["FACET_WEIGHT"])
    return weights


def _photo_colour_weight(fusion_settings: dict) -> float:
    configured = fusion_settings["PHOTO_COLOUR_WEIGHT"]
    if configured is not None:
        return float(configured)
    return 0.0 if getattr(get_encoder(), "features_carry_colour", False) else 0.2


def _base_weights(query: _Query, method: str, text_weight: float) -> dict[str, float]:
    has_text = query.text_vector is not None
    has_image = query.image_features is not None
    if method == "text":
        return {"text": 1.0}
    if method == "lexical":
        return {"lexical": 1.0}
    if method == "image":
        return {"visual": 1.0} if has_image else {"image": 1.0}
    if method == "decision":
        names = (["text", "title", "image", "lexical"] if has_text else []) + (["visual"] if has_image else [])
        return {name: 1.0 for name in names}
    words = {"text": 0.5 * text_weight, "title": 0.5 * text_weight, "image": 1 - text_weight}
    if has_text and has_image:
        return {"visual": 0.5, **{name: 0.5 * weight for name, weight in words.items()}}
    if has_image:
        return {"visual": 1.0}
    return words


_TEXT_COLUMNS = {"text": "text_vector", "title": "title_vector", "image": "image_vector"}
# signals read from the products' stored fields
FIELD_KEYS = {
    "colour": ("colours", "color", "colour_inferred"),
    "gender": ("gender", "gender_inferred"),
    "category": ("category_leaf", "category_inferred"),
    "material": ("material", "material_inferred"),
}


def _field_keys(names: set[str]) -> list[str]:
    return sorted({key for name in FIELD_KEYS.keys() & names for key in FIELD_KEYS[name]})


def _derived_signals(
    query: _Query, pks: list[str], signals: dict[str, dict[str, float]], fields: dict[str, dict], model_id: str,
    names: set[str],
) -> None:
    """Signals computed from the exact ones and the stored fields (added to ``signals``)."""
    if query.image_features is not None:
        signals["visual"] = backend.image_similarities(pks, "feature_vector", query.image_features, model_id=model_id)
    if FIELD_KEYS.keys() & names and not fields:
        fields.update(backend.product_fields(pks, model_id=model_id))
    if "gender" in names and query.gender:
        signals["gender"] = {pk: attributes.gender_match(query.gender, fields.get(pk) or {}) for pk in pks}
    for facet, wanted in query.facets.items():
        if facet in names:
            signals[facet] = {pk: attributes.facet_match(facet, wanted, fields.get(pk) or {}) for pk in pks}
    if "colour" in names:
        if query.colours:  # words win: "like this photo, but in red"
            signals["colour"] = {
                pk: colour.colour_match(query.colours, attributes.colour_profile(fields.get(pk) or {})) for pk in pks
            }
        elif query.photo_colours is not None:
            signals["colour"] = {
                pk: colour.profile_overlap(query.photo_colours, fields.get(pk, {}).get("colours", {})) for pk in pks
            }


def _tie_breaker(query: _Query, pool: list[str]) -> dict[str, str]:
    """Equal scores (e.g. colour variants with identical text) are ordered by a hash of the
    query and the product, not by row order: stable for one query, fair across queries."""
    seed = f"{query.text or ''}|{'' if query.image_features is None else query.image_features[:4].tobytes().hex()}"
    return {pk: hashlib.sha1(f"{seed}|{pk}".encode()).hexdigest() for pk in pool}


def _neighbours(names: set[str]) -> tuple[tuple[str, ...], int, int] | None:
    """Pseudo-relevance feedback in photo space ("neighbours"): how much each candidate looks
    like the 5 best word matches (RRF of text, title and keyword ranks). Products of the kind
    asked for look alike, so this spreads the words' evidence to products whose own text
    does not use the shopper's words."""
    if "neighbours" not in names:
        return None
    return ("text", "title", "lexical"), 5, get_encoder().feature_dimensions


def collect_signals(
    query: _Query, names: set[str], model_id: str, candidates: int, categories: list[str]
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Candidate products from every index the signals read, and each signal's value for them.

    Words: the top candidates of the text, title and photo-in-text-space indexes (and of
    the fused one for embedding-level fusion) and the keyword matches, plus a photo's
    nearest products for text + photo, are scored exactly in one database round trip.
    Photo-only queries take the nearest products by photo.
    """
    kwargs = {"model_id": model_id, "limit": candidates, "categories": categories,
              "ef_search": int(search_settings.HNSW_EF_SEARCH)}
    visual: list[str] = []
    if query.image_features is not None and "visual" in names:
        visual = [pk for pk, _ in backend.nearest_images("feature_vector", query.image_features, **kwargs)]
    signals: dict[str, dict[str, float]] = {}
    fields: dict[str, dict] = {}
    if query.text_vector is not None:
        # the fused index only feeds embedding-level fusion; the others cover its neighbours
        ranked = {n: c for n, c in {"fused": "fused_vector", **_TEXT_COLUMNS}.items() if n in names}
        scored = {n: c for n, c in _TEXT_COLUMNS.items() if n in names or n in ("text", "image")}
        pool, signals, fields = backend.candidate_signals(
            ranked, scored, query.text_vector, lexical_text=(query.text or "") if "lexical" in names else None,
            extra_pks=visual, with_fields=_field_keys(names), neighbours=_neighbours(names), **kwargs,
        )
    else:
        pool = visual
    _derived_signals(query, pool, signals, fields, model_id, names)
    return pool, signals


def encode_query(text: str | None, image: Image.Image | None) -> _Query:
    encoder = get_encoder()
    text = (text or "").strip() or None
    words = synonyms.expand(text) if text else None  # what the text encoder and keyword search see
    text_vector = encoder.encode_text([words])[0] if words else None
    shared = features = None
    if image is not None:
        shared_all, features_all = encoder.encode_image_pair([image.convert("RGB")])
        shared, features = shared_all[0], features_all[0]
    return _Query(
        text=words, text_vector=text_vector, image_shared=shared, image_features=features,
        colours=colour.colours_in_text(text or ""),
        gender=attributes.gender_in_text(text or ""),
        photo_colours=colour.colour_distribution(image) if image is not None else None,
        facets=_named_facets(words, encoder.model_id),
    )


def _named_facets(words: str | None, model_id: str) -> dict[str, list[str]]:
    """The learned categories / materials a query names (none until mmsearch_train learned some)."""
    model = attributes.get_model(model_id) if words else None
    if model is None:
        return {}
    found = {}
    for facet in attributes.NAMED_FACETS:
        if facet in model.classifiers:
            values = attributes.named_values(words or "", model.classifiers[facet].classes, facet)
            if values:
                found[facet] = values
    return found


def search_products(
    text: str | None = None,
    image: Image.Image | None = None,
    *,
    k: int = 10,
    category: str | None = None,
    method: str | None = None,
) -> SearchResponse:
    """Find products by text, by photo, or by both.

    Args:
        text: the shopper's words (may be empty when ``image`` is given).
        image: a query photo.
        k: number of results (1-100).
        category: category path; only products in it (or below) are returned.
        method: fusion method, one of ``METHODS`` (default: settings FUSION.METHOD).

    Returns:
        ranked hits with per-modality signals and an explanation of shares.

    Raises:
        SearchError: no query, bad k or unknown method.
    """
    started = time.perf_counter()
    if not (text and text.strip()) and image is None:
        raise SearchError("Give a text query, a photo, or both.")
    if not 1 <= int(k) <= 100:
        raise SearchError("k must be between 1 and 100.")
    fusion_settings = search_settings.FUSION
    method = method or fusion_settings["METHOD"]
    if method not in METHODS:
        raise SearchError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    query = encode_query(text, image)
    if method in TEXT_ONLY_METHODS and query.text_vector is None:
        raise SearchError(f"Method {method!r} needs a text query.")
    model_id = get_encoder().model_id
    categories = [category] if category else []
    weights = _weights(query, method, fusion_settings)
    candidates = max(int(fusion_settings["CANDIDATES"]), k)
    names = set(weights) | ({"fused"} if method == "embedding" else set())
    pool, signals = collect_signals(query, names, model_id, candidates, categories)
    ties = _tie_breaker(query, pool)
    reranker = reranking.get_reranker() if method == "rerank" and "visual" not in weights else None
    if method == "rerank" and reranker is None:
        method = "feature"  # nothing trained yet (or a photo query): fall back to feature-level fusion
        weights = _weights(query, method, fusion_settings)
    if reranker is not None:
        scores, explained, weights = reranker.score(pool, signals)
    elif method == "decision":
        ranked = dict(signals)
        if "lexical" in ranked:  # products without a matching term are not in the lexical ranking
            ranked["lexical"] = {pk: value for pk, value in ranked["lexical"].items() if value > 0}
        scores, explained = fusion.rrf_scores(ranked, weights)
    elif method == "embedding":
        # one shared space: the product's fused vector against the query vector(s)
        parts = [v for v in (query.text_vector, query.image_shared) if v is not None]
        scores = backend.product_similarities(pool, "fused_vector", fusion.normalize(sum(parts)), model_id=model_id)
        weights = {name: 1.0 for name in ("text", "image", "visual") if name in signals}
    else:
        scores = fusion.weighted_scores(signals, weights)
    if method == "lexical":
        scores = {pk: value for pk, value in scores.items() if value > 0}
    if method not in ("decision", "rerank"):
        explained = signals
    order = fusion.rank(scores, ties)[:k]
    products = {str(p.pk): p for p in get_adapter().get_queryset().filter(pk__in=order)}
    hits = [
        SearchHit(
            product_pk=pk,
            product=products[pk],
            score=scores[pk],
            signals={name: values[pk] for name, values in signals.items() if pk in values},
            explanation=fusion.contributions(pk, explained, weights),
        )
        for pk in order
        if pk in products
    ]
    took_ms = (time.perf_counter() - started) * 1000
    query_info = {"text": (text or "").strip() or None, "image": image is not None, "k": k, "category": category}
    if query.text and query.text != query_info["text"]:
        query_info["expanded"] = query.text
    search_performed.send(sender=SearchResponse, query=query_info, result_count=len(hits), took_ms=took_ms)
    return SearchResponse(hits=hits, method=method, took_ms=took_ms, model_id=model_id, query=query_info)


def similar_products(product: Any, *, k: int = 8) -> list[SearchHit]:
    """Products closest to ``product`` by its fused vector (itself excluded)."""
    from multimodal_search.models import ProductEmbedding

    encoder = get_encoder()
    row = ProductEmbedding.objects.filter(product_pk=str(product.pk), model_id=encoder.model_id).first()
    if row is None:
        return []
    vector = backend.as_array(row.fused_vector)
    nearest = backend.nearest_products(
        "fused_vector", vector, model_id=encoder.model_id, limit=k + 1,
        ef_search=int(search_settings.HNSW_EF_SEARCH),
    )
    nearest = [(pk, sim) for pk, sim in nearest if pk != str(product.pk)][:k]
    products = {str(p.pk): p for p in get_adapter().get_queryset().filter(pk__in=[pk for pk, _ in nearest])}
    return [
        SearchHit(product_pk=pk, product=products[pk], score=sim, signals={"fused": sim}, explanation={"fused": 1.0})
        for pk, sim in nearest
        if pk in products
    ]
