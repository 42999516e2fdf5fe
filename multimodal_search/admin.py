"""Admin: the index health page, the vector rows, the search playground and a re-index action for any product admin.

Staff who may view the vectors (``view_productembedding`` or ``view_indexstate``) or re-index see
the index pages; re-indexing needs the ``multimodal_search.reindex_products`` permission (superusers
have it), else 403. Every page goes through ``admin_site.admin_view``: anonymous users are sent to
the login page. Nothing here encodes or trains in the request: re-indexing is sent to the worker and
retraining is a command (``mmsearch_train``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from multimodal_search import services
from multimodal_search.conf import search_settings
from multimodal_search.models import (
    REINDEX_PERMISSION,
    IndexState,
    InferredFacets,
    ProductEmbedding,
    QueryRule,
    SynonymRule,
)
from multimodal_search.refinements import price_label

VIEW_PERMISSIONS = ("multimodal_search.view_productembedding", "multimodal_search.view_indexstate")
SCOPE_LABELS = {
    "stale": "stale and never-indexed",
    "failed": "failed",
    "all": "all",
    "selected": "selected",
}


def can_reindex(request: HttpRequest) -> bool:
    """True when the signed-in user may re-index and retrain."""
    return bool(request.user.is_active and request.user.has_perm(REINDEX_PERMISSION))


def can_view(request: HttpRequest) -> bool:
    """True when the signed-in user may look at the index pages (view-only staff included)."""
    user = request.user
    return bool(
        user.is_active and user.is_staff and (can_reindex(request) or any(map(user.has_perm, VIEW_PERMISSIONS)))
    )


def _queue(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, scope: str, pks: Sequence[str] = ()) -> None:
    if not can_reindex(request):
        raise PermissionDenied("You need the permission to reindex the search index.")
    try:
        sent = services.reindex(scope, pks)
    except services.EnqueueError as exc:  # broker down: say so instead of a 500; the sweep sends them later
        modeladmin.message_user(request, f"Could not queue the products: {exc}", messages.ERROR)
        return
    if sent is None:  # a large catalogue: walked on the worker
        modeladmin.message_user(
            request,
            "The worker walks the catalogue (a deep sweep) and queues the stale and never-indexed products it "
            "finds; they show as pending here as they are queued.",
            messages.SUCCESS,
        )
        return
    modeladmin.message_user(request, f"Queued {sent} product(s) for re-indexing.", messages.SUCCESS)


@admin.action(description="Re-index selected products (worker)")
def reindex_selected(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]) -> None:
    """Enqueue indexing tasks for the selected products and report the count (needs the reindex permission)."""
    _queue(modeladmin, request, "selected", [str(pk) for pk in queryset.values_list("pk", flat=True)])


@admin.action(description="Re-index the products of the selected rows (worker)")
def reindex_rows(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]) -> None:
    """The vector rows' action: enqueue their products (needs the reindex permission)."""
    _queue(modeladmin, request, "selected", sorted(set(queryset.values_list("product_pk", flat=True))))


