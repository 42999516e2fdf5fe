"""Recommendation endpoints: ``GET /api/v1/products/<identifier>/also-viewed/?k=N`` ("customers also
viewed", ``services.also_viewed``) and ``GET /api/v1/popular/?category=PATH&k=N`` (``services.popular_products``).

Both answer like ``similar/``: ``{"results": [...], "count": n}``, each result saying in its ``signals``
where it came from (``co_viewed``, ``similar``, ``popular``, ``newest``). Neither shows whose events they
count: only totals over all shoppers.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from multimodal_search import services
from multimodal_search.api.schema import SimilarResponseSerializer
from multimodal_search.api.serializers import category_field, k_field
from multimodal_search.api.views import BaseAPIView, _errors


class AlsoViewedQuerySerializer(serializers.Serializer[Any]):
    k = k_field(8, "How many products at most.")


class PopularQuerySerializer(serializers.Serializer[Any]):
    k = k_field(8, "How many products at most.")
    category = category_field()
    days = serializers.IntegerField(
        required=False, min_value=1, max_value=365, default=30, help_text="The window of events counted, in days."
    )


class AlsoViewedView(BaseAPIView):
    """GET /products/<identifier>/also-viewed/?k=N: what shoppers of this product also looked at."""

    @extend_schema(
        operation_id="also_viewed",
        summary="Customers who viewed this product also viewed",
        description="Products the shoppers of this one also viewed, carted or bought (signal `co_viewed`: "
        "how many shoppers did both), then, when few did, products similar to it (signal `similar`).",
        parameters=[
            OpenApiParameter("identifier", str, OpenApiParameter.PATH, description="The product's SKU."),
            AlsoViewedQuerySerializer,
        ],
        responses={200: SimilarResponseSerializer, **_errors(400, 404, 405, 429)},
    )
    def get(self, request: Request, identifier: str) -> Response:
        params = self.validated_query(request, AlsoViewedQuerySerializer)
        product = self.lookup_product(identifier)
        hits = services.also_viewed(product.pk, k=params["k"])
        return Response({"results": [hit.as_dict() for hit in hits], "count": len(hits)})


class PopularView(BaseAPIView):
    """GET /popular/?category=PATH&k=N[&days=D]: the most interacted-with products lately."""

    @extend_schema(
        operation_id="popular_products",
        summary="Popular products, in a category or overall",
        description="Products by the weighted count of views, clicks, add-to-carts and purchases in the last "
        "`days` (signal `popular`), filled with the newest products (signal `newest`).",
        parameters=[PopularQuerySerializer],
        responses={200: SimilarResponseSerializer, **_errors(400, 405, 429)},
    )
    def get(self, request: Request) -> Response:
        params = self.validated_query(request, PopularQuerySerializer)
        hits = services.popular_products(
            k=params["k"], category=params["category"].strip() or None, days=params["days"]
        )
        return Response({"results": [hit.as_dict() for hit in hits], "count": len(hits)})


class RecommendationsQuerySerializer(serializers.Serializer[Any]):
    k = k_field(8, "How many products at most.")
    category = category_field()


class RecommendationsView(BaseAPIView):
    """GET /recommendations/?k=N[&category=PATH]: "recommended for you", for the signed-in caller only."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        operation_id="recommendations",
        summary="Recommended for the caller",
        description="Products near the caller's own profile (what they viewed, clicked, carted and bought; "
        "signal `profile`), minus what they bought; popular products (signal `popular`, then `newest`) while "
        "their history is too thin. Always the authenticated caller's own: no parameter names another shopper.",
        parameters=[RecommendationsQuerySerializer],
        responses={200: SimilarResponseSerializer, **_errors(400, 403, 405, 429)},
    )
    def get(self, request: Request) -> Response:
        params = self.validated_query(request, RecommendationsQuerySerializer)
        shopper = services.shopper_key(session_key=None, user_id=request.user.pk)
        hits = services.recommended_for_shopper(shopper, k=params["k"], category=params["category"].strip() or None)
        return Response({"results": [hit.as_dict() for hit in hits], "count": len(hits)})
