"""Refined search (services.browse): facet counts against the database, price intent in the words, sort and
pages, through the service, the API and the storefront page."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Count, Q
from django.utils import timezone

from multimodal_search import services
from multimodal_search.models import ShopperEvent
from multimodal_search.ranking.departments import Departments, save_departments
from multimodal_search.ranking.intent import kind_parts, parse_exclusions, parse_price, parse_size
from multimodal_search.ranking.spelling import Speller, save_speller
from multimodal_search.ranking.text import stem
from multimodal_search.refinements import price_label
from multimodal_search.services.query import current_encoder
from shop.catalog.models import Category, Product
from tests.factories import ProductFactory
from tests.pages import ticked_link

D = Decimal


@pytest.mark.parametrize(
    ("text", "rest", "low", "high", "order"),
    [
        ("cheap jacket under 50", "jacket", None, D("50"), "price_asc"),
        ("below 50 hoodie", "hoodie", None, D("50"), None),
        ("tee less than 19.99", "tee", None, D("19.99"), None),
        ("bag over 100", "bag", D("100"), None, None),
        ("between 20 and 40 bag", "bag", D("20"), D("40"), None),
        ("shoes between 40 and 20", "shoes", D("20"), D("40"), None),
        ("from 20 to 40 shorts", "shorts", D("20"), D("40"), None),
        ("$30-$60 jacket", "jacket", D("30"), D("60"), None),
        ("jacket $30 - 60", "jacket", D("30"), D("60"), None),
        ("hoodie under $45 dollars", "hoodie", None, D("45"), None),
        ("black hoodie", "black hoodie", None, None, None),
        # about a price: a fifth either side, whole units
        ("hoodie around 50", "hoodie", D("40"), D("60"), None),
        ("about $40 tee", "tee", D("32"), D("48"), None),
        ("about 3 pockets bag", "about 3 pockets bag", None, None, None),  # a count
        # two bare numbers, unless a unit follows or a size or a count comes before
        ("hoodie 30-50 for men", "hoodie for men", D("30"), D("50"), None),
        ("jacket 60 - 40 euros", "jacket", D("40"), D("60"), None),
        ("size 28-30 pants", "size 28-30 pants", None, None, None),
        ("tee 8-10 years", "tee 8-10 years", None, None, None),
        ("bag 20-30 l", "bag 20-30 l", None, None, None),
        ("24-MB01", "24-MB01", None, None, None),
        ("hoodie under 50 euros", "hoodie", None, D("50"), None),  # "euros" whole, no "os" left
        ("maxi dress size 40", "maxi dress size 40", None, None, None),
        # words that ask for low or high prices first
        ("cheap wool", "wool", None, None, "price_asc"),
        ("the cheapest yoga pants", "yoga pants", None, None, "price_asc"),
        ("Affordable Hoodie", "Hoodie", None, None, "price_asc"),
        ("low-cost tee", "tee", None, None, "price_asc"),
        ("less expensive bag", "bag", None, None, "price_asc"),
        ("inexpensive bag", "bag", None, None, "price_asc"),
        ("cheaper than 30 shorts", "shorts", None, D("30"), None),
        ("most expensive jacket", "jacket", None, None, "price_desc"),
        ("pricey watch over 100", "watch", D("100"), None, "price_desc"),
        ("cheapskate jacket", "cheapskate jacket", None, None, None),
        # words that ask for the newest first; "new" alone is a word of the product ("new balance")
        ("latest hoodies", "hoodies", None, None, "newest"),
        ("new arrivals", "", None, None, "newest"),
        ("womens jackets just in", "womens jackets", None, None, "newest"),
        ("new balance tee", "new balance tee", None, None, None),
        ("best selling hoodies", "hoodies", None, None, "best_selling"),
        # a gift: the best sellers, its recipient read as a gender, as what they do, or searched as typed
        ("gifts", "", None, None, "best_selling"),
        ("gift ideas for her under 50", "women", None, D("50"), "best_selling"),
        ("a present for my husband", "a men", None, None, "best_selling"),
        ("gift for a runner", "running", None, None, "best_selling"),
        ("presents for hikers", "hiking", None, None, "best_selling"),
        ("gift for a yogi", "yogi", None, None, "best_selling"),  # WordNet links no verb to it
        ("cheap gift for dad", "men", None, None, "price_asc"),
        ("gift card", "gift card", None, None, None),  # a product, as "gift set" and "gift wrap"
        ("gifted hoodie", "gifted hoodie", None, None, None),
        ("the most popular bag", "bag", None, None, "best_selling"),
        ("bestsellers", "", None, None, "best_selling"),
    ],
)
def test_price_intent_is_read_from_the_words_and_taken_out(text, rest, low, high, order):
    intent = parse_price(text)
    assert (intent.text, intent.minimum, intent.maximum, intent.order) == (rest, low, high, order)
    assert (intent.found, intent.worded) == (bool(low or high), bool(low or high or order))


def test_price_labels():
    assert price_label(None, D("25")) == "Under $25"
    assert price_label(D("25"), D("50")) == "$25 to $50"
    assert price_label(D("100"), None) == "$100 and over"


# colour, sizes, price, category leaf, title; created one day apart, in this order
SPECS = [
    ("Black", "S,M,L", "39.00", "Jackets", "Alpha Jacket"),
    ("Black", "M,L", "59.00", "Jackets", "Beta Jacket"),
    ("Blue", "S,M", "45.00", "Jackets", "Gamma Jacket"),
    ("Red", "L,XL", "57.00", "Jackets", "Delta Jacket"),
    ("Blue", "M", "22.00", "Hoodies", "Epsilon Hoodie"),
    ("Black", "S", "65.00", "Hoodies", "Zeta Hoodie"),
    ("Red", "XL", "18.50", "Tees", "Eta Tee"),
    ("Green", "S,M,L,XL", "120.00", "Jackets", "Theta Parka Jacket"),
    ("Black", "M,L", "49.99", "Tees", "Iota Tee"),
    ("Blue", "", "30.00", "Bags", "Kappa Bag"),
    ("Green", "M", None, "Hoodies", "Lambda Hoodie"),
    ("Black", "L", "50.00", "Jackets", "Mu Jacket"),
]


@pytest.fixture
def shop(indexed, model_dir):
    categories = {name: Category.from_path(f"Men > Tops > {name}") for name in {spec[3] for spec in SPECS}}
    products = [
        ProductFactory(
            title=title,
            color=colour,
            sizes=sizes,
            price=None if price is None else D(price),
            category=categories[leaf],
            photos=[colour.lower()],
        )
        for colour, sizes, price, leaf, title in SPECS
    ]
    start = timezone.now() - timedelta(days=30)
    for day, product in enumerate(products):
        Product.objects.filter(pk=product.pk).update(created_at=start + timedelta(days=day))
    indexed(*products)
    return products


def _skus(page) -> list[str]:
    return [hit.product.sku for hit in page.hits]


def _db_counts(pks: list[Any], filters: dict[str, list[str]], low=None, high=None) -> dict[str, dict[str, int]]:
    """The database's facet counts over ``pks``: each facet with every other facet's filter and the price."""

    def scope(skip: str) -> Any:
        return _rows(pks, {name: values for name, values in filters.items() if name != skip}, low, high)

    colours = scope("color").values("color").annotate(n=Count("pk"))
    categories = scope("category").values("category__path").annotate(n=Count("pk"))
    sized = scope("size")
    sizes = {size: sized.filter(_size_q([size])).count() for size in ("S", "M", "L", "XL")}
    return {
        "color": {row["color"]: row["n"] for row in colours},
        "category": {row["category__path"]: row["n"] for row in categories},
        "size": {size: n for size, n in sizes.items() if n},
    }


def _size_q(values: list[str]) -> Q:
    query = Q(pk__in=[])
    for value in values:
        query |= Q(sizes__regex=rf"(^|,)\s*{re.escape(value)}\s*(,|$)")
    return query


def _counts(page) -> dict[str, dict[str, int]]:
    return {name: {item.value: item.count for item in values if item.count} for name, values in page.facets.items()}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filters", "low", "high"),
    [
        ({}, None, None),
        ({"color": ["Black"]}, None, None),
        ({"color": ["Black", "Blue"], "size": ["M"]}, None, None),
        ({"size": ["L"], "category": ["Men > Tops > Jackets"]}, D("25"), D("60")),
    ],
)
def test_facet_counts_equal_the_databases_counts(shop, filters, low, high):
    result_set = services.browse_products("jacket", page_size=100)
    assert result_set.total == len(SPECS)  # no trained cut here: the whole pool is the result set
    pks = [hit.product.pk for hit in result_set.hits]
    page = services.browse_products("jacket", filters=filters, price_min=low, price_max=high, page_size=100)
    assert _counts(page) == _db_counts(pks, filters, low, high)
    # the results are the database's rows for all the filters, in the result set's order
    rows = _rows(pks, filters, low, high)
    assert sorted(_skus(page)) == sorted(rows.values_list("sku", flat=True)) and page.total == rows.count()
    assert [sku for sku in _skus(result_set) if sku in set(_skus(page))] == _skus(page)
    selected = {name: {item.value for item in values if item.selected} for name, values in page.facets.items()}
    assert selected == {name: set(filters.get(name, [])) for name in ("category", "color", "size")}
    # price ranges: counted with the facet filters, not the price filter
    for bucket in page.price_ranges:
        in_bucket = _rows(pks, filters, bucket.minimum, bucket.maximum).count()
        assert bucket.count == in_bucket, (bucket, in_bucket)


def _rows(pks: list[Any], filters: dict[str, list[str]], low: Decimal | None, high: Decimal | None) -> Any:
    """The database's products among ``pks`` that pass every filter."""
    rows = Product.objects.filter(pk__in=pks)
    if low is not None:
        rows = rows.filter(price__gte=low)
    if high is not None:
        rows = rows.filter(price__lt=high)
    for name, values in filters.items():
        if name == "color":
            rows = rows.filter(color__in=values)
        elif name == "category":
            rows = rows.filter(category__path__in=values)
        else:
            rows = rows.filter(_size_q(values))
    return rows


