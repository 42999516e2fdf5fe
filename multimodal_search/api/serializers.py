from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import UploadedFile
from PIL import Image
from rest_framework import serializers

from multimodal_search import services


def k_field(default: int, help_text: str) -> serializers.IntegerField:
    """The number of results an endpoint returns: ``MIN_K``..``MAX_K``, out of range is a 400."""
    return serializers.IntegerField(
        required=False, min_value=services.MIN_K, max_value=services.MAX_K, default=default, help_text=help_text
    )


class SearchQuerySerializer(serializers.Serializer[Any]):
    # help_text: the OpenAPI schema's descriptions (api/schema.py)
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=500, default="", help_text="The words to search for."
    )
    k = k_field(10, "How many results at most (never clamped: out of range is a 400).")
    category = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=1000,
        default="",
        help_text="Only products under this category path, e.g. `Men > Tops`.",
    )
    method = serializers.ChoiceField(
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
    min_relevance = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=20,
        default="",
        help_text="Drop results whose `relevance` is under this: a number from 0 to 1, or `auto` "
        "(the cut `mmsearch_train` chose); blank: keep every result.",
    )

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
        return attrs


class SearchTextQuerySerializer(SearchQuerySerializer):
    """The query string of ``GET /search/``: the same parameters, without the photo."""

    image = None  # type: ignore[assignment]


class SimilarQuerySerializer(serializers.Serializer[Any]):
    k = k_field(8, "How many similar products at most.")