class _ViewOnly:
    """Index pages: view-only staff may look, nobody adds, edits or deletes rows."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view(request)


_page = threading.local()  # the product cards of the change list being rendered


VECTOR_FIELDS = ["text_vector", "title_vector", "image_vector", "fused_vector", "pool_vector"]


@admin.register(ProductEmbedding)
class ProductEmbeddingAdmin(_ViewOnly, admin.ModelAdmin):
    """The stored vector rows, one per product and encoder version, shown with their product."""

    list_display = ["thumbnail", "product", "sku", "version", "image_count", "updated_at"]
    list_display_links = ["product"]
    actions = [reindex_rows]
    list_filter = ["model_id"]
    search_fields = ["product_pk"]  # shows the search box; get_search_results searches pk, SKU and words
    readonly_fields = [
        "product_pk",
        "model_id",
        "content_hash",
        "image_count",
        "categories",
        "fields",
        "inferred_facets",
        "search_text",
        "updated_at",
    ]
    exclude = VECTOR_FIELDS
    change_list_template = "admin/multimodal_search/productembedding/change_list.html"

    @admin.display(description="Encoder version", ordering="model_id")
    def version(self, row: ProductEmbedding) -> str:
        """The head's part of the encoder version, the whole id on hover: the whole one (about 50 characters)
        wrapped onto five lines and pushed "Updated at" off a 1280-pixel screen."""
        return format_html(
            '<span title="{}" style="white-space:nowrap">{}</span>', row.model_id, row.model_id.rsplit("/", 1)[-1]
        )

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # product order, not text order: "2" before "10" (shorter digit strings first), then the encoder
        return [Length("product_pk"), "product_pk", "model_id"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # a page of 100 rows needs none of their vectors (five 384-d halfvecs a row)
        return super().get_queryset(request).defer(*VECTOR_FIELDS)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> tuple[Any, bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(services.vector_rows_matching(search_term)), False

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        _page.cards = services.product_cards([row.product_pk for row in changelist.result_list])
        return changelist

    def _card(self, obj: ProductEmbedding) -> dict[str, Any]:
        cards = getattr(_page, "cards", None)
        if cards is None or obj.product_pk not in cards:
            cards = services.product_cards([obj.product_pk])  # a detail page, or a product made unsearchable
        return cards.get(obj.product_pk) or {}

    @admin.display(description="Inferred facets")
    def inferred_facets(self, obj: ProductEmbedding) -> str:
        """What the attribute classifiers inferred (``mmsearch_train``), kept apart from the row's fields."""
        row = InferredFacets.objects.filter(product_pk=obj.product_pk, model_id=obj.model_id).first()
        facets = {key: value for key, value in (row.inferred if row else {}).items() if value is not None}
        return json.dumps(facets, sort_keys=True) if facets else "-"

    @admin.display(description="Photo")
    def thumbnail(self, obj: ProductEmbedding) -> str:
        image = self._card(obj).get("image")
        return format_html('<img src="{}" alt="" style="height:48px">', image) if image else ""

    @admin.display(description="Product", ordering="product_pk")
    def product(self, obj: ProductEmbedding) -> str:
        return str(self._card(obj).get("title") or f"#{obj.product_pk} (not searchable)")

    @admin.display(description="SKU")
    def sku(self, obj: ProductEmbedding) -> str:
        return str(self._card(obj).get("sku") or "")

    def get_urls(self) -> list[Any]:
        return [
            path("try/", self.admin_site.admin_view(self.try_view), name="multimodal_search_try")
        ] + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "index_status": services.index_status()}
        return super().changelist_view(request, extra_context)

    def try_view(self, request: HttpRequest) -> HttpResponse:
        """The search playground: text, photo or both, a category; the default method beside another one.

        GET for words only, POST (multipart) with a photo. Each result shows its signals, fused
        score and explanation; the query as expanded by synonyms, and what the words asked beside
        their meaning (a price, a size, an order, what to leave out, a product code), above the results.
        """
        if not can_view(request):
            raise PermissionDenied("You need the permission to view the search index.")
        data = request.POST if request.method == "POST" else request.GET
        query = data.get("q", "").strip()
        category = data.get("category", "").strip() or None
        default = str(search_settings.FUSION["METHOD"])
        other = data.get("method") or next((m for m in services.METHODS if m != default), default)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Search playground",
            "q": query,
            "category": category or "",
            "default_method": default,
            "method": other,
            "methods": services.METHODS,
            "opts": self.model._meta,
        }
        upload = request.FILES.get("photo")
        submitted = request.method == "POST" or "q" in request.GET
        if services.has_null_characters(data):
            context["error"] = "The request contains null characters."  # as the storefront and the API say
        elif len(query) > services.MAX_QUERY_CHARS:
            context["error"] = (
                f"Use at most {services.MAX_QUERY_CHARS} characters, as the storefront's search box does."
            )
        elif query or upload:
            try:
                photo = services.open_photo(upload) if upload else None
                context["columns"] = [
                    self._column(query, photo, category, method) for method in dict.fromkeys([default, other])
                ]
            except services.SearchError as exc:
                context["error"] = str(exc)
        elif submitted:
            context["error"] = "Type some words or choose a photo."
        status = 400 if context.get("error") else 200
        return TemplateResponse(request, "admin/multimodal_search/try.html", context, status=status)

    def _column(self, query: str, photo: Any, category: str | None, method: str) -> dict[str, Any]:
        # the words read as the storefront and the API read them (price, size, what they leave out, a code),
        # without the storefront's relevance cut, so always in relevance order (an order the words ask for,
        # "cheap", would put what the cut leaves out first)
        # every variant a row of its own: each one's rank and reasons are what the playground is for
        response = services.browse_products(
            query or None,
            photo,
            category=category,
            method=method,
            page_size=20,
            sort=services.RELEVANCE,
            group_variants=False,
        )
        # ``method`` is what was asked for; ``response.method`` what ran (rerank without a trained re-ranker: feature)
        price = price_label(response.price_min, response.price_max) if response.query.get("price") else None
        return {
            "method": method,
            "response": response,
            "results": [{**hit.as_dict(), "why": _signal_rows(hit.signals, hit.explanation)} for hit in response.hits],
            "price": price,  # the price the words named ("Under $60")
            # whether the words asked more than their meaning: a price, size, order, exclusion or product code
            "read": any(key in response.query for key in ("searched", "code", "browse", "parts", "flags")),
        }


