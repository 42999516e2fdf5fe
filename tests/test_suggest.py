"""Autocomplete: products whose title words start with the typed words, categories with their counts,
the title-words GIN index used (``EXPLAIN``), and the ``/api/autocomplete/`` endpoint."""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.db.models import Q

from multimodal_search import services
from multimodal_search.ranking.departments import Departments, save_departments
from multimodal_search.services import memo
from multimodal_search.services.indexing import current_model_id
from multimodal_search.services.suggest import category_counts
from multimodal_search.store import sql
from multimodal_search.store.base import ProductVectors
from multimodal_search.store.pgvector import PgvectorStore
from shop.catalog.models import Category, Product
from tests.factories import ProductFactory

# the module (``services.suggest`` is also the function it exports)
suggest_module = importlib.import_module("multimodal_search.services.suggest")
HOODIES = "Men > Tops > Hoodies & Sweatshirts"
JACKETS = "Men > Tops > Jackets"
WOMEN_HOODIES = "Women > Tops > Hoodies & Sweatshirts"
BAGS = "Gear > Bags"


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    cache.clear()  # category counts are cached per encoder version; each test has its own catalogue
    yield
    cache.clear()


@pytest.fixture
def shop(indexed: Any) -> list[Product]:
    rows = [
        ("H1", "Chaz Kangeroo Hoodie", HOODIES),
        ("H2", "Hollister Backyard Sweatshirt", HOODIES),
        ("J1", "Kangeroo Rain Jacket", JACKETS),
        ("W1", "Hera Pullover Hoodie", WOMEN_HOODIES),
        ("B1", "Joust Duffle Bag", BAGS),
    ]
    products = [
        ProductFactory(sku=sku, title=title, category=Category.from_path(path), photos=["red"])
        for sku, title, path in rows
    ]
    indexed(*products)
    return products