@pytest.mark.django_db
def test_under_50_in_the_words_keeps_only_items_under_50(shop):
    page = services.browse_products("cheap jacket under 50", page_size=100)
    prices = [hit.product.price for hit in page.hits]
    assert prices and all(price is not None and price < 50 for price in prices)
    assert page.total == Product.objects.filter(price__lt=50).count()
    assert page.price_max == D("50") and page.price_min is None
    assert page.query["text"] == "cheap jacket under 50" and page.query["searched"] == "jacket"
    assert page.query["price"] == {"min": None, "max": "50"}
    # explicit bounds win over the words
    explicit = services.browse_products("jacket under 50", price_min=D("50"), page_size=100)
    assert explicit.hits and all(hit.product.price >= 50 for hit in explicit.hits) and "price" not in explicit.query
    between = services.browse_products("between 20 and 40", page_size=100)
    assert sorted(hit.product.price for hit in between.hits) == [D("22.00"), D("30.00"), D("39.00")]


@pytest.mark.django_db
def test_sorts_order_the_filtered_results(shop):
    ascending = services.browse_products("jacket", sort="price_asc", page_size=100)
    prices = [hit.product.price for hit in ascending.hits]
    assert prices[-1] is None and prices[:-1] == sorted(prices[:-1])  # no price: last
    descending = services.browse_products("jacket", sort="price_desc", page_size=100)
    assert [hit.product.price for hit in descending.hits][:-1] == sorted(prices[:-1], reverse=True)
    newest = services.browse_products("jacket", sort="newest", filters={"color": ["Black"]}, page_size=100)
    moments = [hit.product.created_at for hit in newest.hits]
    assert moments == sorted(moments, reverse=True) and len(moments) == 5
    relevance = services.browse_products("jacket", page_size=100)
    assert _skus(relevance) == [hit.product.sku for hit in services.search_products("jacket", k=100).hits]
    # words that ask for an order by price: that order unless one is chosen, and the word not searched
    cheap = services.browse_products("cheap jacket", page_size=100)
    assert (cheap.sort, cheap.query["sort"], cheap.query["searched"]) == ("price_asc", "price_asc", "jacket")
    assert _skus(cheap) == _skus(ascending)
    dear = services.browse_products("most expensive jacket", page_size=100)
    assert dear.sort == "price_desc" and _skus(dear) == _skus(descending)
    chosen = services.browse_products("cheap jacket", sort="relevance", page_size=100)
    assert chosen.sort == "relevance" and "sort" not in chosen.query and _skus(chosen) == _skus(relevance)
    with pytest.raises(services.SearchError, match="Unknown sort"):
        services.browse_products("jacket", sort="cheapest")
    with pytest.raises(services.SearchError, match="Unknown facet"):
        services.browse_products("jacket", filters={"brand": ["Acme"]})


