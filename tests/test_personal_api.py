"""``/api/v1/events/``: a signed-in user lists, records and clears their own events only; anonymous callers
are refused; unknown products and unknown fields are 4xx with a message."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from rest_framework.test import APIClient

from multimodal_search import services
from multimodal_search.models import ShopperEvent, ShopperProfile

pytestmark = pytest.mark.django_db

URL = "/api/v1/events/"


@pytest.fixture(autouse=True)
def _no_broker():
    with mock.patch("celery.current_app.send_task") as send:
        yield send


@pytest.fixture
def users(django_user_model) -> tuple[Any, Any]:
    return django_user_model.objects.create_user("ann"), django_user_model.objects.create_user("bob")


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def error(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    return response.json()["error"]


def test_anonymous_callers_are_refused(catalogue) -> None:
    anonymous = api()
    for response in (
        anonymous.get(URL),
        anonymous.post(URL, {"kind": "view", "product": "TENT-1"}, format="json"),
        anonymous.delete(URL),
    ):
        assert response.status_code in (401, 403), response.content
        assert response.json()["error"]["message"]
    assert not ShopperEvent.objects.exists()


def test_a_user_records_by_sku_or_id_and_lists_only_their_own_events(
    catalogue, users, django_capture_on_commit_callbacks, _no_broker
) -> None:
    tent, lamp, _ = catalogue
    ann, bob = users
    with django_capture_on_commit_callbacks(execute=True):
        response = api(ann).post(URL, {"kind": "purchase", "product": "TENT-1"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json() == {"kind": "purchase", "product": str(tent.pk), "sku": "TENT-1"}
    assert _no_broker.call_args.kwargs["args"] == [f"user:{ann.pk}"]  # the profile update is sent
    assert api(ann).post(URL, {"kind": "view", "product": str(lamp.pk)}, format="json").status_code == 201
    assert api(bob).post(URL, {"kind": "cart", "product": "LAMP-1"}, format="json").status_code == 201

    body = api(ann).get(URL).json()
    assert body["count"] == 2 and body["limit"] == 50 and body["offset"] == 0
    assert [(e["kind"], e["sku"], e["title"]) for e in body["results"]] == [
        ("view", "LAMP-1", lamp.title),
        ("purchase", "TENT-1", tent.title),
    ]
    page = api(ann).get(URL, {"limit": 1, "offset": 1}).json()
    assert [e["kind"] for e in page["results"]] == ["purchase"] and page["count"] == 2
    assert [e["kind"] for e in api(bob).get(URL).json()["results"]] == ["cart"]
    assert set(ShopperEvent.objects.filter(user=ann).values_list("session", flat=True)) == {""}


def test_another_user_cannot_be_named_to_read_or_write_their_events(catalogue, users) -> None:
    ann, bob = users
    api(ann).post(URL, {"kind": "view", "product": "TENT-1"}, format="json")
    # no parameter names a user: one is refused, not silently applied to someone else
    assert "user" in error(api(bob).get(URL, {"user": ann.pk}), 400)["message"]
    assert error(api(bob).post(URL, {"kind": "view", "product": "LAMP-1", "user": ann.pk}, format="json"), 400)
    assert api(bob).get(URL).json()["count"] == 0
    assert list(ShopperEvent.objects.values_list("user_id", flat=True)) == [ann.pk]
    # bob clearing his history leaves ann's alone
    assert api(bob).delete(URL).status_code == 204
    assert ShopperEvent.objects.filter(user=ann).count() == 1


def test_unknown_products_and_kinds_are_refused_with_a_message(catalogue, users) -> None:
    ann = users[0]
    assert "NOPE-1" in error(api(ann).post(URL, {"kind": "view", "product": "NOPE-1"}, format="json"), 404)["message"]
    assert error(api(ann).post(URL, {"kind": "view", "product": "999999"}, format="json"), 404)
    assert error(api(ann).post(URL, {"kind": "stare", "product": "TENT-1"}, format="json"), 400)["field"] == "kind"
    assert error(api(ann).post(URL, {"kind": "view"}, format="json"), 400)["field"] == "product"
    assert error(api(ann).get(URL, {"limit": 0}), 400)
    assert not ShopperEvent.objects.exists()


def test_delete_clears_the_users_events_and_profile(catalogue, users) -> None:
    ann = users[0]
    api(ann).post(URL, {"kind": "purchase", "product": "TENT-1"}, format="json")
    services.update_profile(f"user:{ann.pk}")
    assert ShopperProfile.objects.filter(shopper=f"user:{ann.pk}").exists()
    response = api(ann).delete(URL)
    assert response.status_code == 204 and not response.content
    assert not ShopperEvent.objects.exists() and not ShopperProfile.objects.exists()
    assert api(ann).get(URL).json()["count"] == 0


def test_api_tokens_reach_only_their_own_users_events(catalogue, users) -> None:
    """Real token authentication ("Authorization: Token <key>"), no forced login: bob's token neither reads
    nor writes nor clears ann's events, and his searches are never re-ranked by her profile."""
    from rest_framework.authtoken.models import Token

    ann, bob = users
    ann_token, bob_token = Token.objects.create(user=ann), Token.objects.create(user=bob)

    def with_token(token: Token | None) -> APIClient:
        client = APIClient()
        if token is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    assert with_token(ann_token).post(URL, {"kind": "view", "product": "TENT-1"}, format="json").status_code == 201
    assert with_token(bob_token).post(URL, {"kind": "cart", "product": "LAMP-1"}, format="json").status_code == 201
    mine = with_token(bob_token).get(URL).json()
    assert mine["count"] == 1 and [e["sku"] for e in mine["results"]] == ["LAMP-1"]
    assert with_token(ann_token).get(URL).json()["count"] == 1
    assert with_token(bob_token).delete(URL).status_code == 204
    assert ShopperEvent.objects.filter(user=ann).count() == 1 and not ShopperEvent.objects.filter(user=bob).exists()
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert bad.get(URL).status_code in (401, 403)
    assert with_token(None).get(URL).status_code in (401, 403)
    assert with_token(None).get("/api/v1/recommendations/").status_code in (401, 403)
    assert with_token(bob_token).get("/api/v1/recommendations/").status_code == 200
