"""A product's colours (one group) are one result of a refined search: its best placed colour, the others
found as its variants; the total, pages and counts are of products (services.browse, the API, the page)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from multimodal_search import services
from tests.factories import ProductFactory


@pytest.fixture
def colours(indexed, model_dir):
    def group(parent: str, title: str, names: tuple[str, ...], price: str) -> list:
        return [
            ProductFactory(
                sku=f"{parent}-{c}", parent_sku=parent, title=title, color=c, price=Decimal(price), photos=[c.lower()]
            )
            for c in names
        ]

    made = {
        "JK": group("JK", "rain jacket", ("Red", "Blue", "Green"), "60.00"),
        "SH": group("SH", "rain shell jacket", ("Blue", "Black"), "40.00"),
        "CT": [ProductFactory(sku="CT", title="rain coat jacket", color="Red", price=Decimal("80.00"), photos=["red"])],
    }
    indexed(*[product for products in made.values() for product in products])
    return made


def _search(**kwargs):
    return services.browse_products("rain jacket", page_size=10, **kwargs)


@pytest.mark.django_db
def test_one_result_per_product_its_other_colours_its_variants(colours):
    every = _search(group_variants=False)
    assert every.total == 6 and not every.grouped and all(hit.variants is None for hit in every.hits)
    page = _search()
    assert page.grouped and page.total == 3 and page.pages == 1
    # each group once, where its best placed colour was; the others found, in their order, as its variants
    firsts = {}
    for position, hit in enumerate(every.hits):
        firsts.setdefault(hit.product.parent_sku or hit.product.sku, (position, hit.product, []))[2].append(hit.product)
    expected = sorted(firsts.values(), key=lambda item: item[0])
    assert [hit.product for hit in page.hits] == [first for _, first, _ in expected]
    assert [hit.variants for hit in page.hits] == [found[1:] for _, _, found in expected]
    # the counts are of products: a colour counts the groups that have it among the results
    counts = {item.value: item.count for item in page.facets["color"]}
    assert counts == {"Red": 2, "Blue": 2, "Green": 1, "Black": 1}
    ranges = {(r.minimum, r.maximum): r.count for r in page.price_ranges}
    assert ranges[(Decimal(25), Decimal(50))] == 1 and ranges[(Decimal(50), Decimal(100))] == 2
    # a colour ticked: that colour stands for its product, the others of it are filtered out
    blue = _search(filters={"color": ["Blue"]})
    assert {hit.product.sku for hit in blue.hits} == {"JK-Blue", "SH-Blue"}
    assert all(hit.variants == [] for hit in blue.hits) and blue.total == 2
    # sorted by price: a product where its cheapest colour is (here all alike), each once
    cheap = _search(sort="price_asc")
    assert [hit.product.parent_sku or hit.product.sku for hit in cheap.hits] == ["SH", "JK", "CT"]


@pytest.mark.django_db
def test_the_variants_are_loaded_with_the_page(colours):
    page = _search()
    with CaptureQueriesContext(connection) as later:
        shown = [hit.as_dict() for hit in page.hits]
    assert len(later.captured_queries) == 0  # the variants' photos came with the page's products
    jacket = next(item for item in shown if item["sku"].startswith("JK-"))
    assert {variant["color"] for variant in jacket["variants"]} | {jacket["color"]} == {"Red", "Blue", "Green"}
    variant = jacket["variants"][0]
    assert variant["url"] == f"/products/{variant['sku']}/" and variant["image"].startswith(
        f"/media/products/{variant['sku']}"
    )
    assert set(variant) == {"sku", "title", "url", "image", "price", "color"}


@pytest.mark.django_db
def test_the_api_and_the_page_group_colours(client, colours, settings):
    answer = client.get("/api/v1/search/", {"q": "rain jacket"}).json()
    assert answer["grouped"] is True and answer["total"] == 3 and answer["count"] == 3
    assert all("variants" in item for item in answer["results"])
    every = client.get("/api/v1/search/", {"q": "rain jacket", "group": "false"}).json()
    assert every["grouped"] is False and every["total"] == 6
    assert all("variants" not in item for item in every["results"])
    assert client.get("/api/v1/search/", {"q": "rain jacket", "group": "maybe"}).status_code == 400

    html = client.get("/search/", {"q": "rain jacket"}).content.decode()
    assert html.count('class="card mm-card"') == 3 and "3 results" in html
    jacket = next(item for item in answer["results"] if item["sku"].startswith("JK-"))
    for variant in jacket["variants"]:
        assert f'<a href="{variant["url"]}">{variant["color"]}</a>' in html
    assert "Also in" in html

    # the shop's setting: every colour a result of its own, unless the API asks
    settings.MULTIMODAL_SEARCH = {**getattr(settings, "MULTIMODAL_SEARCH", {}), "FACETS": {"GROUP_VARIANTS": False}}
    html = client.get("/search/", {"q": "rain jacket"}).content.decode()
    assert html.count('class="card mm-card"') == 6 and "Also in" not in html
    assert client.get("/api/v1/search/", {"q": "rain jacket", "group": "true"}).json()["total"] == 3


@pytest.mark.django_db
def test_a_catalogue_of_sizes_lists_each_other_colour_once(indexed, model_dir, settings):
    made = [
        ProductFactory(
            sku=f"JK-{c}-{size}", parent_sku="JK", title="rain jacket", color=c, sizes=size, photos=[c.lower()]
        )
        for c in ("Red", "Blue", "Green")
        for size in ("S", "M", "L")
    ]
    indexed(*made)
    every = _search(group_variants=False)
    assert every.total == 9
    page = _search()
    assert page.total == 1
    (hit,) = page.hits
    colours = [variant.color for variant in hit.variants]
    # one per colour, the best placed of each, and never the shown product's own colour
    assert sorted(colours) == sorted({"Red", "Blue", "Green"} - {hit.product.color})
    placed = [h.product for h in every.hits]
    for variant in hit.variants:
        assert variant == next(p for p in placed if p.color == variant.color)
    # at most MAX_VARIANTS of them
    settings.MULTIMODAL_SEARCH = {**getattr(settings, "MULTIMODAL_SEARCH", {}), "FACETS": {"MAX_VARIANTS": 1}}
    (hit,) = _search().hits
    assert len(hit.variants) == 1


@pytest.mark.django_db
def test_the_demo_stores_lists_show_a_product_once(client):
    from shop.catalog.models import Category

    tees = Category.from_path("Men > Tops > Tees")
    for colour in ("Red", "Blue", "Green"):
        ProductFactory(sku=f"TE-{colour}", parent_sku="TE", title="Alpha Tee", color=colour, category=tees)
    ProductFactory(sku="BE", title="Beta Tee", color="Black", category=tees)
    ProductFactory(sku="TE-Gray", parent_sku="TE", title="Alpha Tee", color="Gray", category=tees, active=False)
    html = client.get("/", {"category": tees.pk}).content.decode()
    listed = html.split('<div class="grid">', 1)[1]
    assert listed.count('<div class="card">') == 2 and "2 products" in html
    assert "Red · 3 colours" in listed and "Black ·" not in listed  # the first stored colour stands for it
    # the category tree counts products too, a product's colours once
    assert re.search(r"Tees</a>\s*<span class=\"count\">\(2\)", html), html[html.index("Tees") - 200 :][:400]


@pytest.mark.django_db
def test_kinds_joined_alternate_products_not_colours(indexed, model_dir):
    from multimodal_search.ranking.departments import Departments, save_departments
    from multimodal_search.ranking.text import stem
    from multimodal_search.services.query import current_encoder

    made = [
        ProductFactory(sku=f"{parent}-{c}", parent_sku=parent, title=title, color=c, photos=[c.lower()])
        for parent, title in (
            ("H1", "zip hoodie"),
            ("H2", "pullover hoodie"),
            ("J1", "rain jacket"),
            ("J2", "ski jacket"),
        )
        for c in ("Red", "Blue", "Green")
    ]
    indexed(*made)
    save_departments(current_encoder()[1], Departments(kinds=sorted({stem(w) for w in ("jacket", "hoodie")})))
    both = services.browse_products("hoodies and jackets", page_size=10)
    assert both.query["parts"] == ["hoodies", "jackets"] and both.total == 4
    # the first product of each part's search, then the second of each, ...: products in turn, not colours
    hoodies, jackets = (
        [hit.product.parent_sku for hit in services.browse_products(part, page_size=10).hits]
        for part in ("hoodies", "jackets")
    )
    taken = list(dict.fromkeys(parent for pair in zip(hoodies, jackets) for parent in pair))
    assert [hit.product.parent_sku for hit in both.hits] == taken
    assert all(len(hit.variants) == 2 for hit in both.hits)
    # each colour a result of its own: the colours in turn, as before grouping
    hoodies, jackets = (
        [hit.product.sku for hit in services.browse_products(part, page_size=20, group_variants=False).hits]
        for part in ("hoodies", "jackets")
    )
    every = services.browse_products("hoodies and jackets", page_size=20, group_variants=False)
    assert [hit.product.sku for hit in every.hits] == list(
        dict.fromkeys(s for pair in zip(hoodies, jackets) for s in pair)
    )


def test_in_turn_takes_a_products_colours_together():
    from multimodal_search.services.browse import _in_turn
    from multimodal_search.services.search import Ranked, SearchHit

    def ranked(*skus: str) -> Ranked:
        hits = [SearchHit(sku, None, 1.0, {}, {}) for sku in skus]
        return Ranked(hits, "rerank", "m", {"text": "x"}, 0.0, None, {})

    hoodies = ranked("A1-Red", "A1-Blue", "A1-Green", "A2-Red")
    jackets = ranked("B1-Red", "B2-Red", "B3-Red")
    # taken colour by colour, the second hoodie would come after every jacket
    by_product = _in_turn("hoodies and jackets", [hoodies, jackets], lambda hit: hit.product_pk.split("-")[0])
    assert [hit.product_pk for hit in by_product.hits] == [
        *("A1-Red", "A1-Blue", "A1-Green", "B1-Red", "A2-Red", "B2-Red", "B3-Red")
    ]
    by_colour = _in_turn("hoodies and jackets", [hoodies, jackets], lambda hit: hit.product_pk)
    assert [hit.product_pk for hit in by_colour.hits][:4] == ["A1-Red", "B1-Red", "A1-Blue", "B2-Red"]


@pytest.mark.django_db
def test_a_variants_code_ticks_its_size(client, indexed, model_dir):
    made = [
        ProductFactory(sku=f"OM-77-{c}", parent_sku="OM-77", title="Omega Tee", color=c, sizes="S,M,XL")
        for c in ("Red", "Blue")
    ]
    indexed(*made, ProductFactory(sku="OM-78", title="Omega Tank", sizes="XL"))
    found = services.browse_products("OM-77-XL-Blue", page_size=10)
    assert found.query["code"] == "OM-77-XL-Blue" and found.query["size"] == "XL"
    assert found.filters == {"size": ["XL"]} and found.hits[0].product.sku == "OM-77-Blue"
    # the code's own parts are no size, and a part no product states as a size ticks nothing
    assert "size" not in services.browse_products("OM-77-Blue", page_size=10).query
    assert "size" not in services.browse_products("OM-77-XXL-Blue", page_size=10).query
    answer = client.get("/api/v1/search/", {"q": "om-77-m-red"}).json()
    assert answer["query"]["size"] == "M" and answer["filters"] == {"size": ["M"]}
    assert answer["results"][0]["sku"] == "OM-77-Red"


@pytest.mark.django_db
def test_a_photo_sorted_by_price_shows_its_kind_before_cheaper_other_kinds(indexed, model_dir, pil_photo):
    from shop.catalog.models import Category

    bags, tees = Category.from_path("Gear > Bags"), Category.from_path("Men > Tops > Tees")
    made = [
        ProductFactory(sku="BAG-A", title="carry all", category=bags, price=Decimal("80"), photos=[("red", "circle")]),
        ProductFactory(sku="BAG-B", title="tote", category=bags, price=Decimal("60"), photos=[("red", "circle")]),
        ProductFactory(sku="TEE", title="plain top", category=tees, price=Decimal("10"), photos=[("red", "square")]),
    ]
    indexed(*made)
    photo = pil_photo("red", "circle")  # a bag's
    by_price = services.browse_products(None, photo, sort="price_asc", page_size=10)
    assert [hit.product.sku for hit in by_price.hits] == ["BAG-B", "BAG-A", "TEE"]  # bags, then the cheaper tee
    dearest = services.browse_products(None, photo, sort="price_desc", page_size=10)
    assert [hit.product.sku for hit in dearest.hits] == ["BAG-A", "BAG-B", "TEE"]
    # words alone keep one order over every result: the cheapest first, whatever its kind
    assert services.browse_products("red", sort="price_asc", page_size=10).hits[0].product.sku == "TEE"
