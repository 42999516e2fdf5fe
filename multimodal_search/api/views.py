from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import QueryDict
from django.urls import Resolver404, resolve, reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from multimodal_search import services
from multimodal_search.adapters import get_adapter
from multimodal_search.api.errors import MultimodalAPIView, RequestTooLarge
from multimodal_search.api.permissions import CanReindex
from multimodal_search.api.schema import (
    ErrorSerializer,
    IndexStatusSerializer,
    SearchResponseSerializer,
    SimilarResponseSerializer,
)
from multimodal_search.api.serializers import SearchQuerySerializer, SearchTextQuerySerializer, SimilarQuerySerializer
from multimodal_search.forms import null_character_parameter

MAX_IDENTIFIER_LENGTH = 255


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    meaning = {
        400: "A bad or unknown parameter, or a missing query.",
        401: "Not signed in.",
        403: "Not allowed.",
        404: "No such product.",
        405: "Another method.",
        413: "The body is too large.",
        415: "A body that is not a form.",
        429: "Too many requests (see `Retry-After`).",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=meaning[code]) for code in statuses}


def _payload(response: services.SearchPage, links: tuple[str | None, str | None]) -> dict[str, Any]:
    return {
        "results": [hit.as_dict() for hit in response.hits],
        "count": len(response.hits),
        "total": response.total,
        "grouped": response.grouped,
        "page": response.page,
        "pages": response.pages,
        "page_size": response.page_size,
        "next": links[0],
        "previous": links[1],
        "sort": response.sort,
        "filters": response.filters,
        "price_min": _money(response.price_min),
        "price_max": _money(response.price_max),
        "at_any_price": response.at_any_price,
        "facets": {
            name: [{"value": item.value, "count": item.count, "selected": item.selected} for item in values]
            for name, values in response.facets.items()
        },
        "price_ranges": [
            {"min": _money(item.minimum), "max": _money(item.maximum), "count": item.count, "selected": item.selected}
            for item in response.price_ranges
        ],
        "match": response.match,
        "min_relevance": response.min_relevance,
        "method": response.method,
        "model_id": response.model_id,
        "took_ms": round(response.took_ms, 2),
        "query": {
            key: value
            for key, value in response.query.items()
            if key
            in (
                "text",
                "corrected",
                "code",
                "expanded",
                "searched",
                "price",
                "cheaper_than",
                "pricier_than",
                "sort",
                "size",
                "excluded",
                "parts",
                "flags",
                "browse",
                "fallback",
                "read_as",
                "image",
                "photo_sold_here",
                "unsold",
                "rules",
            )
        },
    }


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _page_links(request: Request, page: services.SearchPage) -> tuple[str | None, str | None]:
    """The next and previous pages' URLs of a GET search (None: no such page, or a POST: send the form
    again with ``page``)."""
    if request.method != "GET":
        return None, None

    def link(number: int) -> str:
        params = request.query_params.copy()
        params["page"] = str(number)
        return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")

    following = link(page.page + 1) if page.page < page.pages else None
    previous = link(min(page.page - 1, page.pages)) if page.page > 1 and page.pages else None
    return following, previous


class BaseAPIView(MultimodalAPIView):
    """The app's API views: one error format, NUL bytes in any parameter refused up front, and unknown
    parameters refused (a misspelt ``min_relevanse`` would otherwise be silently ignored)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles first
        key = null_character_parameter(request.query_params)
        if key is not None:
            raise exceptions.ValidationError(
                {key.replace("\x00", "\\x00"): ["Null characters are not allowed."]},
                code="null_characters_not_allowed",
            )

    def validated_query(self, request: Request, serializer: type[serializers.Serializer[Any]]) -> dict[str, Any]:
        """The query string read by ``serializer``: unknown parameters and invalid values are a 400."""
        self.reject_unknown_parameters(request.query_params, serializer)
        found = serializer(data=request.query_params.dict())
        found.is_valid(raise_exception=True)
        return dict(found.validated_data)

    def lookup_product(self, identifier: str) -> Any:
        """The product a path's identifier (a SKU in the demo) names; a 404 naming it otherwise."""
        adapter = get_adapter()
        missing = exceptions.NotFound(f"No product {identifier[:100]!r}.")
        if "\x00" in identifier or len(identifier) > MAX_IDENTIFIER_LENGTH:
            raise missing
        try:
            return adapter.lookup(identifier)
        # get_model() is a concrete model; the django-stubs plugin removes DoesNotExist from the base Model
        except (adapter.get_model().DoesNotExist, ValueError, DjangoValidationError):  # type: ignore[attr-defined]
            raise missing from None

    def reject_unknown_parameters(self, names: Iterable[str], serializer: type[serializers.Serializer[Any]]) -> None:
        """A 400 naming the first of ``names`` that ``serializer`` (or DRF's ``?format=``) does not take."""
        known = list(serializer().fields)
        for name in names:
            if name not in known and name != api_settings.URL_FORMAT_OVERRIDE:
                takes = ", ".join(known) or "no parameters"
                raise exceptions.ValidationError(
                    {name: [f"Unknown parameter {name[:100]!r}; this endpoint takes: {takes}."]},
                    code="unknown_parameter",
                )

    def form_data(
        self,
        request: Request,
        serializer: type[serializers.Serializer[Any]],
        *,
        from_query: type[serializers.Serializer[Any]] | None = None,
    ) -> dict[str, Any]:
        """A posted form's fields for ``serializer``, unknown ones refused; the fields of ``from_query``
        (default ``serializer``) the form lacks may come in the query string; ``filter`` is a list."""
        # a plain dict: QueryDict.copy() would deep-copy the uploaded (temporary) file; no body: an empty form
        form = request.data if isinstance(request.data, QueryDict) else QueryDict()
        data: dict[str, Any] = {key: form[key] for key in form}
        self.reject_unknown_parameters([*data, *request.query_params], serializer)
        for key in list((from_query or serializer)().fields.keys()):
            if key not in data and key in request.query_params:
                data[key] = request.query_params[key]
        data["filter"] = form.getlist("filter") or request.query_params.getlist("filter")
        return data


