"""``GET /api/v1/autocomplete/?q=...&limit=N``: products and categories for a search box while typing.

A prefix match on titles and category paths (``services.suggest``), not a search: no encoder runs.
Throttled like the other endpoints (the ``anon`` and ``user`` scopes).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from multimodal_search import services
from multimodal_search.api.views import BaseAPIView, _errors
from multimodal_search.services.suggest import MAX_LIMIT, MAX_PREFIX_LENGTH


class AutocompleteQuerySerializer(serializers.Serializer[Any]):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=MAX_PREFIX_LENGTH,
        default="",
        help_text="What is typed so far: every word must start a word of the title or category path, "
        "the last one may be unfinished (`chaz kang`). Empty: empty lists.",
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_LIMIT, default=8, help_text="At most this many of each."
    )


class SuggestedProductSerializer(serializers.Serializer[Any]):
    sku = serializers.CharField()
    title = serializers.CharField()
    url = serializers.CharField(help_text="The product's page.")
    image = serializers.CharField(help_text="Its main photo's URL (may be empty).")
    detail = serializers.CharField(
        help_text="What tells it from others of the same title: its colour, and its sku when the typed text "
        'starts a product code ("Blue · MH07-Blue"); may be empty.'
    )


class SuggestedCategorySerializer(serializers.Serializer[Any]):
    path = serializers.CharField(help_text='The category path ("Men > Tops > Hoodies & Sweatshirts").')
    count = serializers.IntegerField(help_text="Indexed products in it (its subcategories included).")
    query = serializers.CharField(
        help_text="The words to search within it: the typed words it did not match, else its name."
    )


class AutocompleteResponseSerializer(serializers.Serializer[Any]):
    products = SuggestedProductSerializer(many=True, help_text="Titles starting with the typed text first.")
    categories = SuggestedCategorySerializer(many=True)
    corrected = serializers.CharField(
        required=False,
        help_text="When nothing started with the typed words and one is a word no product uses: the words as "
        "the search reads them (`hoddie` -> `hoodie`), whose products and categories these are.",
    )


class AutocompleteView(BaseAPIView):
    """GET ?q=TEXT[&limit=N]: products whose title words start with the typed words, and categories."""

    @extend_schema(
        operation_id="autocomplete",
        summary="Products and categories as the shopper types",
        parameters=[AutocompleteQuerySerializer],
        responses={200: AutocompleteResponseSerializer, **_errors(400, 405, 429)},
    )
    def get(self, request: Request) -> Response:
        params = self.validated_query(request, AutocompleteQuerySerializer)
        try:
            found = services.suggest(params["q"], limit=params["limit"])
        except services.SearchError as exc:
            raise exceptions.ValidationError({"q": [str(exc)]}) from None
        return Response(found)
