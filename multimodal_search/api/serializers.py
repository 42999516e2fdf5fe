from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import UploadedFile
from PIL import Image
from rest_framework import serializers

from multimodal_search import services


class SearchQuerySerializer(serializers.Serializer[Any]):
    q = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    k = serializers.IntegerField(required=False, min_value=services.MIN_K, max_value=services.MAX_K, default=10)
    category = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")
    method = serializers.ChoiceField(choices=services.METHODS, required=False, allow_blank=True, default="")
    image = serializers.ImageField(required=False, allow_null=True)
    # a number from 0 to 1, or "auto" (the storefront's trained cut); absent or blank: every result
    min_relevance = serializers.CharField(required=False, allow_blank=True, max_length=20, default="")

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


class SimilarQuerySerializer(serializers.Serializer[Any]):
    k = serializers.IntegerField(required=False, min_value=services.MIN_K, max_value=services.MAX_K, default=8)