class SearchView(BaseAPIView):
    """GET ?q=TEXT&k=N[&category=PATH][&method=M][&min_relevance=P|auto][&filter=NAME:VALUE...][&price_min=P]
    [&price_max=P][&sort=S][&page=N][&page_size=N]; POST multipart image (+ the same fields)."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="search",
        summary="Search by text",
        parameters=[SearchTextQuerySerializer],
        responses={200: SearchResponseSerializer, **_errors(400, 405, 429)},
    )
    def get(self, request: Request) -> Response:
        self.reject_unknown_parameters(request.query_params, SearchTextQuerySerializer)
        data: dict[str, Any] = request.query_params.dict()
        data["filter"] = request.query_params.getlist("filter")
        return self._search(request, data, SearchTextQuerySerializer)

    @extend_schema(
        operation_id="search_by_photo",
        summary="Search by photo, or photo and text",
        description="A form (multipart for a photo) with the same fields as the text search, plus `image`; "
        "any of them may also come in the query string. `next` and `previous` are null: send the form "
        "again with `page`.",
        request={
            "multipart/form-data": SearchQuerySerializer,
            "application/x-www-form-urlencoded": SearchQuerySerializer,
        },
        responses={200: SearchResponseSerializer, **_errors(400, 405, 413, 415, 429)},
    )
    def post(self, request: Request) -> Response:
        try:  # refuse an oversized body from its header, before any of it is read
            services.check_upload_length(request.META.get("CONTENT_LENGTH"))
        except services.SearchError as exc:
            raise RequestTooLarge(str(exc)) from None
        data = self.form_data(request, SearchQuerySerializer, from_query=SearchTextQuerySerializer)
        return self._search(request, data, SearchQuerySerializer)

    def _search(
        self,
        request: Request,
        data: dict[str, Any],
        serializer_class: type[SearchQuerySerializer],
        voice: bool = False,
    ) -> Response:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        params = serializer.validated_data
        user = request.user if request.user.is_authenticated else None
        # logged as the API's (README "Query analytics"): the session's key when it has one, never a new one
        session_key = getattr(getattr(request, "session", None), "session_key", None)
        try:
            with services.searcher(
                session_key=session_key, user_id=user.pk if user else None, source="api", voice=voice
            ):
                response = services.browse_products(
                    params.get("q") or None,
                    params.get("image"),
                    category=params.get("category") or None,
                    method=params.get("method") or None,
                    min_relevance=params.get("min_relevance"),
                    filters=params["filter"],
                    price_min=params.get("price_min"),
                    price_max=params.get("price_max"),
                    sort=params["sort"],
                    page=params["page"],
                    page_size=params.get("page_size") or params["k"],
                    as_typed=params["as_typed"],
                    group_variants=params.get("group"),
                    # an authenticated caller's own profile (never another's); anonymous calls: none
                    personal=services.taste_for(services.shopper_key(session_key=None, user_id=user.pk))
                    if user
                    else None,
                )
        except services.SearchError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(_payload(response, _page_links(request, response)))


class SimilarView(BaseAPIView):
    """GET /products/<identifier>/similar/?k=N: products that look and read like this one."""

    @extend_schema(
        operation_id="similar_products",
        summary="Products similar to one product",
        description="The products nearest to this one by its fused vector, one colour (variant) of each other "
        "product, the nearest; this product's own colours (its `group`) are left out.",
        parameters=[
            OpenApiParameter("identifier", str, OpenApiParameter.PATH, description="The product's SKU."),
            SimilarQuerySerializer,
        ],
        responses={200: SimilarResponseSerializer, **_errors(400, 404, 405, 429)},
    )
    def get(self, request: Request, identifier: str) -> Response:
        params = self.validated_query(request, SimilarQuerySerializer)
        product = self.lookup_product(identifier)
        hits = services.similar_products(product, k=params["k"])
        return Response({"results": [hit.as_dict() for hit in hits], "count": len(hits)})


class IndexStatusView(BaseAPIView):
    """GET: how many products are indexed, for which encoder (staff with the reindex permission)."""

    permission_classes = [CanReindex]

    @extend_schema(
        operation_id="index_status",
        summary="The index's health (staff with the reindex permission)",
        responses={200: IndexStatusSerializer, **_errors(400, 401, 403, 405, 429)},
    )
    def get(self, request: Request) -> Response:
        self.reject_unknown_parameters(request.query_params, serializers.Serializer)
        return Response(services.index_status())


class NotFoundView(MultimodalAPIView):
    """Any other path under the API: a JSON 404 in the one error format (any method)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        message = f"No API endpoint at {request.path[:200]!r}."
        if not request.path.endswith("/"):
            try:
                resolved = resolve(request.path + "/")
            except Resolver404:
                pass
            else:
                if resolved.url_name != "not_found":
                    message += f" Did you mean {request.path[:200] + '/'!r}?"
                    raise exceptions.NotFound(message)
        docs, schema_url = reverse("multimodal_search_api:docs"), reverse("multimodal_search_api:schema")
        raise exceptions.NotFound(f"{message} The endpoints are listed at {docs} (OpenAPI schema: {schema_url}).")
