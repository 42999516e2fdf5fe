from __future__ import annotations

from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from multimodal_search import services


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=500, label="Search")
    image = forms.ImageField(required=False, label="Photo")
    category = forms.CharField(required=False, max_length=1000, widget=forms.HiddenInput)
    k = forms.IntegerField(
        required=False, min_value=services.MIN_K, max_value=services.MAX_K, initial=24, widget=forms.HiddenInput
    )

    def clean_image(self) -> UploadedFile | None:
        image = self.cleaned_data.get("image")
        if image:
            try:
                services.check_photo_size(image.size)
            except services.SearchError as exc:
                raise forms.ValidationError(str(exc)) from None
        return image

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            services.check_query(data.get("q"), bool(data.get("image")))
        except services.SearchError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data
