from __future__ import annotations

import re
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import extend_schema_field
from PIL import Image
from rest_framework import serializers

from multimodal_search import services


def k_field(default: int, help_text: str) -> serializers.IntegerField:
    """The number of results an endpoint returns: ``MIN_K``..``MAX_K``, out of range is a 400."""
    return serializers.IntegerField(
        required=False, min_value=services.MIN_K, max_value=services.MAX_K, default=default, help_text=help_text
    )


def category_field(
    help_text: str = "Only products under this category path, e.g. `Men > Tops`; blank: the whole catalogue.",
) -> serializers.CharField:
    """A category path filter (optional, blank: none)."""
    return serializers.CharField(required=False, allow_blank=True, max_length=1000, default="", help_text=help_text)


class ChoiceField(serializers.ChoiceField):
    """A choice whose error names the choices: ``sort=foo`` answers '"foo" is not a valid choice; choose
    one of: relevance, price_asc, ...' (DRF's says only that it is not one)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        names = ", ".join(str(choice) for choice in self.choices)
        self.error_messages["invalid_choice"] = '"{input}" is not a valid choice; choose one of: ' + names + "."


@extend_schema_field({"type": "string", "pattern": r"^\d{1,10}(\.\d{1,2})?$", "nullable": True})
class PriceField(serializers.DecimalField):
    """A price: a plain decimal string, 0 or more (the schema says so, not only the validation)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=12, decimal_places=2, min_value=0, **kwargs)


@extend_schema_field({"type": "string", "pattern": r"^(auto|0|1|0?\.\d{1,6}|1\.0{1,6})?$"})
class MinRelevanceField(serializers.CharField):
    """``min_relevance``: a number from 0 to 1 or ``auto``; the schema's pattern lists the usual spellings."""


#: ``ordering`` (DRF's OrderingFilter spelling) -> ``sort``
ORDERING = {
    "relevance": "relevance",
    "price": "price_asc",
    "-price": "price_desc",
    "-created_at": "newest",
    "-popularity": "best_selling",
}


