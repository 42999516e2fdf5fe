"""Recommendations (``services.recommend``): customers also viewed, popular products, products near a
vector; their API endpoints and storefront strips. Real PostgreSQL with pgvector, the hash encoder."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from multimodal_search import services
from multimodal_search.models import ShopperEvent
from multimodal_search.ranking import attributes
from multimodal_search.store import get_store
from shop.catalog.models import Category, Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def event(product: Product, kind: str = "view", *, session: str = "", user: Any = None, days_ago: float = 0) -> None:
    ShopperEvent.objects.create(
        kind=kind,
        product_pk=str(product.pk),
        session=session,
        user=user,
        created_at=timezone.now() - timedelta(days=days_ago),
    )


@pytest.fixture
def shop(indexed: Any) -> dict[str, Product]:
    """Five indexed products: two jackets, a tent, a lamp and a mug (the mug nobody looked at)."""
    specs = {
        "jacket": ("JKT-1", "blue denim jacket", "Men > Tops"),
        "jacket2": ("JKT-2", "black denim jacket", "Men > Tops"),
        "tent": ("TENT-1", "two person camping tent", "Gear > Camping"),
        "lamp": ("LAMP-1", "desk lamp", "Gear > Home"),
        "mug": ("MUG-1", "ceramic coffee mug", "Gear > Home"),
    }
    products = {
        name: ProductFactory(sku=sku, title=title, category=Category.from_path(path), photos=["blue"])
        for name, (sku, title, path) in specs.items()
    }
    indexed(*products.values())
    return products


@pytest.fixture
def co_viewed(shop: dict[str, Product], django_user_model: Any) -> dict[str, Product]:
    """Shoppers of the jacket also looked at the tent (three of them) and the lamp (one); the mug is
    popular with other shoppers only."""
    jacket, tent, lamp, mug = shop["jacket"], shop["tent"], shop["lamp"], shop["mug"]
    user = django_user_model.objects.create_user("ann", password="x")
    for session in ("s1", "s2"):
        event(jacket, session=session)
        event(tent, session=session)
    event(jacket, "purchase", user=user)  # a signed-in shopper counts too, by user
    event(tent, "cart", user=user)
    event(jacket, session="s3")
    event(lamp, session="s3")
    for session in ("x1", "x2", "x3", "x4"):
        event(mug, session=session)
    return shop


# --- customers also viewed ---------------------------------------------------------------------------


def test_also_viewed_ranks_the_co_viewed_product_first(co_viewed: dict[str, Product]) -> None:
    jacket, tent, lamp, mug = (co_viewed[name] for name in ("jacket", "tent", "lamp", "mug"))
    hits = services.also_viewed(jacket.pk, k=2)
    assert [hit.product_pk for hit in hits] == [str(tent.pk), str(lamp.pk)]
    assert hits[0].signals == {"co_viewed": 3.0} and hits[0].explanation == {"co_viewed": 1.0}
    assert hits[1].signals == {"co_viewed": 1.0}
    assert 0 < hits[1].score < hits[0].score  # weighted co-count over sqrt(popularity)
    # filled to k with similar products: never the product itself, nor the mug by co-occurrence
    filled = services.also_viewed(jacket.pk, k=4)
    assert [hit.product_pk for hit in filled[:2]] == [str(tent.pk), str(lamp.pk)]
    assert len(filled) == 4 and str(jacket.pk) not in [hit.product_pk for hit in filled]
    assert all(set(hit.signals) == {"similar"} for hit in filled[2:])
    assert str(mug.pk) not in [hit.product_pk for hit in filled[:2]]


def test_also_viewed_falls_back_to_similar_products_for_a_product_nobody_viewed(co_viewed: dict[str, Product]) -> None:
    jacket2 = co_viewed["jacket2"]
    hits = services.also_viewed(jacket2.pk, k=3)
    similar = services.similar_products(jacket2, k=3)
    assert [hit.product_pk for hit in hits] == [hit.product_pk for hit in similar]
    assert hits[0].product_pk == str(co_viewed["jacket"].pk)  # the other denim jacket
    assert all(hit.signals.keys() == {"similar"} and hit.explanation == {"similar": 1.0} for hit in hits)
    assert services.also_viewed(jacket2.pk, k=3, fill=False) == []  # what shoppers viewed only


def test_also_viewed_of_an_unknown_product_is_empty(db: Any) -> None:
    assert services.also_viewed("999999", k=4) == []
    assert services.also_viewed("not-a-pk", k=4) == []


# --- popular products ------------------------------------------------------------------------------


def test_popular_products_respects_the_category_and_the_window(shop: dict[str, Product]) -> None:
    jacket, jacket2, tent, lamp, mug = (shop[name] for name in ("jacket", "jacket2", "tent", "lamp", "mug"))
    for session in ("a", "b", "c"):
        event(mug, session=session)
    event(tent, "purchase", session="a")  # weight 5 beats the mug's 3 views
    event(jacket2, session="a")
    for session in ("a", "b", "c", "d", "e", "f", "g"):
        event(lamp, session=session, days_ago=40)  # popular, but long ago
    hits = services.popular_products(k=3)
    assert [hit.product_pk for hit in hits[:3]] == [str(tent.pk), str(mug.pk), str(jacket2.pk)]
    assert hits[0].signals == {"popular": 5.0}
    assert services.popular_products(k=1, days=60)[0].product_pk == str(lamp.pk)
    # within a category and below it: "Gear" holds Camping and Home; "Men" only the jackets
    assert [hit.product_pk for hit in services.popular_products(k=2, category="Gear")] == [str(tent.pk), str(mug.pk)]
    men = services.popular_products(k=5, category="Men")
    assert [hit.product_pk for hit in men] == [str(jacket2.pk), str(jacket.pk)]  # the jacket fills, as newest
    assert men[1].signals == {"newest": 0.0}
    assert services.popular_products(k=3, category="Nowhere") == []
    assert str(tent.pk) not in [hit.product_pk for hit in services.popular_products(k=5, exclude=[tent.pk])]


def test_popular_products_without_events_are_the_newest(shop: dict[str, Product]) -> None:
    hits = services.popular_products(k=3)
    assert len(hits) == 3 and all(set(hit.signals) == {"newest"} for hit in hits)
    assert [hit.product_pk for hit in hits] == [str(shop[name].pk) for name in ("mug", "lamp", "tent")]
    assert len(services.popular_products(k=10)) == 5
    assert [hit.product_pk for hit in services.popular_in_category_for(shop["tent"], k=3)] == []  # alone in Camping
    home = services.popular_in_category_for(shop["lamp"], k=3)
    assert [hit.product_pk for hit in home] == [str(shop["mug"].pk)]


# --- recommended for a vector ----------------------------------------------------------------------


def test_recommended_for_vector_excludes_given_pks_and_returns_k(shop: dict[str, Product]) -> None:
    jacket, jacket2 = shop["jacket"], shop["jacket2"]
    vector = get_store().product_vector(str(jacket.pk), "fused_vector", model_id=services.current_model_id())
    assert vector is not None
    hits = services.recommended_for_vector(vector, k=3)
    assert len(hits) == 3 and hits[0].product_pk == str(jacket.pk) and hits[1].product_pk == str(jacket2.pk)
    assert set(hits[0].signals) == {"profile"} and hits[0].score > hits[1].score
    hits = services.recommended_for_vector(vector, k=3, exclude=[jacket.pk])
    assert len(hits) == 3 and hits[0].product_pk == str(jacket2.pk)
    assert str(jacket.pk) not in [hit.product_pk for hit in hits]
    assert len(services.recommended_for_vector(vector, k=10, exclude=[jacket.pk])) == 4  # all that is left
    gear = services.recommended_for_vector(vector, k=5, category="Gear")
    assert {hit.product_pk for hit in gear} == {str(shop[name].pk) for name in ("tent", "lamp", "mug")}


def test_recommended_for_vector_shows_one_colour_of_a_product_and_none_of_one_excluded(indexed: Any) -> None:
    def colour(parent: str, name: str, title: str) -> Product:
        return ProductFactory(sku=f"{parent}-{name}", parent_sku=parent, title=title, color=name, photos=[name.lower()])

    hoodie = [colour("HD", name, "fleece hoodie") for name in ("Gray", "Black", "Blue")]
    jacket = [colour("JK", name, "fleece jacket") for name in ("Blue", "Red")]
    tee = colour("TE", "White", "cotton tee")
    indexed(*hoodie, *jacket, tee)
    vector = get_store().product_vector(str(hoodie[0].pk), "fused_vector", model_id=services.current_model_id())
    hits = [hit.product for hit in services.recommended_for_vector(vector, k=3)]
    assert len(hits) == 3 and {hit.parent_sku for hit in hits} == {"HD", "JK", "TE"}  # one colour of each
    # the grey hoodie seen: none of its colours
    seen = [hit.product for hit in services.recommended_for_vector(vector, k=2, exclude=[hoodie[0].pk])]
    assert sorted(hit.parent_sku for hit in seen) == ["JK", "TE"]


def test_recommended_for_shopper_keeps_the_gender_their_products_state(indexed: Any, django_user_model: Any) -> None:
    def hoodie(sku: str, gender: str, colour: str) -> Product:
        return ProductFactory(sku=sku, title=f"{colour} fleece hoodie", gender=gender, photos=[colour])

    viewed = [hoodie(f"M{i}", "Men", colour) for i, colour in enumerate(("gray", "black", "blue"))]
    women = hoodie("W1", "Women", "gray")  # the viewed ones' words and photo: the nearest of what is left
    men = ProductFactory(sku="M9", title="cotton tee", gender="Men", photos=["white"])
    unisex = ProductFactory(sku="U1", title="fleece hoodie zip", gender="Unisex", photos=["gray"])
    indexed(*viewed, women, men, unisex)
    user = django_user_model.objects.create_user("shopper")
    key = services.shopper_key(session_key=None, user_id=user.pk)
    assert key is not None
    for product in viewed:
        event(product, "cart", user=user)
    services.update_profile(key)
    profile = services.profile_for(key)
    assert profile is not None
    near = [hit.product for hit in services.recommended_for_vector(profile.vector, k=3, exclude=[p.pk for p in viewed])]
    assert near.index(women) < near.index(men)  # by the vector alone the women's hoodie comes first
    hits = [hit.product for hit in services.recommended_for_shopper(key, k=3)]
    assert hits[-1] == women and set(hits[:2]) == {men, unisex}
    # products that state both genders, or none: no gender kept
    assert attributes.shared_gender([{"gender": "Men"}, {"gender": "Women"}] * 2 + [{"gender": "Men"}]) is None
    assert attributes.shared_gender([{"gender": "Men"}, {"gender": "Women"}, {"gender": "Men"}]) == "men"
    assert attributes.shared_gender([{"gender": "Men"}, {"gender": "unisex"}, {}, {"gender": "Men"}]) == "men"
    assert attributes.shared_gender([{"gender": "Unisex"}, {}]) is None
    assert attributes.shared_gender([{"gender": "Women"}] * 3 + [{"gender": "Men"}]) == "women"


def test_recommended_for_shopper_without_a_profile_is_popular(shop: dict[str, Product]) -> None:
    event(shop["lamp"], session="z")
    hits = services.recommended_for_shopper(None, k=2)
    assert hits[0].product_pk == str(shop["lamp"].pk) and set(hits[0].signals) == {"popular"}


# --- API -------------------------------------------------------------------------------------------


def api_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    return dict(response.json()["error"])


def test_also_viewed_api(client: Any, co_viewed: dict[str, Product]) -> None:
    body = client.get("/api/v1/products/JKT-1/also-viewed/", {"k": 2}).json()
    assert body["count"] == 2 and [item["sku"] for item in body["results"]] == ["TENT-1", "LAMP-1"]
    assert body["results"][0]["signals"] == {"co_viewed": 3.0}
    assert client.get("/api/products/MUG-1/also-viewed/").json()["count"] == 4  # similar products, k 8
    assert api_error(client.get("/api/v1/products/NOPE/also-viewed/"), 404)["code"] == "not_found"
    error = api_error(client.get("/api/v1/products/JKT-1/also-viewed/", {"k": 0}), 400)
    assert error["field"] == "k"
    error = api_error(client.get("/api/v1/products/JKT-1/also-viewed/", {"limit": 3}), 400)
    assert (error["code"], error["field"]) == ("unknown_parameter", "limit")


def test_popular_api(client: Any, co_viewed: dict[str, Product]) -> None:
    body = client.get("/api/v1/popular/", {"k": 2}).json()
    assert [item["sku"] for item in body["results"]] == ["JKT-1", "TENT-1"]  # 3 views + a purchase; 2 views + a cart
    assert body["results"][0]["signals"] == {"popular": 8.0}
    body = client.get("/api/v1/popular/", {"category": "Gear > Home", "k": 5}).json()
    assert [item["sku"] for item in body["results"]] == ["MUG-1", "LAMP-1"]
    assert client.get("/api/v1/popular/", {"category": "Nowhere"}).json() == {"results": [], "count": 0}
    assert api_error(client.get("/api/v1/popular/", {"k": 1000}), 400)["field"] == "k"
    assert api_error(client.get("/api/v1/popular/", {"days": 0}), 400)["field"] == "days"
    assert api_error(client.get("/api/v1/popular/", {"category": "x" * 1001}), 400)["field"] == "category"
    assert api_error(client.get("/api/v1/popular/", {"sort": "new"}), 400)["code"] == "unknown_parameter"


# --- storefront ------------------------------------------------------------------------------------


def test_product_page_shows_customers_also_viewed(client: Any, co_viewed: dict[str, Product]) -> None:
    html = client.get("/products/JKT-1/").content.decode()
    assert 'id="also-viewed"' in html and "Customers also viewed" in html
    strip = html.split('id="also-viewed"', 1)[1].split("</section>", 1)[0]
    assert strip.index("/products/TENT-1/") < strip.index("/products/LAMP-1/")
    assert "Similar products" in html  # the similar grid stays
    # the strip holds what shoppers viewed, never the similar products the grid below already shows
    assert strip.count('class="card') == 2, strip


def test_product_page_of_a_product_nobody_viewed_shows_similar_products_once(
    client: Any, co_viewed: dict[str, Product]
) -> None:
    html = client.get(f"/products/{co_viewed['jacket2'].sku}/").content.decode()
    assert 'id="also-viewed"' not in html and "Customers also viewed" not in html
    assert "Similar products" in html and f"/products/{co_viewed['jacket'].sku}/" in html


def test_product_list_shows_popular_strip(client: Any, co_viewed: dict[str, Product]) -> None:
    html = client.get("/").content.decode()
    assert 'id="popular"' in html and ">Popular<" in html
    strip = html.split('id="popular"', 1)[1].split("</section>", 1)[0]
    assert strip.index("/products/JKT-1/") < strip.index("/products/TENT-1/")
    home = Category.objects.get(path="Gear > Home")
    html = client.get("/", {"category": home.pk}).content.decode()
    strip = html.split('id="popular"', 1)[1].split("</section>", 1)[0]
    assert "Popular in Home" in strip and "/products/MUG-1/" in strip and "/products/TENT-1/" not in strip


def test_the_popularity_ranking_is_cached_when_asked(shop: dict[str, Product], settings: Any) -> None:
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cache.clear()
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "PERSONALISATION": {**settings.MULTIMODAL_SEARCH["PERSONALISATION"], "POPULAR_CACHE_SECONDS": 60},
    }
    products = list(shop.values())
    ShopperEvent.objects.create(
        kind="purchase", product_pk=str(products[0].pk), session="s1", created_at=timezone.now()
    )
    first = [hit.product_pk for hit in services.popular_products(k=3)]
    assert first[0] == str(products[0].pk)
    ShopperEvent.objects.create(
        kind="purchase", product_pk=str(products[1].pk), session="s2", created_at=timezone.now()
    )
    ShopperEvent.objects.create(
        kind="purchase", product_pk=str(products[1].pk), session="s3", created_at=timezone.now()
    )
    with CaptureQueriesContext(connection) as queries:
        again = [hit.product_pk for hit in services.popular_products(k=3)]
    assert again == first  # the kept ranking, not a recount
    assert not any("SUM(" in q["sql"].upper() for q in queries.captured_queries)
    cache.clear()
    assert services.popular_products(k=3)[0].product_pk == str(products[1].pk)  # recounted once it expires
    cache.clear()