def skus(found: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [item["sku"] for item in found["products"]]


def test_every_word_must_start_a_title_word_the_last_may_be_unfinished(shop: list[Product]) -> None:
    assert skus(services.suggest("chaz kang")) == ["H1"]
    assert skus(services.suggest("Chaz  KANGEROO hood")) == ["H1"]
    assert skus(services.suggest("chaz jack")) == []
    assert skus(services.suggest("angeroo")) == []  # a prefix, not a substring


def test_titles_starting_with_the_typed_text_come_first(shop: list[Product]) -> None:
    assert skus(services.suggest("kang")) == ["J1", "H1"]  # "Kangeroo Rain Jacket" starts with it
    assert skus(services.suggest("hood")) == ["H1", "W1"]  # same length: by title
    assert skus(services.suggest("hood", limit=1)) == ["H1"]


def test_the_start_of_a_product_code_suggests_its_products(shop: list[Product], indexed: Any) -> None:
    variants = [ProductFactory(sku=f"MH07-{c}", title=f"Hero Hoodie {c}", parent_sku="MH07") for c in ("Gray", "Red")]
    indexed(*variants)
    assert skus(services.suggest("mh0")) == ["MH07-Gray", "MH07-Red"]  # by code
    assert skus(services.suggest("MH07-G")) == ["MH07-Gray"] and skus(services.suggest("b1")) == ["B1"]
    assert skus(services.suggest("mh08")) == []
    # by its title: one product, its colours its detail
    (hero,) = services.suggest("hero")["products"]
    assert hero["sku"] == "MH07-Red" and hero["detail"] == ""  # no colour stated
    # a variant's code being typed (the size inserted): the product it is a variant of
    assert skus(services.suggest("mh07-xs-r")) == ["MH07-Red"]
    assert skus(services.suggest("MH07-XS-Gray")) == ["MH07-Gray"]
    assert skus(services.suggest("mh07-xs")) == ["MH07-Gray", "MH07-Red"] and skus(services.suggest("mh08-xs")) == []


def test_what_the_words_leave_out_is_left_out_of_the_dropdown(shop: list[Product], indexed: Any) -> None:
    Product.objects.filter(sku="H1").update(color="Black")
    Product.objects.filter(sku__in=["J1", "W1"]).update(color="Blue")
    assert skus(services.suggest("kang")) == ["J1", "H1"]
    assert skus(services.suggest("kang not jacket")) == ["H1"]  # a word: by the stored text
    assert skus(services.suggest("kangeroo -black")) == ["J1"]  # a colour: by the colour facet
    assert skus(services.suggest("hood except blue or black")) == []
    # a negation being typed matches the words before it, the dropdown does not go blank
    for typed in ("kang not", "kang without", "kang other", "kang but not"):
        assert skus(services.suggest(typed)) == ["J1", "H1"], typed
    assert services.suggest("not black") == {"products": [], "categories": []}
    # words of a product's name are the name ("No Limits Tee"), as the search reads them
    indexed(ProductFactory(sku="N1", title="No Limits Tee"))
    assert skus(services.suggest("no limits")) == ["N1"] and skus(services.suggest("no limits t")) == ["N1"]
    # choosing a category keeps the words' exclusion in the search within it
    found = services.suggest("black hood not blue")["categories"]
    assert [(item["path"], item["query"]) for item in found] == [
        (HOODIES, "black not blue"),
        (WOMEN_HOODIES, "black not blue"),
    ]


def test_products_carry_what_the_dropdown_shows(shop: list[Product]) -> None:
    (item,) = services.suggest("joust")["products"]
    product = shop[4]
    assert item["title"] == "Joust Duffle Bag" and item["url"] == product.get_absolute_url()
    assert item["image"] == product.images.first().image.url and item["detail"] == product.color == ""
    Product.objects.filter(sku="B1").update(color="Blue")  # what tells colour variants apart
    assert services.suggest("joust")["products"][0]["detail"] == "Blue"
    assert services.suggest("b1")["products"][0]["detail"] == "Blue · B1"  # found by its code


def test_products_no_longer_searchable_are_left_out(shop: list[Product]) -> None:
    Product.objects.filter(sku="H1").update(active=False)  # not yet removed from the index
    assert skus(services.suggest("hood")) == ["W1"]


def test_only_the_current_encoder_versions_rows_are_read(shop: list[Product]) -> None:
    stored = PgvectorStore()
    vector = np.ones(4, dtype=np.float32) / 2
    other = ProductVectors("H2", "x", vector, None, None, vector, fields={"title": "Chaz Other Title"})
    stored.save_products("another-encoder-v1", [other])
    assert skus(services.suggest("chaz")) == ["H1"]
    assert stored.suggest_products("another-encoder-v1", ["chaz"], typed="chaz", limit=5) == [
        ("H2", "Chaz Other Title")
    ]


def _db_count(path: str) -> int:
    return Product.objects.filter(Q(category__path=path) | Q(category__path__startswith=path + " > ")).count()


def test_categories_match_leaf_or_path_words_with_the_dbs_counts(shop: list[Product]) -> None:
    found = services.suggest("hood")["categories"]
    assert [item["path"] for item in found] == [HOODIES, WOMEN_HOODIES]
    assert [item["query"] for item in found] == ["Hoodies & Sweatshirts"] * 2
    for word in ("hood", "men", "tops", "gear", "sweat"):
        for item in services.suggest(word)["categories"]:
            assert item["count"] == _db_count(item["path"]), item
    men = services.suggest("men")["categories"]
    assert men[0] == {"path": "Men", "count": 3, "query": "Men"}  # the leaf match first
    assert {item["path"] for item in men} == {"Men", "Men > Tops", HOODIES, JACKETS}  # not "Women"


def test_a_category_keeps_the_other_words_to_search_within_it(shop: list[Product]) -> None:
    found = services.suggest("black hood")
    assert found["products"] == []
    assert [(item["path"], item["query"]) for item in found["categories"]] == [
        (HOODIES, "black"),
        (WOMEN_HOODIES, "black"),
    ]


def test_a_gender_typed_in_full_offers_its_own_categories_only(shop: list[Product]) -> None:
    # "mens hood": the men's hoodies, never the women's, and "mens" is what the category says already
    for text in ("mens hood", "men's hood", "men hood"):
        found = services.suggest(text)["categories"]
        assert [(item["path"], item["query"]) for item in found] == [(HOODIES, "Hoodies & Sweatshirts")], text
    assert [item["path"] for item in services.suggest("ladies hood")["categories"]] == [WOMEN_HOODIES]
    # the other words stay to search within it; a gender still being typed ("wo") is only a prefix
    assert [(item["path"], item["query"]) for item in services.suggest("womens black hood")["categories"]] == [
        (WOMEN_HOODIES, "black")
    ]
    assert BAGS in [item["path"] for item in services.suggest("mens bag")["categories"]]  # no gender in the path


def test_category_counts_are_the_stores_group_by(shop: list[Product]) -> None:
    counts = category_counts(services.current_model_id())
    assert counts == {path: _db_count(path) for path in counts}
    assert counts["Men"] == 3 and counts[BAGS] == 1


def test_old_counts_are_shown_while_a_thread_counts_them_again(
    transactional_db: None, shop: list[Product], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a million products counting takes seconds: no keystroke after the first waits for it."""
    model_id = services.current_model_id()
    counted = category_counts(model_id)  # the first count, in the request
    assert counted[HOODIES] == 2
    started: list[threading.Thread] = []

    class Recorded(threading.Thread):
        def start(self) -> None:
            started.append(self)
            super().start()

    monkeypatch.setattr(memo.threading, "Thread", Recorded)
    key = suggest_module._counts_key(model_id)
    cache.set(key, (time.time() - suggest_module.CATEGORY_CACHE_SECONDS - 1, {HOODIES: 99}), 600)
    assert category_counts(model_id) == {HOODIES: 99}  # the old counts, at once
    assert category_counts(model_id) == {HOODIES: 99} and len(started) == 1  # one count at a time
    started[0].join(timeout=30)
    assert category_counts(model_id) == counted and len(started) == 1  # counted again, and fresh
    # no counts kept and another request counting: this keystroke gets none rather than waiting
    cache.delete(key)
    assert cache.add(key + ":reading", 1, 60)
    assert category_counts(model_id) == {}
    assert services.suggest("hood")["categories"] == [] and skus(services.suggest("hood"))


@pytest.mark.parametrize("text", ["", "   ", "-- ,,", "_"])
def test_no_words_give_empty_lists(db: None, text: str) -> None:
    assert services.suggest(text) == {"products": [], "categories": []}


@pytest.mark.parametrize(
    ("text", "limit", "message"),
    [("a" * 101, 8, "at most 100"), ("ch\x00az", 8, "Null"), ("chaz", 0, "limit"), ("chaz", 21, "limit")],
)
def test_bad_input_is_refused(db: None, text: str, limit: int, message: str) -> None:
    with pytest.raises(services.SearchError, match=message):
        services.suggest(text, limit=limit)


def test_the_prefix_query_reads_the_title_words_index(db: None) -> None:
    """A selective prefix at 3,000 products: the planner's own choice (no settings changed) is the GIN index."""
    store = PgvectorStore()
    rng = np.random.RandomState(3)
    items = []
    for i in range(3000):
        vector = rng.standard_normal(8).astype(np.float32)
        title = f"Item{i} {['black', 'blue', 'red'][i % 3]} {['hoodie', 'jacket', 'tee'][i % 3]}"
        items.append(ProductVectors(f"E{i:05d}", str(i), vector, None, None, vector, fields={"title": title}))
    store.save_products("explain-suggest-v1", items)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {sql.PRODUCT_TABLE}")
        query = store.suggest_query("explain-suggest-v1", ["item2999"], typed="item2999", limit=8)
        assert query is not None
        cursor.execute("EXPLAIN " + query[0], query[1])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "mmsearch_pe_title_words_gin" in plan, plan
    assert "Seq Scan" not in plan, plan
    found = store.suggest_products("explain-suggest-v1", ["item12"], typed="item12", limit=3)
    # the title starting with the words, the whole word first, then the shortest titles
    assert [title for _, title in found] == ["Item12 black hoodie", "Item122 red tee", "Item125 red tee"]


# --- the API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api/", "/api/v1/"])
def test_api_answers_products_and_categories(client: Any, shop: list[Product], prefix: str) -> None:
    response = client.get(f"{prefix}autocomplete/", {"q": "hood", "limit": "1"})
    assert response.status_code == 200, response.content
    data = response.json()
    assert [item["sku"] for item in data["products"]] == ["H1"]
    assert data["categories"] == [{"path": HOODIES, "count": 2, "query": "Hoodies & Sweatshirts"}]
    assert client.get(f"{prefix}autocomplete/").json() == {"products": [], "categories": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "hood", "k": "3"}, "k"),
        ({"q": "hood", "limit": "0"}, "limit"),
        ({"q": "hood", "limit": "x"}, "limit"),
        ({"q": "a" * 101}, "q"),
        ({"q": "ho\x00od"}, "q"),
    ],
)
def test_api_refuses_bad_parameters(client: Any, db: None, params: dict[str, str], field: str) -> None:
    response = client.get("/api/v1/autocomplete/", params)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


