"""A photo with words that name a colour ("like this photo, but in blue"): the photo's product in that colour
comes first (services.candidates: the photo's products' other colours join the pool and look as much like
the photo as the colour photographed)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from multimodal_search import services
from multimodal_search.services.candidates import like_a_sibling
from multimodal_search.services.query import current_encoder, encode_query
from multimodal_search.store import get_store
from tests.factories import ProductFactory


def test_a_product_looks_at_least_as_much_like_the_photo_as_another_of_its_group():
    visual = {"A-Red": 0.9, "A-Blue": 0.2, "B-Blue": 0.5, "C": 0.1}
    lifted = like_a_sibling(visual, {"A-Red": ["A-Blue", "A-Green"], "A-Blue": ["A-Red"]})
    assert lifted == {"A-Red": 0.9, "A-Blue": 0.9, "B-Blue": 0.5, "C": 0.1}  # only what was scored


@pytest.fixture
def jackets(indexed, model_dir):
    def product(sku: str, parent: str, colour: str, shape: str, title: str = "rain jacket"):
        return ProductFactory(
            sku=sku, parent_sku=parent, title=title, color=colour, price=Decimal("50"), photos=[(colour.lower(), shape)]
        )

    made = {
        "red": product("JK-Red", "JK", "Red", "circle"),
        "blue": product("JK-Blue", "JK", "Blue", "circle"),
        "other blue": product("SH-Blue", "SH", "Blue", "square", "rain shell"),
        "other red": product("SH-Red", "SH", "Red", "square", "rain shell"),
    }
    indexed(*made.values())
    return made


@pytest.mark.django_db
def test_the_photos_product_in_the_colour_the_words_name_comes_first(jackets, pil_photo):
    store, model_id = get_store(), current_encoder()[1]
    assert store.siblings([str(jackets["red"].pk)], model_id=model_id) == {
        str(jackets["red"].pk): [str(jackets["blue"].pk)]
    }
    assert store.siblings([str(jackets["red"].pk)], model_id=model_id, categories=["Nowhere"]) == {}

    photo = pil_photo("red", "circle")  # the red jacket's photo
    found = services.search_products("in blue", photo, k=4)
    first, *_ = found.hits
    assert first.product == jackets["blue"]
    red = next(hit for hit in found.hits if hit.product == jackets["red"])
    assert first.signals["visual"] == pytest.approx(red.signals["visual"])  # as like the photo as the red one
    # without words of a colour, nothing is lifted: the photographed colour first, the others by their own photos
    alone = services.search_products("rain jacket", photo, k=4)
    assert alone.hits[0].product == jackets["red"]
    blue = next(hit for hit in alone.hits if hit.product == jackets["blue"])
    assert blue.signals["visual"] < alone.hits[0].signals["visual"]


@pytest.mark.django_db
def test_a_colour_it_does_not_come_in_shows_its_kind_in_that_colour(indexed, model_dir, pil_photo):
    from shop.catalog.models import Category

    bags, tees = Category.from_path("Gear > Bags"), Category.from_path("Men > Tops > Tees")

    def product(sku: str, colour: str, shape: str, category, title: str):
        return ProductFactory(sku=sku, title=title, color=colour, category=category, photos=[(colour.lower(), shape)])

    made = [
        *(product(f"BAG-{c}", c, "circle", bags, "carry all") for c in ("Red", "Green")),
        product("BAG-2", "Red", "circle", bags, "carry all two"),
        product("BAG-3", "Blue", "circle", bags, "carry all three"),
        *(product(f"TEE-{i}", "Blue", "square", tees, f"plain top {i}") for i in range(3)),
    ]
    indexed(*made)
    photo = pil_photo("red", "circle")  # a red bag's
    query = encode_query("in blue", photo)
    assert query.facets == {"category": ["bags"]}  # the kind its nearest products are
    assert encode_query("blue", None).facets == {}  # no photo: the words name no kind
    found = services.search_products("in blue", photo, k=4).hits
    assert found[0].product.sku == "BAG-3"  # the blue bag before the blue tops
    assert found[0].explanation.get("category", 0) > 0
    # as a shopper puts it: the words that point at the photo say nothing of their own
    for words in ("like this photo, but in blue", "same one but in blue", "show me this in blue"):
        assert encode_query(words, photo).facets == {"category": ["bags"]}, words
        assert services.search_products(words, photo, k=4).hits[0].product.sku == "BAG-3", words
    assert encode_query("like this hoodie, but in blue", photo).facets == {}  # the words name a kind
    # words that only point at the photo ask for nothing it does not show: the photo's own ranking
    alone = [hit.product.sku for hit in services.browse_products(None, photo, page_size=7, group_variants=False).hits]
    for words in ("like this photo", "same one please"):
        page = services.browse_products(words, photo, page_size=7, group_variants=False)
        assert [hit.product.sku for hit in page.hits] == alone, words
        assert page.query["text"] == words and page.query["searched"] is None
    cheap = services.browse_products("like this but under 20", photo, page_size=7, group_variants=False)
    assert cheap.query["searched"] is None and cheap.query["price"] == {"min": None, "max": "20"}


@pytest.mark.django_db
def test_the_other_gender_of_the_photos_kind(indexed, model_dir, pil_photo):
    from shop.catalog.models import Category

    women, men = Category.from_path("Women > Tops > Tees"), Category.from_path("Men > Tops > Tees")
    bags = Category.from_path("Gear > Bags")
    made = [
        ProductFactory(sku="WT", title="soft top", gender="Women", category=women, photos=[("red", "square")]),
        ProductFactory(sku="MT", title="soft top two", gender="Men", category=men, photos=[("blue", "square")]),
        ProductFactory(sku="BG", title="carry all", gender="Men", category=bags, photos=[("blue", "square")]),
    ]
    indexed(*made)
    photo = pil_photo("red", "square")  # the women's tee's
    assert encode_query("for men", photo).facets == {"category": ["tees"]}  # its leaf, whichever gender
    assert encode_query("for men", None).facets == {}
    found = [hit.product.sku for hit in services.search_products("for men", photo, k=3).hits]
    assert found.index("MT") < found.index("BG")  # the men's tee before the men's bag: the kind is the photo's
    # the women's tee itself, most like the photo, states the other gender: it comes after every men's product
    assert found[-1] == "WT"
    assert services.search_products("for men", photo, k=3).hits[-1].signals["asked_otherwise"] == 1.0


@pytest.mark.django_db
def test_a_colour_with_a_photo_keeps_the_photos_gender(indexed, model_dir, pil_photo):
    from shop.catalog.models import Category

    women, men = Category.from_path("Women > Tops > Hoodies"), Category.from_path("Men > Tops > Hoodies")
    made = [
        ProductFactory(
            sku="MH-Red", title="zip hoodie", gender="Men", color="Red", category=men, photos=[("red", "square")]
        ),
        ProductFactory(
            sku="MH2", title="zip hoodie two", gender="Men", color="Red", category=men, photos=[("red", "square")]
        ),
        ProductFactory(
            sku="MB", title="zip hoodie three", gender="Men", color="Blue", category=men, photos=[("blue", "circle")]
        ),
        ProductFactory(
            sku="WB", title="zip hoodie", gender="Women", color="Blue", category=women, photos=[("blue", "square")]
        ),
    ]
    indexed(*made)
    photo = pil_photo("red", "square")  # the men's red hoodies'
    query = encode_query("in blue", photo)
    assert query.gender == "men" and query.colours == ["blue"]  # the photo's gender: the words name none
    assert encode_query("in blue for women", photo).gender == "women"  # the words' own, when they name one
    found = [hit.product.sku for hit in services.search_products("in blue", photo, k=4).hits]
    assert found[0] == "MB"  # the men's blue hoodie, though the women's looks more like the photo
    assert found.index("WB") > found.index("MB")


@pytest.mark.django_db
def test_a_product_stating_another_colour_than_asked_comes_after_those_that_do_not(jackets, pil_photo):
    photo = pil_photo("red", "circle")  # the red jacket's photo: it looks most like it
    found = services.search_products("in blue", photo, k=4).hits
    order = [hit.product.sku for hit in found]
    assert set(order[:2]) == {"JK-Blue", "SH-Blue"} and set(order[2:]) == {"JK-Red", "SH-Red"}
    assert [hit.signals["asked_otherwise"] for hit in found] == [0.0, 0.0, 1.0, 1.0]
    # without a photo nothing is moved by it: the words alone rank as before
    assert "asked_otherwise" not in services.search_products("in blue", None, k=4).hits[0].signals


def test_stated_otherwise_reads_the_stated_colour_and_gender_only():
    from multimodal_search.ranking.query import Query
    from multimodal_search.services.candidates import stated_otherwise

    blue = Query(text="in blue", text_vector=None, image_shared=None, image_features=None, colours=["blue"])
    assert stated_otherwise(blue, {"color": "Purple"}) and not stated_otherwise(blue, {"color": "Light Blue"})
    assert not stated_otherwise(blue, {"color": "Blue/White"}) and not stated_otherwise(blue, {})  # nothing stated
    men = Query(text="for men", text_vector=None, image_shared=None, image_features=None, gender="men")
    assert stated_otherwise(men, {"gender": "Women"}) and not stated_otherwise(men, {"gender": "Unisex"})
    assert not stated_otherwise(men, {"gender": "Men", "color": "Purple"}) and not stated_otherwise(men, {})


@pytest.mark.django_db
def test_a_photos_look_alikes_that_its_words_narrow_show_its_kind_first(indexed, model_dir, pil_photo, monkeypatch):
    from multimodal_search.encoders import get_encoder
    from multimodal_search.ranking.calibration import PhotoCalibration
    from shop.catalog.models import Category

    bags, tees = Category.from_path("Gear > Bags"), Category.from_path("Men > Tops > Tees")

    def product(sku: str, colour: str, shape: str, category, price: str = "30"):
        return ProductFactory(
            sku=sku, title="carry all", color=colour, category=category, price=Decimal(price), photos=[(colour, shape)]
        )

    indexed(
        *(product(f"BAG-R{i}", "red", "circle", bags) for i in range(3)),
        product("TEE-O", "orange", "circle", tees),  # nearer the red bag's photo than the blue bag is
        product("BAG-B", "blue", "square", bags),
        product("BAG-W", "blue", "square", Category.from_path("Women > Bags")),  # another department's bags
        product("BAG-D", "red", "circle", bags, price="90"),
    )
    photo = pil_photo("red", "circle")  # a red bag's

    def skus(words: str | None, cut: str | None = None) -> list[str]:
        page = services.browse_products(words, photo, page_size=8, group_variants=False, min_relevance=cut)
        return [hit.product.sku for hit in page.hits]

    alone = skus(None)
    assert alone.index("TEE-O") < alone.index("BAG-B")  # the photo's own ranking: the orange tee looks nearer
    # its own product gone ("not red"): what is left of its kind first, in the photo's order
    for words in ("like this but not red", "not red", "like this but with no red", "same kind of thing, non-red"):
        assert skus(words)[-1] == "TEE-O" and sorted(skus(words)) == ["BAG-B", "BAG-W", "TEE-O"], words
    cheap = skus("like this but under 50")
    assert cheap.index("BAG-B") < cheap.index("TEE-O") and "BAG-D" not in cheap
    # nothing narrowed: the photo's own order
    assert skus("like this photo") == alone
    # the photo's trained cut keeps what is likely the product photographed: the red bags. Words that leave
    # those out ask for its look-alikes, all of them (the cut left one product, or none)
    fitted = {"calibration": PhotoCalibration(weight=4.0, bias=0.0, mean=0.97, scale=0.01).to_json()}
    monkeypatch.setattr(type(get_encoder()), "photo_relevance", lambda self: {**fitted, "cuts": {"related": 0.5}})
    assert set(skus(None, "auto")) == {"BAG-R0", "BAG-R1", "BAG-R2", "BAG-D"}
    assert skus("like this but not red", "auto")[-1] == "TEE-O" and len(skus("not red", "auto")) == 3


@pytest.mark.django_db
def test_like_this_but_cheaper_is_under_the_price_of_the_product_photographed(
    client, indexed, model_dir, pil_photo, monkeypatch
):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile

    from multimodal_search.encoders import get_encoder
    from multimodal_search.ranking.calibration import PhotoCalibration
    from shop.catalog.models import Category

    bags, tees = Category.from_path("Gear > Bags"), Category.from_path("Men > Tops > Tees")

    def product(sku: str, colour: str, shape: str, category, price: str):
        return ProductFactory(
            sku=sku, title="carry all", color=colour, category=category, price=Decimal(price), photos=[(colour, shape)]
        )

    indexed(
        product("BAG-R", "red", "circle", bags, "50"),  # the product photographed
        product("TEE-O", "orange", "circle", tees, "20"),
        product("BAG-B", "blue", "square", bags, "40"),
        product("BAG-G", "green", "square", bags, "70"),
        product("TEE-P", "purple", "circle", tees, "90"),
        product("BAG-Y", "yellow", "square", bags, "50"),  # as dear as the one photographed: neither
    )
    photo = pil_photo("red", "circle")

    def page(words: str):
        return services.browse_products(words, photo, page_size=8, group_variants=False, min_relevance="auto")

    # nothing says which product the photo is: the cheapest first, as before
    unknown = page("like this but cheaper")
    assert unknown.sort == "price_asc" and "cheaper_than" not in unknown.query
    fitted = {"calibration": PhotoCalibration(weight=4.0, bias=0.0, mean=0.97, scale=0.01).to_json()}
    monkeypatch.setattr(type(get_encoder()), "photo_relevance", lambda self: {**fitted, "cuts": {"related": 0.5}})
    cheaper = page("like this but cheaper")
    assert [hit.product.sku for hit in cheaper.hits] == ["BAG-B", "TEE-O"]  # under 50, its kind first
    assert cheaper.sort == "relevance" and cheaper.query["price"] == {"min": None, "max": "50.00"}
    assert cheaper.query["cheaper_than"] == "BAG-R"
    # the API says so
    upload = io.BytesIO()
    photo.save(upload, format="PNG")
    body = client.post(
        "/api/v1/search/?min_relevance=auto",
        {"image": SimpleUploadedFile("bag.png", upload.getvalue()), "q": "like this but cheaper"},
    ).json()
    assert [item["sku"] for item in body["results"]] == ["BAG-B", "TEE-O"] and body["query"]["cheaper_than"] == "BAG-R"
    upload.seek(0)
    body = client.post(
        "/api/v1/search/?min_relevance=auto",
        {"image": SimpleUploadedFile("bag.png", upload.getvalue()), "q": "like this but more expensive"},
    ).json()
    assert [item["sku"] for item in body["results"]] == ["BAG-G", "TEE-P"] and body["query"]["pricier_than"] == "BAG-R"
    # "more expensive": above its price (not as dear), its kind first; the API names the product
    pricier = page("like this but more expensive")
    assert [hit.product.sku for hit in pricier.hits] == ["BAG-G", "TEE-P"] and pricier.query["searched"] is None
    assert pricier.sort == "relevance" and pricier.query["price"] == {"min": "50.00", "max": None}
    assert pricier.query["pricier_than"] == "BAG-R" and "cheaper_than" not in pricier.query
    assert [hit.product.sku for hit in page("same but pricier").hits] == ["BAG-G", "TEE-P"]
    # the cheapest is an order, not a bound; a number is a bound of its own
    assert page("like this but cheapest").sort == "price_asc"
    assert page("cheaper than 45").query["price"] == {"min": None, "max": "45"}
