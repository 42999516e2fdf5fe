"""The API's OpenAPI 3 description (drf-spectacular): answer shapes, the schema and docs views.

The views build their answers as dicts; the serializers here only describe those dicts for the
schema (``extend_schema`` in ``views.py``). The schema lists the versioned paths (``/api/v1/...``);
the unversioned ones are the same views. Swagger UI and Redoc take their assets from where
``SPECTACULAR_SETTINGS`` says (the demo project: ``"SIDECAR"``, i.e. ``drf-spectacular-sidecar``'s
static files, nothing from a CDN).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from multimodal_search import services
from multimodal_search.api.errors import MultimodalAPIView

API_VERSION = "v1"
TITLE = "Multimodal product search API"

SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": TITLE,
    "VERSION": API_VERSION,
    "DESCRIPTION": (
        "Search products by text, by photo or both, and find similar products. Every path also answers "
        f"without the `/{API_VERSION}` prefix. A parameter an endpoint does not take is a 400 "
        "(`unknown_parameter`). Every error has the body "
        '`{"error": {"code": ..., "message": ..., "field": ...}}`.'
    ),
    # a multipart photo upload as a binary string in requests
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["multimodal_search.api.schema.versioned_endpoints"],
}


def versioned_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Only the ``/v1/`` copy of each operation (the unversioned paths are the same views)."""
    return [endpoint for endpoint in endpoints if f"/{API_VERSION}/" in endpoint[0]]


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Stable, for programs: `invalid`, `not_found`, `unknown_parameter`...")
    message = serializers.CharField(help_text="A sentence for people.")
    field = serializers.CharField(allow_null=True, help_text="The request parameter at fault, or null.")


class ErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


class BecauseSerializer(serializers.Serializer[Any]):
    product = serializers.CharField(help_text="The id of the recent product this result most resembles.")
    kind = serializers.CharField(help_text="What the shopper did with it: view, click, cart or purchase.")
    title = serializers.CharField()


class PersonalSerializer(serializers.Serializer[Any]):
    affinity = serializers.FloatField(help_text="Cosine of the product with the caller's profile.")
    moved_up = serializers.IntegerField(help_text="Places the profile moved it up (0: none).")
    because = BecauseSerializer(required=False, help_text="When it moved up 3 places or more.")


class VariantSerializer(serializers.Serializer[Any]):
    """Another product of a result's group; the shop's adapter may add ``price`` and ``color``."""

    sku = serializers.CharField()
    title = serializers.CharField()
    url = serializers.CharField()
    image = serializers.CharField()


class SearchHitSerializer(serializers.Serializer[Any]):
    """One result: the stable keys; the shop's adapter may add more (the demo: price, color, category)."""

    sku = serializers.CharField()
    title = serializers.CharField()
    url = serializers.CharField(help_text="The product page (may be empty).")
    image = serializers.CharField(help_text="URL of the product's first photo, or empty.")
    score = serializers.FloatField(help_text="The fused score the results are ordered by.")
    relevance = serializers.FloatField(
        allow_null=True, help_text="Calibrated probability (0-1) that the product is what was asked for."
    )
    explanation = serializers.DictField(
        child=serializers.FloatField(), help_text="Each signal's share of the score (they add up to 1, or all 0)."
    )
    signals = serializers.DictField(child=serializers.FloatField(), help_text="Each signal's raw value.")
    personal = PersonalSerializer(
        required=False,
        help_text="Only in a signed-in caller's personalised search: what their own profile did to this result.",
    )
    variants = VariantSerializer(
        many=True,
        required=False,
        help_text="Only when results are grouped (`group`): the other products of this one's group (its other "
        "colours) that the search and filters found, in their order.",
    )


class SearchQueryEchoSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(allow_null=True)
    corrected = serializers.CharField(
        required=False,
        help_text="The words searched when one the catalogue never uses was read as its nearest word "
        "(`hoddie` -> `hoodie`); `as_typed=true` searches them as typed.",
    )
    code = serializers.CharField(
        required=False,
        help_text="The words, when they are a product code that products have (`MH07-Gray`, or a parent sku "
        "such as `MH07`, case aside): those products come first, relevance 1.",
    )
    expanded = serializers.CharField(required=False, help_text="The text as searched, when expanded.")
    unsold = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The words that name a kind of goods the catalogue has no word for (`red dress` in a shop "
        'without dresses: `["dress"]`): no product\'s name, department or facet uses them (a description may: '
        '"fits your yoga mat"), and none of the words searched (with synonyms and expansions) is one of its '
        "kinds or a kind of them; then the words no product's text and no dictionary has (a brand the shop "
        'does not carry: `adidas hoodie`: `["adidas"]`). The results are similar items: `match` is at most '
        "`related`.",
    )
    searched = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="The words searched, when a price phrase, a price-order word, a size or an exclusion was taken "
        'out of them; null when nothing is left to search ("under 50"), or, with a photo, when the words only '
        'point at it ("like this photo": the photo\'s own ranking).',
    )
    sort = serializers.CharField(
        required=False, help_text="The order the words asked for (`cheap wool`: `price_asc`), when no sort was given."
    )
    price = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        required=False,
        help_text="The price range named in the words (`min`, `max`), when one was.",
    )
    cheaper_than = serializers.CharField(
        required=False,
        help_text="With a photo, words that ask for a lower price (`like this but cheaper`): the SKU of the product "
        "photographed, when the photo is likely it. `price.max` is then its price, and the results are its "
        "look-alikes under it, of its kind first, in the photo's order (otherwise the cheapest first).",
    )
    pricier_than = serializers.CharField(
        required=False,
        help_text="With a photo, words that ask for a higher price (`like this but more expensive`, `pricier`): the "
        "SKU of the product photographed, when the photo is likely it. `price.min` is then its price, and the results "
        "are its look-alikes dearer than it, of its kind first, in the photo's order (otherwise the dearest first).",
    )
    size = serializers.CharField(
        required=False,
        help_text="The size named in the words (`leggings size m`), as the results state it (`M`), when no size "
        "`filter` was given and a result has it: the results are filtered to it and the words searched without it.",
    )
    excluded = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="What the words asked to leave out (`jacket not black`, `hoodie without a hood`, `shorts -white`): "
        '`["black"]`. Those products are not in the results and the words are searched without the phrase: a '
        "colour by the `color` facet, any other word by the product's text (`hood` also leaves out `hooded`).",
    )
    parts = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The kinds of product the words join (`hoodies and jackets`, `shorts or leggings`), when they join "
        'two to four the catalogue sells: `["hoodies", "jackets"]`. Each is searched on its own and the results '
        "are taken in turn (the first of each, then the second of each, ...), each with its own relevance.",
    )
    flags = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The products' flags the words name (`hoodies on sale`, `new tees`: attributes that are simply true, "
        '`{"sale": true}`): `["sale"]`. The results are those marked with it, when any of them is.',
    )
    browse = serializers.CharField(
        required=False,
        help_text="`popular` when the words named only a price, an order by price or a size (`under 50`, `cheapest`, "
        "`size m`): "
        "the results are the shop's most popular products, then its newest, in that price and order "
        "(`relevance` is then null).",
    )
    fallback = serializers.CharField(
        required=False,
        help_text="`every_word` when no result passed `min_relevance` and the results are the candidates whose "
        "text has every word searched (`winter` in a shop whose descriptions mention it); `match` is then `none`.",
    )
    read_as = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="With `fallback`, when a word searched is in no product's text and the results have every word "
        'of the words read with a synonym instead: those readings (`quarter zip` -> `["1/4 zip", "half zip"]`).',
    )
    image = serializers.BooleanField(help_text="Whether a photo was searched (the photo is never echoed).")
    photo_sold_here = serializers.BooleanField(
        required=False, help_text="Whether the photo looks like something the shop sells."
    )
    personalised = serializers.BooleanField(
        required=False, help_text="True when the results were re-ranked for the signed-in caller's own profile."
    )
    rules = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="The merchandising rules that fired (`id`, `action`, `product`, `matched`: words or meaning, "
        "`similarity`), when any did.",
    )


