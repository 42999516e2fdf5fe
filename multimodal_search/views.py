from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from multimodal_search import services
from multimodal_search.forms import SearchForm


def search_page(request: HttpRequest) -> HttpResponse:
    """Visitors' search page: text box, photo upload, results grid with explanations."""
    submitted = request.method == "POST" or bool(request.GET.get("q"))
    form = SearchForm(request.POST or request.GET or None, request.FILES or None) if submitted else SearchForm()
    context: dict[str, Any] = {"form": form, "response": None}
    if submitted and form.is_valid():
        try:
            image = services.open_photo(form.cleaned_data["image"]) if form.cleaned_data.get("image") else None
            context["response"] = services.search_products(
                form.cleaned_data.get("q") or None,
                image,
                k=form.cleaned_data.get("k") or 24,
                category=form.cleaned_data.get("category") or None,
            )
            context["results"] = [hit.as_dict() for hit in context["response"].hits]
        except services.SearchError as exc:
            form.add_error(None, str(exc))
    status = 400 if submitted and form.errors else 200
    return render(request, "multimodal_search/search.html", context, status=status)
