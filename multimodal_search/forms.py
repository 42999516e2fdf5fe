from __future__ import annotations

from typing import Any

from django import forms
from PIL import Image

from multimodal_search import services
from multimodal_search.services import has_null_characters, null_character_parameter

__all__ = ["SearchForm", "has_null_characters", "null_character_parameter"]


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=services.MAX_QUERY_CHARS, label="Search")
    image = forms.ImageField(required=False, label="Photo")
    # the token of a photo kept by an earlier search (services.photo_tokens): refining it with words
    photo = forms.CharField(required=False, widget=forms.HiddenInput)  # its shape is checked by the service
    category = forms.CharField(required=False, max_length=1000, widget=forms.HiddenInput)
    k = forms.IntegerField(
        required=False, min_value=services.MIN_K, max_value=services.MAX_K, initial=24, widget=forms.HiddenInput
    )

    def clean_image(self) -> Image.Image | None:
        """The decoded photo (upright, RGB, shrunk), or a clear error; the upload itself is not kept."""
        upload = self.cleaned_data.get("image")
        if not upload:
            return None
        try:
            return services.open_photo(upload)
        except services.SearchError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("image") is None and data.get("photo"):  # a new upload replaces the kept photo
            try:
                data["image"] = services.load_photo(data["photo"])
            except services.SearchError as exc:
                self.add_error("photo", str(exc))
                return data
        try:
            services.check_query(data.get("q"), data.get("image") is not None)
        except services.SearchError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data
