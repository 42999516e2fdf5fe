"""``/api/v1/events/``: the signed-in user's own shopper events (README "Personalisation").

``GET`` lists them (newest first, ``limit``/``offset`` pages), ``POST {kind, product}`` records one for
``request.user`` (never for anyone else: there is no user parameter) and ``DELETE`` clears the user's
history and profile. Anonymous callers are refused. Every answer goes through ``services.personal``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from multimodal_search import services
from multimodal_search.api.serializers import ChoiceField
from multimodal_search.api.views import MAX_IDENTIFIER_LENGTH, BaseAPIView, _errors
from multimodal_search.models import ShopperEvent

MAX_LIMIT = 200


class EventListQuerySerializer(serializers.Serializer[Any]):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=50)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)


class EventCreateSerializer(serializers.Serializer[Any]):
    kind = ChoiceField(choices=[kind for kind, _ in ShopperEvent.KINDS])
    product = serializers.CharField(
        max_length=MAX_IDENTIFIER_LENGTH, help_text="The product's SKU (as `/products/<sku>/similar/`) or its id."
    )


class EventSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="view, click, cart or purchase.")
    product = serializers.CharField(help_text="The product's id.")
    sku = serializers.CharField(help_text="Its SKU (empty: no longer sold).")
    title = serializers.CharField(help_text="Its title (empty: no longer sold).")
    created_at = serializers.DateTimeField()


class EventPageSerializer(serializers.Serializer[Any]):
    results = EventSerializer(many=True)
    count = serializers.IntegerField(help_text="All of the user's events.")
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


class RecordedSerializer(serializers.Serializer[Any]):
    kind = serializers.CharField()
    product = serializers.CharField(help_text="The product's id.")
    sku = serializers.CharField()


def _product_pk(identifier: str) -> str:
    """The pk of the product a SKU (or a pk) names; a 404 naming it otherwise."""
    if "\x00" not in identifier:
        found = services.product_pks_matching(identifier)
        if found:
            return found[0]
        if identifier.isdigit() and services.product_cards([identifier]):
            return identifier
    raise exceptions.NotFound(f"No product {identifier[:100]!r}.")


class EventsView(BaseAPIView):
    """The signed-in user's own events: list, record one, clear all."""

    permission_classes = [IsAuthenticated]

    def shopper(self, request: Request) -> str:
        key = services.shopper_key(session_key=None, user_id=request.user.pk)
        assert key is not None  # authenticated: a user id
        return key

    @extend_schema(
        operation_id="events_list",
        summary="The signed-in user's events, newest first",
        parameters=[EventListQuerySerializer],
        responses={200: EventPageSerializer, **_errors(400, 401, 403, 405, 429)},
    )
    def get(self, request: Request) -> Response:
        query = self.validated_query(request, EventListQuerySerializer)
        limit, offset = query["limit"], query["offset"]
        shopper = self.shopper(request)
        events = list(services.shopper_events(shopper, limit=limit, offset=offset))
        cards = services.product_cards(sorted({event.product_pk for event in events}))
        results = [
            {
                "id": event.pk,
                "kind": event.kind,
                "product": event.product_pk,
                "sku": str((cards.get(event.product_pk) or {}).get("sku") or ""),
                "title": str((cards.get(event.product_pk) or {}).get("title") or ""),
                "created_at": event.created_at,
            }
            for event in events
        ]
        payload = {"results": results, "count": services.shopper_events(shopper).count(), "limit": limit}
        return Response(EventPageSerializer({**payload, "offset": offset}).data)

    @extend_schema(
        operation_id="events_record",
        summary="Record an event of the signed-in user (it updates their profile)",
        request=EventCreateSerializer,
        responses={201: RecordedSerializer, **_errors(400, 401, 403, 404, 405, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = EventCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(EventCreateSerializer().fields))
        if unknown:
            raise exceptions.ValidationError(
                {unknown[0]: [f"Unknown field {unknown[0][:100]!r}; this endpoint takes: kind, product."]},
                code="unknown_parameter",
            )
        pk = _product_pk(serializer.validated_data["product"].strip())
        kind = serializer.validated_data["kind"]
        if not services.record_event(kind, pk, session_key=None, user_id=request.user.pk):
            raise exceptions.APIException("Events are not being recorded now.")
        sku = str((services.product_cards([pk]).get(pk) or {}).get("sku") or "")
        return Response({"kind": kind, "product": pk, "sku": sku}, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="events_clear",
        summary="Delete the signed-in user's events and profile",
        request=None,
        responses={204: OpenApiResponse(description="Cleared."), **_errors(401, 403, 405, 429)},
    )
    def delete(self, request: Request) -> Response:
        services.clear_history(self.shopper(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