@pytest.mark.django_db
def test_words_of_price_alone_filter_and_sort_the_shops_popular_products(client, shop, pil_photo):
    beta, zeta = shop[1], shop[5]
    for kind in ("view", "view", "cart"):  # the most popular two, Zeta first
        ShopperEvent.objects.create(kind=kind, product_pk=str(zeta.pk), created_at=timezone.now())
    ShopperEvent.objects.create(kind="view", product_pk=str(beta.pk), created_at=timezone.now())
    under = services.browse_products("under 50", page_size=100)
    assert under.total == Product.objects.filter(price__lt=50).count() == 6
    assert under.query["browse"] == "popular" and under.method == "popular" and under.query["searched"] is None
    assert under.query["price"] == {"min": None, "max": "50"} and under.match is None
    assert under.sort == "best_selling" and "sort" not in under.query  # the order they come in, not the words'
    assert services.browse_products("under 50", sort="price_asc", page_size=100).sort == "price_asc"
    assert all(hit.relevance is None for hit in under.hits)
    over = services.browse_products("over 50", page_size=100)
    assert [hit.product for hit in over.hits][:2] == [zeta, beta]  # popular first, then the newest
    cheapest = services.browse_products("cheapest", page_size=100)
    prices = [hit.product.price for hit in cheapest.hits]
    assert cheapest.sort == "price_asc" and cheapest.total == len(shop) and prices[-1] is None
    assert prices[:-1] == sorted(prices[:-1])
    newest = services.browse_products("new arrivals", page_size=100)
    moments = [hit.product.created_at for hit in newest.hits]
    assert newest.sort == "newest" and newest.total == len(shop) and moments == sorted(moments, reverse=True)
    dearest = services.browse_products("most expensive", page_size=100, category="Men > Tops > Hoodies")
    assert [hit.product.title for hit in dearest.hits] == ["Zeta Hoodie", "Epsilon Hoodie", "Lambda Hoodie"]
    # a photo with a price: the photo is searched, not the popular products
    assert "browse" not in services.browse_products("under 50", image=pil_photo("red"), page_size=100).query

    answer = client.get("/api/v1/search/", {"q": "cheap", "k": 3}).json()
    assert answer["query"]["browse"] == "popular" and answer["method"] == "popular" and answer["total"] == len(shop)
    assert [item["price"] for item in answer["results"]] == ["18.50", "22.00", "30.00"]
    page = client.get("/search/", {"q": "under 50"}).content.decode()
    assert "Your words ask only about price" in page and "6 results" in page and "No results" not in page
    # each card says why it is there: new in the shop (the best sellers cost 50 or more), or a best seller
    assert '<span class="mm-newest" style="width: 100%"' in page and "new in the shop" in page
    dearer = client.get("/search/", {"q": "over 50"}).content.decode()
    assert '<span class="mm-popular" style="width: 100%"' in dearer and "popular with shoppers lately" in dearer


@pytest.mark.parametrize(
    ("text", "rest", "typed", "value"),
    [
        ("black leggings size m", "black leggings", "m", "M"),
        ("mens shorts size 32", "mens shorts", "32", "32"),
        ("tee in size extra large", "tee", "extra large", "XL"),
        ("SZ xs hoodie", "hoodie", "xs", "XS"),
        ("hoodie size: medium", "hoodie", "medium", "M"),
        ("hoodie size 40", "hoodie", "40", None),  # no result has it
        # the letter sizes with X's need no "size"
        ("hoodie xl", "hoodie", "xl", "XL"),
        ("XS leggings", "leggings", "XS", "XS"),
        ("tee in xl", "tee", "xl", "XL"),
    ],
)
def test_a_size_is_read_from_the_words(text, rest, typed, value):
    sized = parse_size(text)
    assert sized is not None and (sized.text, sized.sizes) == (rest, (typed,))
    assert sized.values_in(["XS", "S", "M", "L", "XL", "32", "34"]) == ([value] if value else [])
    assert parse_size("32 m") is None and parse_size("size matters") is None and parse_size("downsize 3") is None
    assert parse_size("plus size tee") is None and parse_size("size guide") is None  # no size after "size"
    for words in ("xs-black tee", "xlarge hoodie", "axl", "mens shorts 32", "m tee", "large bag"):
        assert parse_size(words) is None, words  # no letter size alone, or a number or S/M/L without "size"
    assert parse_size("jacket size m").values_in(["Small", "Medium"]) == ["Medium"]
    both = parse_size("tee size m or size l")
    assert both.text == "tee or" and both.values_in(["S", "M", "L"]) == ["M", "L"]
    # unticking one size the words named keeps the others in the words
    assert both.text_without("M") == "tee or size l" and both.text_without("Large") == "tee or size m"
    assert parse_size("jacket size medium").text_without("M") == "jacket"
    assert parse_size("size xl").text_without("XL") == ""


