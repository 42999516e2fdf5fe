"""Recommendations: products for a profile vector, "customers also viewed" and popular products.

* :func:`recommended_for_vector`: the nearest products to a (profile) vector in the fused space;
* :func:`recommended_for_shopper`: the same for a shopper's profile (``services.personal``), popular
  products when they have none or a thin one;
* :func:`also_viewed`: products the shoppers of one product also interacted with (co-occurrence), filled
  with similar-looking products (vector similarity) when few or none did;
* :func:`popular_products`: the most interacted-with products of the last days, in a category when
  given, filled with the newest products so that a non-empty catalogue never gives an empty strip.

Every hit says where it came from in its ``signals`` and ``explanation``: ``co_viewed`` (shoppers who
did both), ``similar`` (cosine of fused vectors), ``profile`` (cosine with the profile), ``popular``
(weighted event count in the window) or ``newest``.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from datetime import timedelta
from typing import Any

import numpy as np
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Case, CharField, Count, F, FloatField, Q, Sum, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.models import ProductEmbedding, ShopperEvent
from multimodal_search.ranking import attributes
from multimodal_search.ranking import vocabulary as v
from multimodal_search.services.query import current_encoder
from multimodal_search.services.search import (
    SIMILAR_READ,
    SearchHit,
    _products,
    gender_apart,
    lean_queryset,
    one_per_group,
    similar_products,
)
from multimodal_search.store import get_store
from multimodal_search.store.base import Scope

#: the latest events of a product whose shoppers ``also_viewed`` looks at
SHOPPER_EVENTS = 500
#: the latest events of those shoppers it reads (bounded work on a big event table)
CO_EVENTS = 5_000
#: co-occurring products whose popularity it counts (the best by raw co-occurrence)
CO_CANDIDATES = 200
#: products kept of the popularity ranking of a window (and category)
POPULAR_POOL = 200

CO_VIEWED, SIMILAR, PROFILE = "co_viewed", "similar", "profile"
POPULAR, NEWEST = v.POPULAR, v.NEWEST
FUSED_COLUMN = "fused_vector"


def recommended_for_vector(
    vector: np.ndarray,
    *,
    k: int,
    exclude: Collection[Any] = (),
    category: str | None = None,
    history_gender: bool = False,
) -> list[SearchHit]:
    """The products nearest to ``vector`` by their fused vector (HNSW), for "recommended for you".

    Args:
        vector: a vector in the fused space (a shopper's profile direction); need not be unit length.
        k: how many products.
        exclude: product pks never returned (e.g. already bought).
        category: category path; only products in it (or below).
        history_gender: ``exclude`` is the shopper's history: when most of it states one gender
            (``attributes.shared_gender``), products that state the other come after the rest
            (``search.gender_apart``).

    Returns:
        up to ``k`` hits, nearest first (``profile`` signal: cosine), one per product group (its nearest
        colour: ``fields["group"]``) and none of an excluded product's group (its other colours are the
        product the shopper saw or bought), filled with popular products when fewer than ``k`` are near
        enough (inactive or excluded ones dropped). On the demo, a shopper who had viewed five men's
        hoodies was recommended the Stark Fundamental Hoodie in blue and in purple, and the black Chaz
        Kangeroo Hoodie after the grey one.
    """
    if k <= 0:
        return []
    excluded = {str(pk) for pk in exclude}
    _encoder, model_id = current_encoder()
    wanted = SIMILAR_READ * k + len(excluded)
    scope = Scope(
        model_id,
        wanted,
        categories=[category] if category else (),
        ef_search=max(int(search_settings.HNSW_EF_SEARCH), min(wanted, 1000)),
    )
    store = get_store()
    nearest = store.nearest(FUSED_COLUMN, np.asarray(vector, dtype=np.float32), scope)
    fields = store.product_fields(sorted(excluded) + [pk for pk, _ in nearest], model_id=model_id)
    similarity = one_per_group(nearest, fields, taken=excluded)
    gender = attributes.shared_gender(fields.get(pk) or {} for pk in excluded) if history_gender else None
    order = gender_apart(gender, list(similarity), fields)
    hits = [_hit(pk, product, similarity[pk], PROFILE) for pk, product in _products(order)][:k]
    return _fill(hits, k, excluded, category)


def recommended_for_shopper(
    shopper: str | None, *, k: int, category: str | None = None, fallback: bool = True
) -> list[SearchHit]:
    """Recommended for you: products near a shopper's profile, minus what they bought and their recent
    products (``PERSONALISATION["RECENT"]`` latest events).

    Popular products (:func:`popular_products`) when personalisation is off, or the shopper has no
    profile or a thin one (weight under ``PERSONALISATION["MIN_WEIGHT"]``).

    Args:
        shopper: a key from ``services.personal.shopper_key`` (None: an unknown visitor).
        k: how many products.
        category: category path; only products in it (or below).
        fallback: popular products when there is no usable profile (False: nothing, for a page that shows
            its own popular strip).
    """
    from multimodal_search.services import personal  # the profiles' module; read when called

    chosen = search_settings.PERSONALISATION
    profile = personal.profile_for(shopper) if shopper and chosen["ENABLED"] else None
    if profile is None or float(profile.weight) < float(chosen["MIN_WEIGHT"]):
        return popular_products(k=k, category=category) if fallback else []
    assert shopper is not None
    bought = personal.shopper_events(shopper).filter(kind=ShopperEvent.PURCHASE).values_list("product_pk", flat=True)
    # what they bought, and what they just looked at (the strip suggests products they have not seen yet)
    seen = {event.product_pk for event in profile.recent}
    # and the gender they shop for, when their products mostly state one: after five men's hoodies, three
    # of the eight recommended were women's on the demo
    history = set(bought[:1000]) | seen
    return recommended_for_vector(profile.vector, k=k, exclude=history, category=category, history_gender=True)


def also_viewed(product_pk: Any, *, k: int, fill: bool = True) -> list[SearchHit]:
    """Customers also viewed: what the shoppers of one product also viewed, carted or bought.

    A shopper is a signed-in user, else a storefront session. Two bounded queries: the latest
    ``SHOPPER_EVENTS`` events of the product name its shoppers; the latest ``CO_EVENTS`` events of those
    shoppers on other products are counted, each shopper once per product with the weight of the strongest
    thing they did with it (``PERSONALISATION["EVENT_WEIGHTS"]``). A third counts each candidate's own
    shoppers, so that a product everyone views does not top every list: the score is a weighted cosine of
    co-occurrence, ``weighted co-count / sqrt(shoppers of this product * shoppers of the other)``.

    Args:
        product_pk: the product's primary key.
        k: how many products.
        fill: fill up to ``k`` with similar products (off where the page shows those apart).

    Returns:
        up to ``k`` hits: co-occurring products first (``co_viewed`` signal: how many shoppers did
        both), then, with ``fill``, products similar to it by vector (``similar`` signal: cosine), the cold start.
    """
    if k <= 0:
        return []
    pk = str(product_pk)
    scores, together = _co_occurrence(pk)
    order = sorted(scores, key=lambda other: (-scores[other], other))
    hits = [
        SearchHit(
            product_pk=other,
            product=product,
            score=scores[other],
            signals={CO_VIEWED: float(together[other])},
            explanation={CO_VIEWED: 1.0},
        )
        for other, product in _products(order)
    ][:k]
    if fill and len(hits) < k:
        try:
            product = get_adapter().get_queryset().filter(pk=product_pk).first()
        except (ValueError, ValidationError):  # not a pk of the product model: nothing is like it
            product = None
        if product is not None:
            taken = {hit.product_pk for hit in hits} | {pk}
            for hit in similar_products(product, k=k + len(taken)):
                if len(hits) >= k:
                    break
                if hit.product_pk not in taken:
                    hits.append(_hit(hit.product_pk, hit.product, hit.score, SIMILAR))
    return hits


def popular_products(
    *,
    k: int,
    category: str | None = None,
    days: int = 30,
    exclude: Collection[Any] = (),
    prefetch: bool = True,
    fields: tuple[str, ...] | None = None,
) -> list[SearchHit]:
    """The most interacted-with products of the last ``days``, for visitors without a history.

    Events count with their kind's weight (``PERSONALISATION["EVENT_WEIGHTS"]``). When fewer than ``k``
    products have events, the newest products fill the list.

    Args:
        k: how many products.
        category: category path; only products in it (or below), as indexed for the current encoder.
        days: the window, ending now.
        exclude: product pks never returned.
        prefetch, fields: as ``search.rank_products``'s: False loads the products without the adapter
            queryset's ``prefetch_related``, ``fields`` only those model fields (a search page of price
            words alone filters a thousand of them and shows 24: ``prefetch_products`` loads those).

    Returns:
        up to ``k`` hits (``popular`` signal: weighted event count; ``newest`` for the filling); empty
        only when no product (in the category) is left to show.
    """
    if k <= 0:
        return []
    excluded = {str(pk) for pk in exclude}
    ranking = _popular_ranking(category, days)
    wanted = [(pk, score) for pk, score in ranking if pk not in excluded][: 2 * (k + 10)]  # some may be off sale
    scores = dict(wanted)
    loaded = _products(list(scores), prefetch=prefetch, fields=fields)
    hits = [_hit(pk, product, scores[pk], POPULAR) for pk, product in loaded][:k]
    return _fill_newest(hits, k, excluded, category, prefetch=prefetch, fields=fields)


def popularity(category: str | None = None, days: int = 30) -> dict[str, float]:
    """product pk -> its weighted events of the last ``days`` (in the category), for the ``POPULAR_POOL``
    most interacted-with products (cached as ``popular_products``' ranking); the others have none."""
    return dict(_popular_ranking(category, days))


def _popular_ranking(category: str | None, days: int) -> list[tuple[str, float]]:
    """The ``POPULAR_POOL`` most interacted-with products of the window, best first: one aggregate over the
    window's events, kept in the default cache for ``PERSONALISATION["POPULAR_CACHE_SECONDS"]`` (0: not
    kept), so that a home page does not count a month of events on every view."""
    seconds = int(search_settings.PERSONALISATION["POPULAR_CACHE_SECONDS"])
    key = "mmsearch:popular:" + hashlib.sha1(f"{category}|{days}".encode()).hexdigest()
    if seconds > 0:
        cached = cache.get(key)
        if cached is not None:
            return [(str(pk), float(score)) for pk, score in cached]
    events = ShopperEvent.objects.filter(created_at__gte=timezone.now() - timedelta(days=days))
    if category:
        events = events.filter(product_pk__in=_in_category(category))
    rows = (
        events.values("product_pk")
        .annotate(score=Sum(_kind_weight()))
        .filter(score__gt=0)
        .order_by("-score", "product_pk")[:POPULAR_POOL]
    )
    ranking = [(str(row["product_pk"]), float(row["score"])) for row in rows]
    if seconds > 0:
        cache.set(key, ranking, seconds)
    return ranking


def popular_in_category_for(product: Any, *, k: int, days: int = 30) -> list[SearchHit]:
    """Popular products in ``product``'s deepest category (itself left out), for anonymous visitors;
    the whole catalogue's when it has none."""
    categories = get_adapter().get_categories(product)
    category = max(categories, key=len) if categories else None
    return popular_products(k=k, category=category, days=days, exclude=[product.pk])


# --- internals -------------------------------------------------------------------------------------


def _hit(pk: str, product: Any, score: float, source: str) -> SearchHit:
    return SearchHit(product_pk=pk, product=product, score=score, signals={source: score}, explanation={source: 1.0})


def _event_weights() -> Mapping[str, float]:
    return {kind: float(w) for kind, w in search_settings.PERSONALISATION["EVENT_WEIGHTS"].items()}


def _kind_weight() -> Case:
    """The event's kind weight as an SQL expression (0 for kinds without one)."""
    whens = [When(kind=kind, then=Value(weight)) for kind, weight in _event_weights().items()]
    return Case(*whens, default=Value(0.0), output_field=FloatField())


def _shopper() -> Case:
    """Who did an event, as SQL: ``u<user id>``, else ``s<session hash>`` (NULL: neither known)."""
    return Case(
        When(user__isnull=False, then=Concat(Value("u"), Cast("user_id", CharField()))),
        When(~Q(session=""), then=Concat(Value("s"), F("session"))),
        default=None,
        output_field=CharField(),
    )


def _co_occurrence(pk: str) -> tuple[dict[str, float], dict[str, int]]:
    """Scores (cosine of co-occurrence) and shopper counts of the products co-occurring with ``pk``."""
    weights = _event_weights()
    latest = ShopperEvent.objects.filter(product_pk=pk).order_by("-created_at")[:SHOPPER_EVENTS]
    owners: dict[str, str] = {}  # session -> its shopper: the signed-in user seen with it, else itself
    users: set[int] = set()
    for user, session in latest.values_list("user_id", "session"):
        if user is not None:
            users.add(user)
        if session and (user is not None or session not in owners):
            owners[session] = f"u{user}" if user is not None else f"s{session}"
    if not users and not owners:
        return {}, {}
    rows = (
        ShopperEvent.objects.filter(Q(user_id__in=users) | Q(session__in=list(owners)))
        .exclude(product_pk=pk)
        .order_by("-created_at")
        .values_list("product_pk", "kind", "user_id", "session")[:CO_EVENTS]
    )
    strongest: dict[str, dict[str, float]] = defaultdict(dict)  # product -> shopper -> weight
    for other, kind, user, session in rows:
        shopper = f"u{user}" if user in users else owners.get(session)
        weight = weights.get(kind, 0.0)
        if shopper is not None and weight > 0:
            by = strongest[str(other)]
            by[shopper] = max(weight, by.get(shopper, 0.0))
    together = {other: len(by) for other, by in strongest.items()}
    weighted = {other: sum(by.values()) for other, by in strongest.items()}
    best = sorted(weighted, key=lambda other: (-weighted[other], other))[:CO_CANDIDATES]
    popularity = _shopper_counts([*best, pk])
    mine = max(popularity.get(pk, 0), len({f"u{user}" for user in users} | set(owners.values())), 1)
    scores = {
        other: weighted[other] / math.sqrt(mine * max(popularity.get(other, 0), together[other], 1)) for other in best
    }
    return scores, {other: together[other] for other in best}


def _shopper_counts(pks: Iterable[str]) -> dict[str, int]:
    """Distinct shoppers of each product (all time; the product_pk index bounds the read)."""
    rows = (
        ShopperEvent.objects.filter(product_pk__in=list(pks))
        .values("product_pk")
        .annotate(shoppers=Count(_shopper(), distinct=True))
    )
    return {str(row["product_pk"]): int(row["shoppers"]) for row in rows}


def _in_category(category: str) -> Any:
    """The pks indexed for the current encoder in ``category`` (or below), as a subquery."""
    _encoder, model_id = current_encoder()
    return ProductEmbedding.objects.filter(model_id=model_id, categories__contains=[category]).values("product_pk")


def _fill(hits: list[SearchHit], k: int, excluded: set[str], category: str | None) -> list[SearchHit]:
    """``hits`` filled to ``k`` with popular products not in them or ``excluded``."""
    if len(hits) >= k:
        return hits
    taken = excluded | {hit.product_pk for hit in hits}
    return hits + popular_products(k=k - len(hits), category=category, exclude=taken)


def _fill_newest(
    hits: list[SearchHit],
    k: int,
    excluded: set[str],
    category: str | None,
    *,
    prefetch: bool = True,
    fields: tuple[str, ...] | None = None,
) -> list[SearchHit]:
    """``hits`` filled to ``k`` with the newest products (in ``category``) not in them or ``excluded``
    (``prefetch``, ``fields``: as :func:`popular_products`)."""
    if len(hits) >= k:
        return hits
    taken = excluded | {hit.product_pk for hit in hits}
    adapter = get_adapter()
    products = adapter.get_queryset()
    if category:
        products = products.filter(pk__in=[pk for pk in _in_category(category).values_list("product_pk", flat=True)])
    names = {f.name for f in adapter.get_model()._meta.get_fields()}
    products = products.order_by(*(["-created_at"] if "created_at" in names else []), "-pk")
    products = lean_queryset(products, prefetch=prefetch, fields=fields)
    filling: list[SearchHit] = []
    for product in products[: k - len(hits) + len(taken)]:
        if str(product.pk) not in taken and len(hits) + len(filling) < k:
            filling.append(_hit(str(product.pk), product, 0.0, NEWEST))
    return hits + filling
