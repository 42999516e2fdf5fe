from __future__ import annotations

from typing import Any, cast

from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from multimodal_search import services
from multimodal_search.adapters import get_adapter
from multimodal_search.api.serializers import SearchQuerySerializer


def _payload(response: services.SearchResponse) -> dict[str, Any]:
    return {
        "results": [hit.as_dict() for hit in response.hits],
        "count": len(response.hits),
        "method": response.method,
        "model_id": response.model_id,
        "took_ms": round(response.took_ms, 2),
        "query": {key: value for key, value in response.query.items() if key in ("text", "expanded", "image")},
    }


class SearchView(APIView):
    """GET ?q=TEXT&k=N[&category=PATH][&method=M]; POST multipart image (+ q, k)."""

    parser_classes = [MultiPartParser, FormParser]

    def get(self, request: Request) -> Response:
        return self._search(request.query_params)

    def post(self, request: Request) -> Response:
        # the form parsers give a QueryDict (a mapping); drf-stubs also allows a JSON list
        data = cast(dict[str, Any], request.data.copy() if hasattr(request.data, "copy") else dict(request.data))
        for key in ("k", "q", "category", "method"):
            if key not in data and key in request.query_params:
                data[key] = request.query_params[key]
        return self._search(data)

    def _search(self, data: Any) -> Response:
        serializer = SearchQuerySerializer(data=data)
        if not serializer.is_valid():
            return Response(
                {"error": "invalid query", "details": serializer.errors}, status=status.HTTP_400_BAD_REQUEST
            )
        params = serializer.validated_data
        try:
            image = services.open_photo(params["image"]) if params.get("image") else None
            response = services.search_products(
                params.get("q") or None,
                image,
                k=params["k"],
                category=params.get("category") or None,
                method=params.get("method") or None,
            )
        except services.SearchError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(_payload(response))


class SimilarView(APIView):
    def get(self, request: Request, identifier: str) -> Response:
        adapter = get_adapter()
        try:
            product = adapter.lookup(identifier)
        # get_model() is a concrete model; the django-stubs plugin removes DoesNotExist from the base Model
        except adapter.get_model().DoesNotExist:  # type: ignore[attr-defined]
            return Response({"error": f"no product {identifier!r}"}, status=status.HTTP_404_NOT_FOUND)
        try:
            k = max(1, min(50, int(request.query_params.get("k", 8))))
        except ValueError:
            return Response({"error": "k must be an integer"}, status=status.HTTP_400_BAD_REQUEST)
        hits = services.similar_products(product, k=k)
        return Response({"results": [hit.as_dict() for hit in hits], "count": len(hits)})


class IndexStatusView(APIView):
    def get(self, request: Request) -> Response:
        return Response(services.index_status())