def test_several_sizes_beside_a_kind_size_it_together():
    kinds = {"short", "pant", "tee", "bottle"}
    for text, rest, typed in [
        ("mens shorts 32 and 34", "mens shorts", ("32", "34")),
        ("pants 30 32", "pants", ("30", "32")),
        ("mens shorts 32, 34 or 36", "mens shorts", ("32", "34", "36")),
        ("small or medium tee", "tee", ("small", "medium")),
        ("tee small or medium under 30", "tee under 30", ("small", "medium")),
    ]:
        sized = parse_size(text, kinds)
        assert sized is not None and (sized.text, sized.sizes) == (rest, typed), text
    # a size joined to another kind, or a number before a measure, stays words
    for text in ("shorts 32 and bottle", "bottle 32 oz", "32 and 34 tee", "tee large and black"):
        assert parse_size(text, kinds) is None, text
    # a long run of joined sizes is read once
    assert len(parse_size("tee " + "32 and " * 600 + "34", kinds).sizes) == 601


@pytest.mark.django_db
def test_a_size_in_the_words_filters_by_that_size(client, shop):
    sized = services.browse_products("jacket size m", page_size=100)
    chosen = services.browse_products("jacket", filters={"size": ["M"]}, page_size=100)
    assert sized.query["size"] == "M" and sized.query["searched"] == "jacket" and sized.total == chosen.total > 0
    assert _skus(sized) == _skus(chosen) and all("M" in hit.product.sizes.split(",") for hit in sized.hits)
    assert [item.value for item in sized.facets["size"] if item.selected] == ["M"]
    assert _skus(services.browse_products("jacket in size medium", page_size=100)) == _skus(chosen)
    # a size no result has filters nothing; a size filter given wins over the words
    assert _skus(services.browse_products("jacket size 44", page_size=100)) == _skus(
        services.browse_products("jacket", page_size=100)
    )
    given = services.browse_products("jacket size m", filters={"size": ["XL"]}, page_size=100)
    assert "size" not in given.query and _skus(given) == _skus(
        services.browse_products("jacket", filters={"size": ["XL"]}, page_size=100)
    )
    two = services.browse_products("jacket size m size xl", page_size=100)
    assert two.query["size"] == "M, XL" and _skus(two) == _skus(
        services.browse_products("jacket", filters={"size": ["M", "XL"]}, page_size=100)
    )
    assert _skus(services.browse_products("jacket m", page_size=100)) != _skus(chosen)  # "m" alone: a word
    assert _skus(services.browse_products("xl jacket", page_size=100)) == _skus(
        services.browse_products("jacket", filters={"size": ["XL"]}, page_size=100)
    )
    alone = services.browse_products("size xl", page_size=100)
    assert alone.query["browse"] == "popular" and alone.total == Product.objects.filter(sizes__contains="XL").count()

    answer = client.get("/api/v1/search/", {"q": "jacket size m"}).json()
    assert answer["query"]["size"] == "M" and answer["total"] == chosen.total
    page = client.get("/search/", {"q": "jacket size m"}).content.decode()
    assert 'Size <span class="muted">(from your words)</span>' in page
    # unticking the words' size searches the words without it
    assert ticked_link(page, "M") == "/search/?q=jacket"
    # of two sizes named, unticking one searches the words with the other
    two_page = client.get("/search/", {"q": "jacket size m size xl"}).content.decode()
    assert ticked_link(two_page, "M") == "/search/?q=jacket+size+xl"


@pytest.mark.parametrize(
    ("text", "rest", "terms"),
    [
        ("jacket not black", "jacket", ("black",)),
        ("NOT Black jacket", "jacket", ("black",)),
        ("hoodie without a hood", "hoodie", ("hood",)),
        ("no hood jacket", "jacket", ("hood",)),  # one word is left out, the next searched
        ("jacket not black or white", "jacket", ("black", "white")),
        ("jacket but not red, blue", "jacket", ("red", "blue")),
        ("tee not light blue", "tee", ("light blue",)),  # a colour keeps its shade
        ("bag other than black", "bag", ("black",)),
        ("shorts -white", "shorts", ("white",)),
        ("shorts without pockets size m", "shorts size m", ("pockets",)),
        ("not black", "", ("black",)),
        ("yoga pants that aren't black", "yoga pants", ("black",)),
        ("yoga pants that arent black", "yoga pants", ("black",)),
        ("yoga pants that are not black", "yoga pants", ("black",)),
        ("tee which is not cotton", "tee", ("cotton",)),
        ("hoodie that\u2019s not red", "hoodie", ("red",)),
        ("hoodie that isn\u2019t red", "hoodie", ("red",)),
        ("non-black hoodie", "hoodie", ("black",)),
        ("non black or white tee", "tee", ("black", "white")),
        ("shorts not too short, not black", "shorts not too short,", ("black",)),  # "too": how much
    ],
)
def test_what_the_words_leave_out_is_read_from_them(text, rest, terms):
    excluded = parse_exclusions(text)
    assert excluded is not None and (excluded.text, excluded.terms) == (rest, terms)
    # "t-shirt", "no-show", a word merely starting with "no" are no exclusion
    # "non" leaves out a colour only: "non-slip" is what the product is
    plain_words = ("t-shirt", "no-show socks", "nordic hoodie", "notebook bag", "black hoodie", "-", "not 50")
    for plain in (*plain_words, "non-slip socks", "non iron shirt", "a tee that is soft", "shorts not too short"):
        assert parse_exclusions(plain) is None, plain
    both = parse_exclusions("jacket not black or white")
    assert both.colours("black") == ["black"] and both.colours("hood") == [] and both.colours("light blue") == ["blue"]
    # showing one term's products again keeps the others left out
    assert both.text_without("black") == "jacket not white" and both.text_without("white") == "jacket not black"
    assert parse_exclusions("non-black or white tee").text_without("black") == "tee non-white"


