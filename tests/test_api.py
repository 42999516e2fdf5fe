"""REST API and HTML search page: contracts and clear errors."""

from __future__ import annotations

import pytest

from multimodal_search import services
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_get_search_returns_stable_keys(client, catalogue):
    response = client.get("/api/search/", {"q": "camping tent", "k": 2})
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 2
    first = body["results"][0]
    assert first["sku"] == "TENT-1"
    assert {"sku", "title", "url", "image", "score", "explanation"} <= set(first)
    assert first["url"] == "/products/TENT-1/"
    assert first["image"].startswith("/media/")


def test_post_photo_search(client, catalogue, photo):
    response = client.post("/api/search/", {"image": photo("yellow"), "k": 1})
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["sku"] == "LAMP-1"


def test_post_photo_and_text(client, catalogue, photo):
    response = client.post("/api/search/", {"image": photo("white"), "q": "coffee mug"})
    assert response.status_code == 200
    assert response.json()["results"][0]["sku"] == "MUG-1"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "tent", "k": "0"},
        {"q": "tent", "k": "abc"},
        {"q": "tent", "k": "1000"},
        {"q": "x", "method": "bogus"},
    ],
)
def test_bad_get_queries_are_400_with_a_message(client, catalogue, params):
    response = client.get("/api/search/", params)
    assert response.status_code == 400
    assert "error" in response.json()


def test_post_not_an_image_is_400(client, catalogue):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post("/api/search/", {"image": SimpleUploadedFile("x.jpg", b"not an image", "image/jpeg")})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "image"


def test_similar_endpoint(client, catalogue):
    response = client.get("/api/products/TENT-1/similar/", {"k": 2})
    assert response.status_code == 200
    assert [r["sku"] for r in response.json()["results"]] and "TENT-1" not in [
        r["sku"] for r in response.json()["results"]
    ]
    assert client.get("/api/products/NOPE/similar/").status_code == 404


def test_index_status(admin_client, catalogue):  # staff with the reindex permission (tests/test_security.py)
    body = admin_client.get("/api/index/status/").json()
    assert body["products"] == 3 and body["indexed"] == 3 and body["missing"] == 0


def test_html_search_page_shows_results_and_explanations(client, catalogue):
    response = client.get("/search/", {"q": "coffee mug"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "ceramic coffee mug" in html
    assert "mm-why" in html


def test_html_search_page_empty_query_is_a_friendly_error(client, catalogue):
    response = client.post("/search/", {"q": ""})
    assert response.status_code == 400
    assert "Type what you are looking for" in response.content.decode()


def test_product_page_shows_similar_products(client, indexed):
    products = [ProductFactory(sku=f"JKT-{i}", title=f"blue denim jacket {i}", photos=["blue"]) for i in range(3)]
    indexed(*products)
    html = client.get("/products/JKT-0/").content.decode()
    assert "Similar products" in html
    assert "/products/JKT-1/" in html and "/products/JKT-2/" in html


def test_similar_products_are_other_products_one_colour_each(client, indexed):
    def colours(parent: str, title: str, names: tuple[str, ...]) -> list:
        return [
            ProductFactory(sku=f"{parent}-{c}", parent_sku=parent, title=title, color=c, photos=[c.lower()])
            for c in names
        ]

    own = colours("DJ1", "blue denim jacket", ("Blue", "Red", "Green"))
    other = colours("DJ2", "blue denim jacket classic", ("Blue", "Red"))
    third = colours("DJ3", "blue denim coat", ("Blue",))
    indexed(*own, *other, *third)
    skus = [hit.product.sku for hit in services.similar_products(own[0], k=8)]
    # its own colours are listed apart ("Other colours"); one colour of each other product, its nearest
    assert not {"DJ1-Red", "DJ1-Green"} & set(skus)
    assert len([sku for sku in skus if sku.startswith("DJ2-")]) == 1 and "DJ3-Blue" in skus
    html = client.get("/products/DJ1-Blue/").content.decode()
    similar = html[html.index("Similar products") :]
    assert "/products/DJ1-Red/" not in similar and "/products/DJ3-Blue/" in similar
    answer = client.get("/api/products/DJ1-Blue/similar/", {"k": 8}).json()
    assert [item["sku"] for item in answer["results"]] == skus
