"""Qualities: "wool", "striped", "sale" name what products state; their results get the broad calibration."""

from __future__ import annotations

import random

import numpy as np
import pytest

from multimodal_search import services
from multimodal_search.adapters import get_adapter
from multimodal_search.learning import pseudo_queries
from multimodal_search.learning.reranker import catalogue_qualities, train_reranker
from multimodal_search.ranking import calibration
from multimodal_search.ranking import reranker as reranking
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.intent import facets_only, without_flag
from multimodal_search.ranking.qualities import (
    Qualities,
    flags_named,
    get_qualities,
    quality_match,
    save_qualities,
    stated_stems,
    stated_text,
)
from multimodal_search.store import get_store
from shop.catalog.models import Category, Product
from tests.broad_words import broad_word_search
from tests.factories import ProductFactory


def fields(title: str, material: str = "", group: str = "", **attributes) -> dict:
    return {"title": title, "material": material, "group": group or title, "attributes": attributes}


def test_a_product_states_its_title_material_and_attribute_values():
    stated = fields("Alpha Hoodie", "Wool, Cotton", pattern="Striped", activity=["Yoga", "Gym"], sale=True, new=False)
    assert stated_text(stated) == "Alpha Hoodie Wool, Cotton Striped Yoga Gym sale"
    assert stated_stems(stated) == {"alpha", "hoodie", "wool", "cotton", "striped", "yoga", "gym", "sale"}
    # an adapter without attributes, or a row stored before they were: title and material
    assert stated_stems({"title": "Alpha Hoodies", "material": "Wool"}) == {"alpha", "hoodie", "wool"}
    assert stated_stems({}) == frozenset()


def test_qualities_are_stated_by_two_groups_and_are_not_kinds_colours_or_genders():
    rows = {
        "1": (fields("Chaz Wool Hoodie", "Wool", pattern="Striped", sale=True), ["Men > Tops > Hoodies"]),
        "2": (fields("Mona Wool Jacket", "Wool", pattern="Striped"), ["Women > Tops > Jackets"]),
        # a colour variant of the same group: still one group stating "fleece"
        "3": (fields("Ida Fleece Pant", "Fleece", "ida", gender="Women", sale=True), ["Women > Bottoms > Pants"]),
        "4": (fields("Ida Fleece Pant", "Fleece", "ida", colour="Red"), ["Women > Bottoms > Pants"]),
        "5": (fields("Orion Red Jacket", "Nylon", gender="Women"), ["Men > Tops > Jackets"]),
    }
    qualities = catalogue_qualities(rows)
    # not "hoodie"/"jacket"/"pant" (head nouns, leaves), "chaz"/"fleece" (one group), "red", "women"
    assert qualities.words == {"sale": "sale", "striped": "striped", "wool": "wool"}
    assert qualities.groups == {"sale": 2, "striped": 2, "wool": 2}
    assert qualities.most_stated() == ["sale", "striped", "wool"]
    assert qualities.named("Women's WOOL") == ["wool"] and qualities.named("striped wool") == ["striped", "wool"]
    assert qualities.named("hoodie") == [] and qualities.named(None) == []
    assert qualities.of_product(rows["1"][0]) == ("sale", "striped", "wool")
    assert Qualities.from_json(qualities.to_json()) == qualities


def test_the_quality_signal_is_the_share_of_the_asked_qualities_a_product_states():
    wool = fields("Alpha Hoodie", "Wool", pattern="Solid")
    assert quality_match(["wool"], wool) == 1.0 and quality_match(["striped"], wool) == 0.0
    assert quality_match(["wool", "striped"], wool) == 0.5 and quality_match([], wool) == 1.0
    # a word whose stem is the one asked, as the product's stated stems say, and no other
    for title, material in [("Wools Pack", ""), ("Alpha", "Merino wool-blend"), ("Woolen Cap", ""), ("Alpha", "2wool")]:
        stated = fields(title, material)
        assert quality_match(["wool"], stated) == float("wool" in stated_stems(stated)), (title, material)
    assert quality_match(["dress"], fields("Dresss Alpha")) == 0.0 and quality_match(["dress"], fields("Dress")) == 1.0


def test_a_query_of_qualities_colours_and_genders_alone_is_broad():
    assert facets_only("wool", qualities=["wool"]) and facets_only("women's striped", qualities=["striped"])
    assert facets_only("red wool tops", ["tops"], ["wool"])
    assert not facets_only("wool", qualities=[])  # the catalogue states no such quality
    assert not facets_only("wool hoodie", qualities=["wool"])  # "hoodie" names a kind of product
    assert facets_only("on sale", qualities=["sale"]) and facets_only("tops on sale", ["tops"], ["sale"])