@pytest.mark.django_db
def test_what_the_words_leave_out_is_not_in_the_results(client, shop, indexed):
    everything = services.browse_products("jacket", page_size=100)
    assert {hit.product.color for hit in everything.hits} >= {"Black", "Blue", "Red", "Green"}
    # a colour: by the colour facet, and the colour is not searched
    not_black = services.browse_products("jacket not black", page_size=100)
    assert not_black.query["excluded"] == ["black"] and not_black.query["searched"] == "jacket"
    assert _skus(not_black) == [hit.product.sku for hit in everything.hits if hit.product.color != "Black"]
    assert not_black.total == len(not_black.hits) > 0 and "Black" not in {v.value for v in not_black.facets["color"]}
    # said as a shopper says it: the same page ("that aren't" was searched as words, black jackets first)
    for said in ("jacket that isn't black", "jacket which is not black", "non-black jacket"):
        assert _skus(services.browse_products(said, page_size=100)) == _skus(not_black), said
    two = services.browse_products("jacket -black or blue", page_size=100)
    assert two.hits and {hit.product.color for hit in two.hits}.isdisjoint({"Black", "Blue"})
    # any other word: by the product's text ("parka" in one title)
    no_parka = services.browse_products("jacket without a parka", page_size=100)
    assert no_parka.query["excluded"] == ["parka"]
    parka = shop[7].sku
    assert _skus(no_parka) == [sku for sku in _skus(everything) if sku != parka] and parka in _skus(everything)
    # a phrase that is words of a product's name is the name, searched as words
    named = ProductFactory(title="No Parka Jacket", color="Black", category=shop[0].category)
    indexed(named)
    as_name = services.browse_products("no parka jacket", page_size=100)
    assert "excluded" not in as_name.query and named in [hit.product for hit in as_name.hits]
    assert services.browse_products("jacket -parka", page_size=100).query["excluded"] == ["parka"]  # "-": never a name
    # the words alone: the popular products, less the colour
    alone = services.browse_products("not black", page_size=100)
    assert alone.query["browse"] == "popular" and alone.total == Product.objects.exclude(color="Black").count()

    answer = client.get("/api/v1/search/", {"q": "jacket not black"}).json()
    assert answer["query"]["excluded"] == ["black"] and answer["total"] == not_black.total
    assert "Black" not in {item["color"] for item in answer["results"]}
    page = client.get("/search/", {"q": "jacket not black or blue"}).content.decode()
    assert "Leaving out, as your words ask:" in page
    # each term's link searches the words without its phrase, the other still left out
    assert '“black” (<a href="/search/?q=jacket+not+blue" rel="nofollow">show black too</a>)' in page
    assert '“blue” (<a href="/search/?q=jacket+not+black" rel="nofollow">show blue too</a>)' in page


@pytest.mark.django_db
def test_a_product_code_finds_its_products_first(client, shop, indexed):
    delta = shop[3]
    found = services.browse_products(delta.sku.lower(), page_size=100)  # case aside, not read as a typo
    assert found.query["code"] == delta.sku.lower() and "corrected" not in found.query
    assert found.hits[0].product == delta  # its relevance: 1 where relevance is calibrated (test_relevance)
    assert found.hits[0].explanation == {"code": 1.0}
    # a parent sku: each of its variants
    variants = [
        ProductFactory(sku=f"OM-77-{c}", title=f"Omega Tee {c}", color=c, parent_sku="OM-77") for c in ("Red", "Blue")
    ]
    indexed(*variants)
    both = services.browse_products("om-77", page_size=100, group_variants=False)
    assert {hit.product for hit in both.hits[:2]} == set(variants) and both.query["code"] == "om-77"
    grouped = services.browse_products("om-77", page_size=100)  # one product, in two colours
    assert {grouped.hits[0].product, *grouped.hits[0].variants} == set(variants)
    # a variant's code (an option inserted, as orders and labels print it) finds the product it is one of
    variant = services.browse_products("OM-77-XL-Blue", page_size=100)
    assert variant.hits[0].product == variants[1] and variant.query["code"] == "OM-77-XL-Blue"
    assert variants[0] not in {hit.product for hit in variant.hits if hit.explanation == {"code": 1.0}}
    # a variant of an option no product has: every product of its leading code
    found = services.browse_products("om-77-xl", page_size=100, group_variants=False)
    assert {hit.product for hit in found.hits[:2]} == set(variants)
    # a code no product has is searched as words; words with a digit but a space are words
    assert "code" not in services.browse_products("zz-999", page_size=100).query
    assert "code" not in services.browse_products(f"{delta.sku} jacket", page_size=100).query

    answer = client.get("/api/v1/search/", {"q": delta.sku}).json()
    assert answer["query"]["code"] == delta.sku and answer["results"][0]["sku"] == delta.sku
    page = client.get("/search/", {"q": delta.sku}).content.decode()
    assert f"Products with the code “{delta.sku}” come first." in page
    assert "its product code is your search" in page and '<span class="mm-code"' in page


@pytest.mark.django_db
def test_best_sellers_first_from_the_sort_or_the_words(client, shop):
    alpha, beta, gamma = shop[0], shop[1], shop[2]  # three jackets
    for product, kinds in ((gamma, ("purchase", "view")), (alpha, ("view",))):
        for kind in kinds:
            ShopperEvent.objects.create(kind=kind, product_pk=str(product.pk), created_at=timezone.now())
    ShopperEvent.objects.create(  # outside the 30 days: not counted
        kind="purchase", product_pk=str(beta.pk), created_at=timezone.now() - timedelta(days=40)
    )
    relevance = services.browse_products("jacket", page_size=100)
    best = services.browse_products("jacket", sort="best_selling", page_size=100)
    assert [hit.product for hit in best.hits][:2] == [gamma, alpha]
    rest = [sku for sku in _skus(relevance) if sku not in (gamma.sku, alpha.sku)]
    assert _skus(best)[2:] == rest and best.total == relevance.total  # the others in relevance order
    worded = services.browse_products("best selling jacket", page_size=100)
    assert (worded.sort, worded.query["sort"], worded.query["searched"]) == ("best_selling", "best_selling", "jacket")
    assert [hit.product for hit in worded.hits][:2] == [gamma, alpha]
    answer = client.get("/api/v1/search/", {"q": "jacket", "ordering": "-popularity", "k": 2}).json()
    assert answer["sort"] == "best_selling" and [item["sku"] for item in answer["results"]] == [gamma.sku, alpha.sku]
    page = client.get("/search/", {"q": "bestsellers"}).content.decode()
    assert '<option value="best_selling" selected>Best sellers</option>' in page and "(from your words)" in page


