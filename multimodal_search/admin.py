"""Admin: index health, per-product vectors, a re-index action for any product admin, and a query tester.

All of it needs the ``multimodal_search.reindex_products`` permission (superusers have it): staff
without it see no index pages (403) and the re-index action refuses to run (403).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from multimodal_search import services
from multimodal_search.conf import search_settings
from multimodal_search.models import REINDEX_PERMISSION, ProductEmbedding


def can_reindex(request: HttpRequest) -> bool:
    """True when the signed-in user may re-index, retrain and see the index pages."""
    return bool(request.user.is_active and request.user.has_perm(REINDEX_PERMISSION))


@admin.action(description="Re-index selected products (worker)")
def reindex_selected(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]) -> None:
    """Enqueue indexing tasks for the selected products and report the count (needs the reindex permission)."""
    if not can_reindex(request):
        raise PermissionDenied("You need the permission to reindex the search index.")
    pks = [str(pk) for pk in queryset.values_list("pk", flat=True)]
    try:
        services.enqueue_index(pks, force=True)
    except services.EnqueueError as exc:  # broker down: say so instead of a 500
        modeladmin.message_user(request, f"Could not queue the products: {exc}", messages.ERROR)
        return
    modeladmin.message_user(request, f"Queued {len(pks)} product(s) for re-indexing.", messages.SUCCESS)


@admin.register(ProductEmbedding)
class ProductEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["product_pk", "model_id", "image_count", "updated_at"]
    list_filter = ["model_id"]
    search_fields = ["product_pk", "search_text"]
    readonly_fields = [
        "product_pk",
        "model_id",
        "content_hash",
        "image_count",
        "categories",
        "fields",
        "search_text",
        "updated_at",
    ]
    exclude = ["text_vector", "title_vector", "image_vector", "fused_vector"]
    change_list_template = "admin/multimodal_search/productembedding/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_reindex(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_reindex(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_reindex(request) and super().has_delete_permission(request, obj)

    def get_urls(self):
        return [
            path("try/", self.admin_site.admin_view(self.try_view), name="multimodal_search_try")
        ] + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "index_status": services.index_status()}
        return super().changelist_view(request, extra_context)

    def try_view(self, request: HttpRequest) -> HttpResponse:
        """Run a query with a chosen method and show every result's signals and explanation."""
        if not can_reindex(request):
            raise PermissionDenied("You need the permission to reindex the search index.")
        query = request.GET.get("q", "").strip()
        method = request.GET.get("method") or search_settings.FUSION["METHOD"]
        context = {
            **self.admin_site.each_context(request),
            "title": "Try a search",
            "q": query,
            "method": method,
            "methods": services.METHODS,
            "opts": self.model._meta,
        }
        if query:
            try:
                response = services.search_products(query, k=20, method=method)
                context["response"] = response
                context["results"] = [hit.as_dict() for hit in response.hits]
            except services.SearchError as exc:
                context["error"] = str(exc)
        return TemplateResponse(request, "admin/multimodal_search/try.html", context)