def test_broad_pseudo_queries_name_a_quality_alone_or_with_the_gender():
    wool = pseudo_queries.Facts(title="Alpha Hoodie", colours={}, gender="Women", qualities=("wool",))
    nylon = pseudo_queries.Facts(title="Beta Jacket", colours={}, gender="Women", qualities=("nylon",))
    made = [pseudo_queries.broad_query(wool, random.Random(seed)) for seed in range(40)]
    assert {text for text, _asked in filter(None, made)} == {"women's", "wool", "women's wool"}
    asked = {"quality": "wool", "gender": "Women"}
    assert pseudo_queries.relevance(wool, asked) == 1.0 and pseudo_queries.relevance(nylon, asked) == 0.0


def test_the_broad_calibration_reads_the_quality_and_one_fitted_before_still_loads():
    x = calibration.calibration_inputs(calibration.BROAD, ["a", "b"], {v.QUALITY: {"a": 1.0}}, np.array([0.5, 0.2]))
    np.testing.assert_allclose(x, [[0.5, 1.0, 1.0, 1.0, 1.0], [0.2, 1.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(calibration.calibration_inputs(calibration.BROAD, ["a"], {}, np.array([0.5]))[:, 4], 1)
    inputs = ["logit", "colour", "gender", "department"]
    old = {"inputs": inputs, "weights": [1.0] * 4, "bias": 0.0, "mean": [0.0] * 4, "scale": [1.0] * 4}
    model = calibration.Calibration.from_json(calibration.BROAD, old)
    assert model is not None and model.inputs == tuple(inputs)


@pytest.mark.django_db
def test_the_demo_adapter_gives_its_attributes_as_fields():
    product = ProductFactory(title="Alpha Hoodie", attributes={"pattern": "Striped", "sale": True})
    assert get_adapter().get_fields(product)[v.FIELD_ATTRIBUTES] == {"pattern": "Striped", "sale": True}


SPECS = [
    ("Alpha Hoodie", "Clothing > Hoodies", "red", "Wool", {"pattern": "Solid"}),
    ("Beta Hoodie", "Clothing > Hoodies", "blue", "Cotton", {"pattern": "Striped"}),
    ("Gamma Jacket", "Clothing > Jackets", "green", "Wool", {"pattern": "Striped"}),
    ("Delta Jacket", "Clothing > Jackets", "yellow", "Nylon", {"pattern": "Solid"}),
    ("Epsilon Pant", "Clothing > Pants", "black", "Wool", {"pattern": "Solid"}),
    ("Zeta Short", "Clothing > Shorts", "white", "Cotton", {"pattern": "Striped"}),
    ("Eta Backpack", "Gear > Bags", "red", "Nylon", {"features": ["Waterproof"]}),
    ("Theta Duffel", "Gear > Bags", "blue", "Nylon", {"features": ["Waterproof"]}),
    ("Iota Watch", "Gear > Watches", "black", "Steel", {}),
    ("Kappa Tent", "Outdoor > Tents", "green", "Nylon", {"features": ["Waterproof"]}),
]


@pytest.mark.django_db
def test_a_quality_word_finds_what_states_it_at_the_storefront_cut(client, indexed, model_dir, watch_calibrations):
    products = [
        ProductFactory(
            title=title,
            category=Category.from_path(path),
            photos=[colour],
            material=material,
            attributes=attributes,
            description="A product for every day.",
        )
        for title, path, colour, material, attributes in SPECS
    ]
    indexed(*products)
    stored = get_store().product_fields([str(products[1].pk)], model_id="hash-v1")[str(products[1].pk)]
    assert stored[v.FIELD_ATTRIBUTES] == {"pattern": "Striped"}  # indexing keeps what the signal reads
    summary = train_reranker(max_queries=60, calibration=40)
    qualities = get_qualities("hash-v1")
    assert qualities is not None and {"wool", "striped", "waterproof", "nylon"} <= set(qualities.words)
    assert summary["qualities"][0] == "nylon"  # the most stated first
    assert summary["calibration"]["broad"]["queries"] >= 5
    model = reranking.get_reranker("hash-v1")
    assert model is not None and model.calibrations[calibration.BROAD].inputs == calibration.INPUTS[calibration.BROAD]

    wool = {str(p.pk) for p, spec in zip(products, SPECS) if spec[3] == "Wool"}
    quality, shown, kinds = broad_word_search("wool", v.QUALITY, watch_calibrations)
    assert quality == {pk: (1.0 if pk in wool else 0.0) for pk in quality}
    assert kinds == [calibration.RERANK, calibration.BROAD]  # "hoodie" the rerank calibration, "wool" the broad
    assert shown == wool
    page = client.get("/search/", {"q": "waterproof"}).content.decode()
    assert "Eta Backpack" in page and "Kappa Tent" in page and "No results" not in page
    assert "Alpha Hoodie" not in page


@pytest.mark.django_db
def test_only_a_query_of_facets_alone_reads_the_qualities(model_dir):
    from multimodal_search.ranking.qualities import save_qualities
    from multimodal_search.services.query import named_qualities

    save_qualities("hash-v1", Qualities({"wool": "wool", "yoga": "yoga"}, {"wool": 2, "yoga": 2}))
    assert named_qualities("women's wool", "hash-v1") == ["wool"]
    assert named_qualities("red yoga tops", "hash-v1", ["tops"]) == ["yoga"]
    assert named_qualities("wool hoodie", "hash-v1") == []  # a kind of product: the rerank calibration's
    assert named_qualities("wool", "other-model") == [] and named_qualities(None, "hash-v1") == []


def test_the_flags_a_query_names_are_attributes_that_are_simply_true():
    marked = fields("Alpha Hoodie", "Wool", sale=True, eco_collection=True, new=False, pattern="Sale Stripe")
    assert flags_named("hoodies on sale", marked) == ("sale",)
    assert (
        flags_named("Eco Collection hoodie", marked) == ("eco collection",) and flags_named("eco hoodie", marked) == ()
    )
    assert flags_named("new hoodie", marked) == ()  # new is false here
    assert flags_named("wool hoodie", marked) == () and flags_named("", marked) == () and flags_named("sale", {}) == ()
    assert (
        without_flag("hoodies on sale", "sale") == "hoodies"
        and without_flag("Eco  collection tees", "eco collection") == "tees"
    )


@pytest.mark.django_db
def test_the_store_reads_the_true_attributes_names_as_the_generic_store_does(indexed):
    from multimodal_search.store import get_store
    from multimodal_search.store.base import BaseVectorStore

    products = [
        ProductFactory(title="Alpha Hoodie", attributes={"sale": True, "eco_collection": True, "new": False}),
        ProductFactory(title="Beta Hoodie", attributes={"pattern": "Sale Stripe", "sizes": ["S"], "erin": "true"}),
        ProductFactory(title="Gamma Hoodie"),
    ]
    indexed(*products)
    store, pks = get_store(), [str(product.pk) for product in products] + ["not-stored"]
    flags = store.product_flags(pks, model_id="hash-v1")
    assert {pk: sorted(names) for pk, names in flags.items()} == {pks[0]: ["eco_collection", "sale"]}
    assert BaseVectorStore.product_flags(store, pks, model_id="hash-v1") == flags  # the one every store has
    assert store.product_flags(pks, model_id="other-model") == {}


@pytest.mark.django_db
def test_a_flag_the_words_name_keeps_the_products_marked_with_it(client, indexed, model_dir):
    hoodies = [
        ProductFactory(title=f"{name} Hoodie", attributes={"sale": True} if name in ("Alpha", "Gamma") else {})
        for name in ("Alpha", "Beta", "Gamma", "Delta")
    ]
    indexed(*hoodies, ProductFactory(title="Omega Backpack", attributes={"sale": True}))
    everything = services.browse_products("hoodies on sale", page_size=100)
    assert "flags" not in everything.query  # the catalogue's qualities are not known before mmsearch_train
    save_qualities("hash-v1", Qualities({"sale": "sale"}, {"sale": 2}))
    on_sale = services.browse_products("hoodies on sale", page_size=100)
    assert on_sale.query["flags"] == ["sale"]
    assert {hit.product.title for hit in on_sale.hits} <= {"Alpha Hoodie", "Gamma Hoodie", "Omega Backpack"}
    assert {"Alpha Hoodie", "Gamma Hoodie"} <= {hit.product.title for hit in on_sale.hits}
    assert on_sale.total < everything.total
    # a flag none of the results has filters nothing
    Product.objects.filter(attributes={"sale": True}).update(attributes={})
    indexed(*Product.objects.all())
    assert "flags" not in services.browse_products("hoodies on sale", page_size=100).query
    Product.objects.filter(pk=hoodies[0].pk).update(attributes={"sale": True})
    indexed(hoodies[0])
    answer = client.get("/api/v1/search/", {"q": "hoodies on sale"}).json()
    assert answer["query"]["flags"] == ["sale"] and [item["title"] for item in answer["results"]] == ["Alpha Hoodie"]
    page = client.get("/search/", {"q": "hoodies on sale"}).content.decode()
    assert 'Only the products marked “sale” (<a href="/search/?q=hoodies" rel="nofollow">show all</a>)' in page