def _signal_rows(
    signals: Mapping[str, float], explanation: Mapping[str, float]
) -> list[tuple[str, float | None, float | None]]:
    """``(signal, value, share of the score)`` per signal of one result, the largest share first (a
    signal the score does not read has no share; one the explanation alone names has no value): one
    cell of the playground, so that two methods' tables fit side by side."""
    names = sorted(set(signals) | set(explanation), key=lambda name: (-float(explanation.get(name, -1.0)), name))
    return [(name, signals.get(name), explanation.get(name)) for name in names]


@admin.register(IndexState)
class IndexHealthAdmin(_ViewOnly, admin.ModelAdmin):
    """The index health page (the admin index's "Index states" entry) and its re-index actions."""

    def get_urls(self) -> list[Any]:
        return [
            path(
                "reindex/",
                self.admin_site.admin_view(require_POST(self.reindex_view)),
                name="multimodal_search_reindex",
            ),
            path(
                "retrain/",
                self.admin_site.admin_view(require_POST(self.retrain_view)),
                name="multimodal_search_retrain",
            ),
        ] + super().get_urls()

    def retrain_view(self, request: HttpRequest) -> HttpResponse:
        """POST: send ``mmsearch_train`` to the worker (the reindex permission covers retraining)."""
        if not can_reindex(request):
            raise PermissionDenied("You need the permission to reindex and retrain the search index.")
        try:
            services.enqueue_retrain()
        except services.EnqueueError as exc:
            messages.error(request, f"Retraining was not started: {exc}.")
        else:
            messages.success(
                request,
                "Retraining was sent to the worker. It takes minutes; \u201cTraining last ran\u201d changes when it is done.",
            )
        return HttpResponseRedirect(reverse("admin:multimodal_search_indexstate_changelist"))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Counts, queue depth, recent errors, versions and trained artefacts; the re-index buttons."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        health = services.index_health()
        context = {
            **self.admin_site.each_context(request),
            "title": "Index health",
            "opts": self.model._meta,
            "health": health,
            "can_reindex": can_reindex(request),
            "working": bool(health.pending or any((health.queue_depth or {}).values())),
            "scopes": [(scope, label) for scope, label in SCOPE_LABELS.items() if scope != "selected"],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/multimodal_search/health.html", context)

    def reindex_view(self, request: HttpRequest) -> HttpResponse:
        """POST ``scope`` (stale, failed, all): mark those products dirty and send them to the worker."""
        if not can_reindex(request):
            raise PermissionDenied("You need the permission to reindex the search index.")
        scope = request.POST.get("scope", "")
        if scope not in SCOPE_LABELS or scope == "selected":
            messages.error(request, f"Unknown re-index scope {scope!r}.")
        else:
            _queue(self, request, scope)
        return HttpResponseRedirect(reverse("admin:multimodal_search_indexstate_changelist"))


@admin.register(SynonymRule)
class SynonymRuleAdmin(admin.ModelAdmin):
    """Synonyms added to the ``SYNONYMS`` setting's groups; a save takes effect at the next search."""

    list_display = ("terms", "kind", "active", "updated_at")
    list_editable = ("active",)
    list_filter = ("kind", "active")
    search_fields = ("terms",)


@admin.register(QueryRule)
class QueryRuleAdmin(admin.ModelAdmin):
    """Pin, boost, bury or hide a product for a query (and queries that mean the same)."""

    list_display = ("query", "action", "product_pk", "position", "places", "similarity", "active", "updated_at")
    list_editable = ("active",)
    list_filter = ("action", "active")
    search_fields = ("query", "product_pk")
