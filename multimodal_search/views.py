from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from multimodal_search import services
from multimodal_search.forms import SearchForm, has_null_characters


@require_http_methods(["GET", "HEAD", "POST"])
def search_page(request: HttpRequest) -> HttpResponse:
    """Visitors' search page: text box, photo upload, results grid with explanations.

    Results below the storefront's relevance cut (``RELEVANCE["STOREFRONT_MIN"]``) are left out, and
    the page says so when nothing matches exactly ("related") or nothing passes ("none").
    """
    context: dict[str, Any] = {"form": SearchForm(), "response": None, "request_error": None}
    if request.method == "POST":
        try:  # an oversized body is refused from its header, before it is read
            services.check_upload_length(request.META.get("CONTENT_LENGTH"))
        except services.SearchError as exc:
            context["request_error"] = str(exc)
            return render(request, "multimodal_search/search.html", context, status=413)
    if has_null_characters(request.GET) or (request.method == "POST" and has_null_characters(request.POST)):
        context["request_error"] = "The request contains null characters."
        return render(request, "multimodal_search/search.html", context, status=400)
    submitted = request.method == "POST" or bool(request.GET.get("q"))
    form = SearchForm(request.POST or request.GET or None, request.FILES or None) if submitted else SearchForm()
    context["form"] = form
    if submitted and form.is_valid():
        try:
            context["response"] = services.search_products(
                form.cleaned_data.get("q") or None,
                form.cleaned_data.get("image"),
                k=form.cleaned_data.get("k") or 24,
                category=form.cleaned_data.get("category") or None,
                min_relevance=services.storefront_min_relevance(),
            )
            context["results"] = [hit.as_dict() for hit in context["response"].hits]
        except services.SearchError as exc:
            form.add_error(None, str(exc))
    status = 400 if submitted and form.errors else 200
    return render(request, "multimodal_search/search.html", context, status=status)
