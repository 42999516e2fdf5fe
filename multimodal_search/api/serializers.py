from __future__ import annotations

from rest_framework import serializers

from multimodal_search.conf import search_settings
from multimodal_search.searching import METHODS


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    k = serializers.IntegerField(required=False, min_value=1, max_value=100, default=10)
    category = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")
    method = serializers.ChoiceField(choices=METHODS, required=False, allow_blank=True, default="")
    image = serializers.ImageField(required=False, allow_null=True)

    def validate_image(self, value):
        if value is not None and value.size > search_settings.MAX_UPLOAD_BYTES:
            raise serializers.ValidationError(
                f"Photo is larger than {search_settings.MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
            )
        return value

    def validate(self, attrs):
        if not attrs.get("q", "").strip() and not attrs.get("image"):
            raise serializers.ValidationError("Give a text query (q), a photo (image), or both.")
        return attrs