class SearchQuerySerializer(serializers.Serializer[Any]):
    # help_text: the OpenAPI schema's descriptions (api/schema.py)
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=services.MAX_QUERY_CHARS,
        default="",
        help_text="The words to search for.",
    )
    k = k_field(10, "How many results at most (never clamped: out of range is a 400).")
    category = category_field("Only products under this category path, e.g. `Men > Tops`.")
    method = ChoiceField(
        choices=services.METHODS,
        required=False,
        allow_blank=True,
        default="",
        help_text='The fusion method (README "Fusion methods"); blank: the configured default.',
    )
    image = serializers.ImageField(
        required=False, allow_null=True, help_text="A photo to search with (multipart POST only)."
    )
    # a number from 0 to 1, or "auto" (the storefront's trained cut); absent or blank: every result
    min_relevance = MinRelevanceField(
        required=False,
        allow_blank=True,
        max_length=20,
        default="",
        help_text="Drop results whose `relevance` is under this: a number from 0 to 1, or `auto` "
        "(the cut `mmsearch_train` chose; when no result passes it, the results whose text has every word "
        "searched are kept, and `query.fallback` says so); blank: keep every result.",
    )

    filter = serializers.ListField(
        child=serializers.CharField(max_length=1000),
        required=False,
        default=list,
        max_length=50,
        help_text="A facet filter `name:value`, e.g. `color:Black`; repeat it for more. Values of one facet "
        "are alternatives (any of them), facets all apply. The facets are in each answer's `facets`.",
    )
    price_min = PriceField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Only products at this price or more. With `price_max` absent too, a price in the words "
        "(`under 50`, `between 20 and 40`, `$30-$60`) is used instead and taken out of the searched text.",
    )
    price_max = PriceField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Only products under this price (exclusive).",
    )
    sort = ChoiceField(
        choices=services.SORTS,
        required=False,
        allow_null=True,
        default=None,
        help_text="The order of the results: by relevance, price up or down, newest first, or best sellers first "
        "(the most viewed, carted and bought of the last 30 days). Default: by relevance, or as the words ask "
        "(`cheap wool`: `price_asc`, `latest hoodies`: `newest`, `best selling bags`: `best_selling`; then "
        "`query.sort` says so). An order other than relevance sorts the likely matches first, then the similar "
        "items (a photo's of its kind before the others), each in that order.",
    )
    ordering = ChoiceField(
        choices=list(ORDERING),
        required=False,
        allow_blank=True,
        default="",
        help_text="DRF-style name of `sort`: `price` (= `price_asc`), `-price`, `-created_at` (= `newest`), "
        "`relevance`. Give one of the two.",
    )
    page = serializers.IntegerField(
        required=False, min_value=1, max_value=10_000, default=1, help_text="The page (from 1); past the last: empty."
    )
    page_size = serializers.IntegerField(
        required=False,
        min_value=services.MIN_K,
        max_value=services.MAX_K,
        allow_null=True,
        default=None,
        help_text="Results per page; absent: `k`.",
    )
    as_typed = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Search the words as typed. By default a word no product uses is read as the catalogue's "
        "nearest word (`hoddie` -> `hoodie`), and `query.corrected` is the text searched.",
    )
    group = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="One result per product (its colours and other variants: the shop's `group`), the best placed, "
        "with the others found as its `variants`; `total`, `pages` and the facet counts are then of products. "
        '`false`: every variant a result of its own. Absent: the shop\'s setting (`FACETS["GROUP_VARIANTS"]`, '
        "on by default).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("filter")
        if isinstance(field, serializers.ListField):  # the configured facet names, in the schema's pattern too
            names = "|".join(re.escape(name) for name in services.facet_names())
            field.child = serializers.RegexField(
                rf"^(?:{names}):.*\S",
                max_length=1000,
                error_messages={"invalid": f"Use `name:value`, the name one of: {', '.join(services.facet_names())}."},
            )
            field.child.bind(field_name="", parent=field)  # type: ignore[arg-type]  # as ListField.__init__ does

    def validate_filter(self, value: list[str]) -> dict[str, list[str]]:
        chosen: dict[str, list[str]] = {}
        for item in value:
            name, colon, facet_value = item.partition(":")
            if not colon or not name.strip() or not facet_value.strip():
                raise serializers.ValidationError(f"{item[:100]!r} is not `name:value`.", code="invalid")
            chosen.setdefault(name.strip(), []).append(facet_value.strip())
        return chosen

    def validate_min_relevance(self, value: str) -> float | str | None:
        value = value.strip().lower()
        if not value:
            return None
        if value == services.AUTO:
            return value
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        try:
            services.check_min_relevance(number)
        except services.SearchError as exc:
            raise serializers.ValidationError(str(exc), code="invalid") from None
        return number

    def validate_image(self, value: UploadedFile | None) -> Image.Image | None:
        """The decoded photo (upright, RGB, shrunk), or a clear error; the upload itself is not kept."""
        if value is None:
            return None
        try:
            return services.open_photo(value)
        except services.SearchError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_image") from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            services.check_query(attrs.get("q"), attrs.get("image") is not None)
        except services.SearchError as exc:
            raise serializers.ValidationError(str(exc)) from None
        ordering = attrs.pop("ordering", "")
        if ordering:
            if self.initial_data.get("sort") not in (None, "", ORDERING[ordering]):
                raise serializers.ValidationError({"ordering": ["Give `sort` or `ordering`, not both."]})
            attrs["sort"] = ORDERING[ordering]
        return attrs


class SearchTextQuerySerializer(SearchQuerySerializer):
    """The query string of ``GET /search/``: the same parameters, without the photo."""

    image = None  # type: ignore[assignment]


class SimilarQuerySerializer(serializers.Serializer[Any]):
    k = k_field(8, "How many similar products at most.")
