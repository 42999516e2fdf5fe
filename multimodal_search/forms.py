from __future__ import annotations

from django import forms

from multimodal_search.conf import search_settings


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=500, label="Search")
    image = forms.ImageField(required=False, label="Photo")
    category = forms.CharField(required=False, max_length=1000, widget=forms.HiddenInput)
    k = forms.IntegerField(required=False, min_value=1, max_value=100, initial=24, widget=forms.HiddenInput)

    def clean_image(self):
        image = self.cleaned_data.get("image")
        if image and image.size > search_settings.MAX_UPLOAD_BYTES:
            raise forms.ValidationError("That photo is too large.")
        return image

    def clean(self):
        data = super().clean()
        if not (data.get("q") or "").strip() and not data.get("image"):
            raise forms.ValidationError("Type what you are looking for, upload a photo, or both.")
        return data