@pytest.mark.django_db
def test_page_2_continues_page_1_without_overlap(shop):
    everything = _skus(services.browse_products("jacket", sort="price_asc", page_size=100))
    first = services.browse_products("jacket", sort="price_asc", page=1, page_size=5)
    second = services.browse_products("jacket", sort="price_asc", page=2, page_size=5)
    third = services.browse_products("jacket", sort="price_asc", page=3, page_size=5)
    assert (first.total, first.pages, len(third.hits)) == (12, 3, 2)
    assert _skus(first) + _skus(second) + _skus(third) == everything
    assert not set(_skus(first)) & set(_skus(second))
    assert services.browse_products("jacket", page=4, page_size=5).hits == []
    last = services.browse_products("jacket", sort="price_asc", page=4, page_size=5, clamp_page=True)
    assert (last.page, last.pages, _skus(last)) == (3, 3, _skus(third))
    nothing = services.browse_products("jacket", filters={"color": ["Nope"]}, page=7, page_size=5, clamp_page=True)
    assert (nothing.page, nothing.pages, nothing.hits) == (1, 0, [])


@pytest.mark.django_db
def test_api_filters_sorts_pages_and_counts(client, shop):
    params = {"q": "jacket", "filter": ["color:Black", "color:Blue"], "sort": "price_asc", "page_size": 3}
    body = client.get("/api/v1/search/", params).json()
    assert body["total"] == 8 and body["pages"] == 3 and body["count"] == 3 and body["page"] == 1
    assert body["filters"] == {"color": ["Black", "Blue"]} and body["previous"] is None
    colours = {item["value"]: item["count"] for item in body["facets"]["color"]}
    assert colours == {"Black": 5, "Blue": 3, "Red": 2, "Green": 2}  # the colour facet ignores its own filter
    assert {item["value"] for item in body["facets"]["color"] if item["selected"]} == {"Black", "Blue"}
    assert sum(item["count"] for item in body["price_ranges"]) == 8
    second = client.get(body["next"]).json()
    assert second["page"] == 2 and "page=1" in second["previous"] and "page=3" in second["next"]
    skus = [item["sku"] for item in body["results"]] + [item["sku"] for item in second["results"]]
    assert len(set(skus)) == 6
    prices = [D(item["price"]) for page in (body, second) for item in page["results"]]
    assert prices == sorted(prices)
    cheap = client.get("/api/search/", {"q": "cheap jacket under 50", "k": 100}).json()
    assert cheap["results"] and all(D(item["price"]) < 50 for item in cheap["results"])
    assert cheap["price_max"] == "50" and cheap["query"]["price"] == {"min": None, "max": "50"}
    assert cheap["sort"] == "price_asc" and cheap["query"]["sort"] == "price_asc"
    cheap_prices = [D(item["price"]) for item in cheap["results"]]
    assert cheap_prices == sorted(cheap_prices)
    chosen = client.get("/api/search/", {"q": "cheap jacket", "sort": "relevance"}).json()
    assert chosen["sort"] == "relevance" and "sort" not in chosen["query"]
    # today's keys and meaning: k results, count = this page's results
    plain = client.get("/api/search/", {"q": "jacket", "k": 4}).json()
    assert plain["count"] == 4 and len(plain["results"]) == 4 and plain["total"] == 12
    ordered = client.get("/api/search/", {"q": "jacket", "ordering": "-price", "k": 12}).json()
    assert ordered["sort"] == "price_desc"
    priced = [D(item["price"]) for item in ordered["results"] if item["price"] is not None]
    assert priced and priced == sorted(priced, reverse=True)
    bads = ({"ordering": "price", "sort": "price_desc"}, {"ordering": "title"})
    for bad in ({"filter": "colour"}, {"filter": "brand:Acme"}, {"sort": "cheapest"}, {"page": 0}, *bads):
        assert client.get("/api/search/", {"q": "jacket", **bad}).status_code == 400, bad
    assert client.get("/api/search/", {"q": "jacket", "price_min": 50, "price_max": 20}).status_code == 400
    unknown = client.get("/api/v1/search/", {"q": "jacket", "sort": "cheapest"}).json()["error"]
    assert unknown["field"] == "sort" and unknown["message"].startswith(
        '"cheapest" is not a valid choice; choose one of:'
    )
    assert "price_asc" in unknown["message"] and "relevance" in unknown["message"]


@pytest.mark.django_db
def test_api_photo_search_takes_the_same_refinements(client, shop, photo):
    body = client.post(
        "/api/v1/search/?sort=price_desc", {"image": photo("red"), "filter": "size:XL", "page_size": 2}
    ).json()
    assert body["total"] == 3 and body["count"] == 2 and body["next"] is None  # POST: send the form again
    prices = [D(item["price"]) for item in body["results"]]
    assert prices == sorted(prices, reverse=True) and prices[0] == D("120.00")