def test_schema_documents_the_endpoint(client: Any) -> None:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/autocomplete/"]["get"]
    assert operation["operationId"] == "autocomplete"
    assert {p["name"] for p in operation["parameters"]} == {"q", "limit"}
    assert set(operation["responses"]) >= {"200", "400", "429"}


# --- the header box --------------------------------------------------------------------------------


def test_header_box_loads_the_autocomplete_with_the_api_address(client: Any, db: None) -> None:
    html = client.get("/").content.decode()
    assert 'data-mm-suggest="/api/v1/autocomplete/"' in html
    assert 'src="/static/multimodal_search/suggest.js"' in html
    # no JS: the words box is the plain one (the script adds role="combobox" and the listbox)
    assert 'role="combobox"' not in html and 'role="listbox"' not in html


def test_a_suggested_category_searches_within_it(client: Any, shop: list[Product]) -> None:
    (category, *_) = services.suggest("hood")["categories"]
    page = client.get("/search/", {"q": category["query"], "category": category["path"]})
    assert page.status_code == 200
    titles = set(re.findall(r'<a class="title" href="[^"]*">([^<]*)</a>', page.content.decode()))
    assert titles and titles <= {"Chaz Kangeroo Hoodie", "Hollister Backyard Sweatshirt"}


def test_a_word_above_the_departments_offers_their_categories(shop: list[Product], model_dir: Any) -> None:
    assert services.suggest("clothes")["categories"] == []  # no classes known before mmsearch_train
    model_id = current_model_id()
    save_departments(
        model_id,
        Departments(
            {"tops": ["hoodies & sweatshirts", "jackets"], "gear": ["bags"]},
            {"clothes": ["hoodies & sweatshirts", "jackets"]},
        ),
    )
    found = services.suggest("red clothes")["categories"]
    assert [(item["path"], item["query"]) for item in found] == [("Men > Tops", "red"), ("Women > Tops", "red")]
    assert [item["path"] for item in services.suggest("clothes")["categories"]][:1] == ["Men > Tops"]
    assert services.suggest("clothes")["categories"][0]["query"] == "Tops"
    # a shopper's words around it search nothing of their own: "i need some" was each category's query
    assert {item["query"] for item in services.suggest("i need some clothes")["categories"]} == {"Tops"}
    assert [(item["path"], item["query"]) for item in services.suggest("any black hood")["categories"]][:1] == [
        (HOODIES, "black")
    ]