class FacetValueSerializer(serializers.Serializer[Any]):
    value = serializers.CharField()
    count = serializers.IntegerField(help_text="Results with this value, every other facet's filter applied.")
    selected = serializers.BooleanField(help_text="Whether this value is in the request's `filter`.")


class PriceRangeSerializer(serializers.Serializer[Any]):
    min = serializers.CharField(allow_null=True, help_text="Inclusive; null: open.")
    max = serializers.CharField(allow_null=True, help_text="Exclusive; null: open.")
    count = serializers.IntegerField(help_text="Results in this range, the facet filters applied.")
    selected = serializers.BooleanField(help_text="Whether this range is the price filter applied.")


class SearchResponseSerializer(serializers.Serializer[Any]):
    results = SearchHitSerializer(many=True)
    count = serializers.IntegerField(help_text="Results on this page.")
    total = serializers.IntegerField(
        help_text="Results over all pages (the filtered result set): products when `grouped`, else variants."
    )
    grouped = serializers.BooleanField(
        help_text="Whether each result stands for its group (its `variants` the others found; `group`)."
    )
    page = serializers.IntegerField()
    pages = serializers.IntegerField(help_text="How many pages the results fill (0: no result).")
    page_size = serializers.IntegerField()
    next = serializers.URLField(allow_null=True, help_text="The next page (GET), or null.")
    previous = serializers.URLField(allow_null=True, help_text="The previous page (GET), or null.")
    sort = serializers.ChoiceField(choices=list(services.SORTS))
    filters = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), help_text="The facet filters applied."
    )
    price_min = serializers.CharField(allow_null=True, help_text="The price filter applied (inclusive), or null.")
    price_max = serializers.CharField(allow_null=True, help_text="The price filter applied (exclusive), or null.")
    at_any_price = serializers.IntegerField(
        allow_null=True,
        help_text='With a price filter (a parameter, or the words\' "under 20"): the results at any price, the '
        "same words and facet filters applied (`total` 0 and this above 0: nothing in that price range); null "
        "without one.",
    )
    facets = serializers.DictField(
        child=FacetValueSerializer(many=True),
        help_text="Each facet's values with their counts (the facets the shop configured, in order).",
    )
    price_ranges = PriceRangeSerializer(many=True)
    match = serializers.ChoiceField(
        choices=["exact", "related", "none"], allow_null=True, help_text="How well the best results match."
    )
    min_relevance = serializers.FloatField(allow_null=True, help_text="The relevance cut applied, or null.")
    method = serializers.CharField(help_text="The fusion method used.")
    model_id = serializers.CharField(help_text="The encoder version that answered.")
    took_ms = serializers.FloatField()
    query = SearchQueryEchoSerializer()


class SimilarResponseSerializer(serializers.Serializer[Any]):
    results = SearchHitSerializer(many=True)
    count = serializers.IntegerField()


class IndexStatusSerializer(serializers.Serializer[Any]):
    model_id = serializers.CharField(help_text="The current encoder version.")
    products = serializers.IntegerField(help_text="Searchable products.")
    indexed = serializers.IntegerField(help_text="Products indexed for the current encoder.")
    missing = serializers.IntegerField()
    images = serializers.IntegerField(help_text="Photo vectors of the current encoder.")
    stale_encoders = serializers.IntegerField(help_text="Other encoder versions still holding vectors.")
    pending = serializers.IntegerField(help_text="Changed products waiting for a worker.")
    failed = serializers.IntegerField(help_text="Products given up on (see mmsearch_reconcile).")


class DocsViewMixin(MultimodalAPIView):
    """Errors of the schema and docs pages (405, 429...) in the API's JSON format, not as YAML or HTML."""

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(DocsViewMixin, SpectacularAPIView):
    """The OpenAPI 3 schema: YAML by default, JSON with ``?format=json`` or ``Accept: application/json``."""

    custom_settings = SCHEMA_SETTINGS


class SwaggerView(DocsViewMixin, SpectacularSwaggerView):
    title = TITLE
    url_name = "multimodal_search_api:schema"


class RedocView(DocsViewMixin, SpectacularRedocView):
    title = TITLE
    url_name = "multimodal_search_api:schema"