@pytest.mark.django_db
def test_storefront_page_shows_facets_sort_and_pages(client, shop, settings):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "FACETS": {"PAGE_SIZE": 4}}
    response = client.get("/search/", {"q": "jacket", "filter": "color:Black", "sort": "price_asc"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "5 results (page 1 of 2)" in html
    assert 'aria-label="Filter results"' in html and '☑</span> Black</a> <span class="count">(5)</span>' in html
    assert 'Blue</a> <span class="count">(3)</span>' in html
    # the panel a phone folds above the results says how many filters are on
    assert '<details class="mm-facets-panel" open data-mm-filters>' in html and "(1 applied)" in html
    priced = client.get("/search/", {"q": "jacket", "filter": "color:Black", "price_min": "50"}).content.decode()
    assert "(2 applied)" in priced and "applied)" not in client.get("/search/", {"q": "jacket"}).content.decode()
    assert '<option value="price_asc" selected>' in html and 'rel="next"' in html
    cards = re.findall(r'<a class="title" href="[^"]+">([^<]+)</a>', html)
    assert cards == ["Alpha Jacket", "Iota Tee", "Mu Jacket", "Beta Jacket"]  # black, by price, first 4
    next_url = re.search(r'<a href="([^"]+)" rel="next">', html).group(1).replace("&amp;", "&")
    second = client.get(next_url).content.decode()
    assert re.findall(r'<a class="title" href="[^"]+">([^<]+)</a>', second) == ["Zeta Hoodie"]
    # an old link past the last page shows the last page, not "no results"
    past = client.get(next_url.replace("page=2", "page=9")).content.decode()
    assert "5 results (page 2 of 2)" in past and "No results" not in past
    assert re.findall(r'<a class="title" href="[^"]+">([^<]+)</a>', past) == ["Zeta Hoodie"]
    # ticking "Blue" keeps the query, the black filter and the sort, and starts again at page 1
    blue = re.search(r'<a href="([^"]+)" rel="nofollow"><span class="mm-check" aria-hidden="true">☐</span> Blue', html)
    url = blue.group(1).replace("&amp;", "&")
    assert "q=jacket" in url and "filter=color%3ABlack" in url and "filter=color%3ABlue" in url and "page=" not in url
    both = client.get(url).content.decode()
    assert "8 results" in both
    cheap = client.get("/search/", {"q": "cheap jacket under 50"}).content.decode()
    assert "Price: Under $50" in cheap and "(from your words)" in cheap
    prices = [D(p) for p in re.findall(r'<div class="price">\$([\d.]+)</div>', cheap)]
    assert prices and all(price < 50 for price in prices) and prices == sorted(prices)
    assert '<option value="price_asc" selected>' in cheap and '</select> <span class="muted">(from your words)' in cheap
    # choosing another order in the select wins over the words
    chosen = client.get("/search/", {"q": "cheap jacket", "sort": "price_desc"}).content.decode()
    assert '<option value="price_desc" selected>' in chosen and "</select> <span" not in chosen


@pytest.mark.django_db
def test_words_of_price_alone_load_the_facet_fields_only_and_the_page_in_full(shop):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ShopperEvent.objects.create(kind="view", product_pk=str(shop[3].pk), created_at=timezone.now())  # one popular
    with CaptureQueriesContext(connection) as queries:
        page = services.browse_products("under 100", page_size=3)
    assert page.total == Product.objects.filter(price__lt=100).count() and len(page.hits) == 3
    products = [q["sql"] for q in queries.captured_queries if 'FROM "catalog_product"' in q["sql"]]
    photos = [q["sql"] for q in queries.captured_queries if 'FROM "catalog_productimage"' in q["sql"]]
    # the popular product, then the newest (the facets' fields only); then the page's 3 in full, with photos
    assert len(products) == 3 and all('"description"' not in sql for sql in products[:2])
    assert '"description"' in products[2] and len(photos) == 1
    with CaptureQueriesContext(connection) as later:
        for hit in page.hits:
            assert hit.product.description is not None and list(hit.product.images.all())
    assert len(later.captured_queries) == 0


@pytest.mark.django_db
def test_the_result_set_loads_the_facet_fields_only_and_the_page_in_full(shop, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from shop.catalog.search import ProductAdapter

    def browse(sort: str = "price_desc") -> Any:
        return services.browse_products("jacket", filters={"color": ["Black", "Blue"]}, sort=sort, page_size=3)

    with CaptureQueriesContext(connection) as queries:
        lean = browse()
    loads = {  # products asked for -> the columns read
        len(re.search(r'"catalog_product"\."id" IN \(([^)]*)\)', q["sql"]).group(1).split(",")): q["sql"].split(
            " FROM "
        )[0]
        for q in queries.captured_queries
        if 'FROM "catalog_product"' in q["sql"]
    }
    # the whole result set (12 products): the facets' fields, no description or attributes; then the
    # page's 3 products in full, their photos prefetched
    assert set(loads) == {len(SPECS), 3}, loads
    assert '"color"' in loads[len(SPECS)] and '"description"' not in loads[len(SPECS)]
    assert '"attributes"' not in loads[len(SPECS)] and '"created_at"' not in loads[len(SPECS)]
    assert '"description"' in loads[3]
    with CaptureQueriesContext(connection) as later:
        for hit in lean.hits:
            assert hit.product.description is not None and hit.product.attributes is not None
            assert list(hit.product.images.all())
    assert len(later.captured_queries) == 0
    # the same page, facets, totals and price ranges as loading every field
    monkeypatch.setattr(ProductAdapter, "facet_fields", None)
    full = browse()
    assert _skus(lean) == _skus(full) and (lean.total, lean.pages) == (full.total, full.pages) == (8, 3)
    assert _counts(lean) == _counts(full) and lean.price_ranges == full.price_ranges
    # the newest sort reads each product's creation time: the whole set is loaded with every field
    monkeypatch.undo()
    with CaptureQueriesContext(connection) as queries:
        newest = browse("newest")
    whole = [q["sql"] for q in queries.captured_queries if 'FROM "catalog_product"' in q["sql"]]
    assert len(whole) == 1 and '"created_at"' in whole[0] and '"description"' in whole[0]
    moments = [hit.product.created_at for hit in newest.hits]
    assert len(moments) == 3 and moments == sorted(moments, reverse=True)


def test_kinds_joined_are_read_as_one_search_each():
    kinds = {stem(word) for word in ("jacket", "hoodie", "tee", "short", "legging", "pant")}
    assert kind_parts("hoodies and jackets", kinds) == ["hoodies", "jackets"]
    assert kind_parts("tees, shorts & leggings", kinds) == ["tees", "shorts", "leggings"]
    assert kind_parts("jacket or pants", kinds) == ["jacket", "pants"]
    # a gender named once is every part's; a part's own stays
    assert kind_parts("men's shorts or leggings", kinds) == ["men's shorts", "men's leggings"]
    assert kind_parts("womens tees and mens shorts", kinds) == ["womens tees", "mens shorts"]
    # one kind, colours, words that are no kind the catalogue sells: one search
    for text in ("jacket", "red or blue jacket", "black and white tee", "rock and roll tee", "tees and", ""):
        assert kind_parts(text, kinds) is None, text
    assert kind_parts("tees and shorts", set()) is None  # no kinds known (before mmsearch_train)
    assert kind_parts("tee, tee, tee, tee, tee", kinds) is None  # more than MAX_KINDS


@pytest.mark.django_db
def test_kinds_joined_are_searched_each_and_shown_in_turn(client, shop, indexed):
    assert "parts" not in services.browse_products("hoodies and tees", page_size=100).query  # no kinds known yet
    save_departments(current_encoder()[1], Departments(kinds=sorted({stem(w) for w in ("jacket", "hoodie", "tee")})))
    both = services.browse_products("hoodies and tees", page_size=100)
    assert both.query["parts"] == ["hoodies", "tees"] and both.query["text"] == "hoodies and tees"
    hoodies = _skus(services.browse_products("hoodies", page_size=100))
    tees = _skus(services.browse_products("tees", page_size=100))
    # the first of each, then the second of each, ...: each product once
    taken = [sku for pair in zip(hoodies, tees) for sku in pair]
    assert _skus(both)[:4] == list(dict.fromkeys(taken))[:4] and len(set(_skus(both))) == both.total
    assert [hit.product.title.split()[-1] for hit in both.hits[:2]] == ["Hoodie", "Tee"]
    assert "parts" not in services.browse_products("black and blue jacket", page_size=100).query
    # a typo in a part is read as the catalogue's word first (unless searched as typed)
    save_speller(current_encoder()[1], Speller({"hoodies": 5, "hoodie": 5, "tees": 5, "tee": 5}))
    typo = services.browse_products("hodies and tees", page_size=100)
    assert typo.query["parts"] == ["hoodies", "tees"] and typo.query["corrected"] == "hoodies and tees"
    assert _skus(typo) == _skus(both)
    assert "parts" not in services.browse_products("hodies and tees", page_size=100, as_typed=True).query
    # words of a product's title are its name, searched as one
    indexed(ProductFactory(title="Hoodie & Tee Bundle"))
    assert "parts" not in services.browse_products("hoodie & tee bundle", page_size=100).query
    answer = client.get("/api/v1/search/", {"q": "hoodies and tees"}).json()
    assert answer["query"]["parts"] == ["hoodies", "tees"]
    page = client.get("/search/", {"q": "hoodies and tees"}).content.decode()
    assert "Each of “hoodies” and “tees”, searched on its own and shown in turn." in page


@pytest.mark.django_db
def test_a_gift_shows_the_best_sellers_for_whoever_it_is_for(client, shop):
    alpha, epsilon = shop[0], shop[4]  # a jacket and a hoodie
    for product in (epsilon, alpha, epsilon):
        ShopperEvent.objects.create(kind="purchase", product_pk=str(product.pk), created_at=timezone.now())
    gifts = services.browse_products("gifts", page_size=100)
    assert gifts.sort == "best_selling" and gifts.query["browse"] == "popular"
    assert [hit.product for hit in gifts.hits][:2] == [epsilon, alpha]
    jackets = services.browse_products("jacket gift ideas", page_size=100)
    assert (jackets.sort, jackets.query["searched"]) == ("best_selling", "jacket")
    assert next(hit.product for hit in jackets.hits if "Jacket" in hit.product.title) == alpha  # the best-selling one
    for_him = services.browse_products("gift for him", page_size=100)
    assert for_him.query["searched"] == "men" and for_him.sort == "best_selling"
    page = client.get("/search/", {"q": "gift for him"}).content.decode()
    assert '<option value="best_selling" selected>Best sellers</option>' in page and "(from your words)" in page


@pytest.mark.django_db
def test_nothing_in_the_price_range_offers_the_results_at_any_price(client, shop):
    html = client.get("/search/", {"q": "jacket under 15"}).content.decode()
    assert "0 results" in html and "Nothing under $15 matches “jacket”." in html
    link = re.search(r'<a href="([^"]+)" rel="nofollow">Show (\d+) results at any price</a>', html)
    assert link is not None, html[html.index("Nothing") :][:400]
    assert link.group(1) == "/search/?q=jacket"  # the words without their price
    followed = client.get(link.group(1)).content.decode()
    assert f"{link.group(2)} results" in followed
    # an explicit price filter: the same words, the filter taken off
    html = client.get("/search/", {"q": "jacket", "price_max": "15"}).content.decode()
    assert 'href="/search/?q=jacket" rel="nofollow">Show' in html
    # words of a price alone have nothing else to search: no link that would search them again
    html = client.get("/search/", {"q": "under 5"}).content.decode()
    assert "at any price" not in html and "0 results" in html
    # the API says how many there are at any price; null without a price filter
    answer = client.get("/api/v1/search/", {"q": "jacket under 15"}).json()
    assert answer["total"] == 0 and answer["at_any_price"] == int(link.group(2))
    assert client.get("/api/v1/search/", {"q": "jacket"}).json()["at_any_price"] is None
    assert client.get("/api/v1/search/", {"q": "jacket under 100"}).json()["at_any_price"] >= 1