def test_a_products_colours_are_one_suggestion(shop: list[Product], indexed: Any) -> None:
    hoodies = Category.objects.get(path=HOODIES)
    before = category_counts(current_model_id())[HOODIES]
    colours = [
        ProductFactory(sku=f"ZE-{c}", parent_sku="ZE", title="Zephyr Hoodie", color=c, category=hoodies)
        for c in ("Black", "Gray", "Orange")
    ]
    indexed(*colours, ProductFactory(sku="ZA", title="Zappa Hoodie", color="Red", category=hoodies))
    found = services.suggest("z")["products"]
    assert [(item["title"], item["detail"]) for item in found] == [
        ("Zappa Hoodie", "Red"),
        ("Zephyr Hoodie", "Black, Gray, Orange"),
    ]
    assert services.suggest("z", limit=1)["products"][0]["title"] == "Zappa Hoodie"
    # a category counts products, a product's colours once
    cache.clear()
    counts = {item["path"]: item["count"] for item in services.suggest("hoodies")["categories"]}
    assert counts[HOODIES] == before + 2


def test_a_colour_or_a_gender_typed_suggests_the_products_stating_it(shop: list[Product], indexed: Any) -> None:
    hoodies, women, bags = (Category.objects.get(path=path) for path in (HOODIES, WOMEN_HOODIES, BAGS))
    made = [
        ProductFactory(sku=f"ZE-{c}", parent_sku="ZE", title="Zephyr Hoodie", color=c, gender="Men", category=hoodies)
        for c in ("Black", "Grey", "Orange")
    ]
    made += [
        ProductFactory(sku="ZW", title="Zola Hoodie", color="Black/White", gender="Women", category=women),
        ProductFactory(sku="ZB", title="Zip Hoodie Bag", color="Blue", gender="", category=bags),
    ]
    indexed(*made)
    # no title has "black" or "mens": before, nothing was suggested
    assert [(item["sku"], item["detail"]) for item in services.suggest("black zhoo")["products"]] == []
    black = services.suggest("black z")["products"]
    assert [(item["sku"], item["detail"]) for item in black] == [("ZW", "Black/White"), ("ZE-Black", "Black")]
    assert skus(services.suggest("gray zeph")) == ["ZE-Grey"] and skus(services.suggest("zephyr grey")) == ["ZE-Grey"]
    assert skus(services.suggest("zephyr purple")) == []
    assert skus(services.suggest("zephyr bl")) == ["ZE-Black"] and skus(services.suggest("zola whi")) == ["ZW"]
    # a gender: its products, unisex ones and those stating none (a bag), never the other gender's
    assert skus(services.suggest("mens z")) == ["ZE-Black", "ZB"]  # shorter titles first
    assert skus(services.suggest("women's z")) == ["ZW", "ZB"]
    assert skus(services.suggest("womens black zo")) == ["ZW"]
    assert skus(services.suggest("black")) == []  # a colour alone: no other word to match titles with
