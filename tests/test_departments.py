"""Departments: "tops", "men's bottoms" name an inner category; their results get the broad calibration."""

from __future__ import annotations

import random

import numpy as np
import pytest
from django.db import connection

from multimodal_search import services
from multimodal_search.learning import pseudo_queries
from multimodal_search.learning.reranker import train_reranker
from multimodal_search.ranking import calibration
from multimodal_search.ranking import reranker as reranking
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.departments import Departments, get_departments
from multimodal_search.ranking.intent import facets_only, only_filler
from multimodal_search.store import get_store, sql
from shop.catalog.models import Category
from tests.broad_words import broad_word_search
from tests.factories import ProductFactory

LUMA_LIKE = [
    "Women",
    "Women > Tops",
    "Women > Tops > Jackets",
    "Women > Tops > Bras & Tanks",
    "Women > Bottoms > Pants",
    "Men > Tops > Jackets",
    "Men > Tops > Tees",
    "Gear > Bags",
    "Gear > Fitness Equipment",
    "Outlet > Jackets > Rain",  # "jackets" is also a leaf elsewhere: a query naming it is not broad
    "Red > Hats",  # a colour names no department
]


def test_departments_are_the_inner_categories_by_name_with_the_leaves_below():
    departments = Departments.from_paths(LUMA_LIKE)
    assert departments.leaves == {
        "bottoms": ["pants"],
        "gear": ["bags", "fitness equipment"],
        "outlet": ["rain"],
        "tops": ["bras & tanks", "jackets", "tees"],
    }  # not "women"/"men" (the gender signal has them), "jackets" (a leaf too) or "red" (a colour)
    assert departments.of_product(["Women", "Women > Tops", "Women > Tops > Jackets"]) == ("tops",)
    assert departments.of_product(["Gear > Bags"]) == ("gear",)
    assert departments.of_product([]) == ()
    assert set(departments.named("Men's TOPS")) == {"tops"}
    assert set(departments.named("tops and bottoms")) == {"tops", "bottoms"}
    assert departments.named("tank top")["tops"] == ["bras & tanks", "jackets", "tees"]
    assert departments.named("hoodie") == {} and departments.named(None) == {}
    assert Departments.from_json(departments.to_json()) == departments


def test_words_above_the_departments_name_the_leaves_of_several():
    departments = Departments.from_paths(LUMA_LIKE, [("clothing", "clothes", "apparel"), ("bag", "sack")])
    # WordNet: jackets and bras are garments (most of the tops: its "tees" are golf tees), pants too, hats
    # are clothing but no garment; bags, fitness equipment and the outlet's rain are neither
    clothing = ["bras & tanks", "hats", "jackets", "pants", "tees"]
    assert departments.classes["clothing"] == clothing and departments.classes["garment"] == clothing[:1] + clothing[2:]
    assert departments.classes["clothes"] == departments.classes["apparel"] == clothing  # a synonym group's
    assert "artifact" not in departments.classes  # above every leaf
    assert "trouser" not in departments.classes  # above the pants alone: "bottoms" is the word
    assert "sack" not in departments.classes  # its group names no class
    assert departments.named("Men's CLOTHES") == {"clothes": clothing}
    assert facets_only("red clothes for men", list(departments.named("red clothes for men")))
    assert departments.named("hoodie") == {} and departments.named("tops") == {"tops": departments.leaves["tops"]}
    # what the text searched adds: the departments it names whole, and the other leaves
    assert departments.spelled_out(["clothes"]) == ["bottoms", "tops", "hats"]
    assert departments.spelled_out(["tops", "xyz"]) == []  # a department's own word is searched as it is
    assert Departments.from_json(departments.to_json()) == departments
    assert Departments.from_json({"leaves": departments.leaves}).classes == {}  # a file written before classes
    # a word that is a department's or a leaf's own is not a class's ("Clothing > Tops" names it)
    assert "clothing" not in Departments.from_paths(["Clothing > Tops > Jackets", "Clothing > Bottoms > Pants"]).classes


def test_a_query_of_departments_colours_and_genders_alone_is_broad():
    assert facets_only("tops", ["tops"]) and facets_only("women's tops", ["tops"])
    assert facets_only("red tops for men", ["tops"]) and facets_only("Gear", ["gear"])
    assert not facets_only("tops", [])  # the catalogue has no such department
    assert facets_only("like this photo, but in red") and facets_only("same one for women")
    assert not facets_only("like this photo") and not facets_only("this hoodie in red")
    assert not facets_only("tank top", ["tops"]) and not facets_only("tops hoodie", ["tops"])
    # a shopper's question around them: "what" kept "what to wear to yoga" from the broad reading
    assert facets_only("what should I wear for yoga", ["wear"], ["yoga"]) and facets_only("any tops", ["tops"])
    assert facets_only("i need something for men") and not facets_only("what hoodie for men")
    assert only_filler("what is this") and only_filler("do you have this") and not only_filler("what hoodie")


def test_broad_pseudo_queries_name_a_department_alone_or_with_the_gender():
    top = pseudo_queries.Facts(title="Alpha Hoodie", colours={}, gender="Women", departments=("tops",))
    bottom = pseudo_queries.Facts(title="Beta Pant", colours={}, gender="Women", departments=("bottoms",))
    made = [pseudo_queries.broad_query(top, random.Random(seed)) for seed in range(40)]
    assert {text for text, _asked in filter(None, made)} == {"women's", "tops", "women's tops"}
    asked = {"department": "tops", "gender": "Women"}
    assert pseudo_queries.relevance(top, asked) == 1.0 and pseudo_queries.relevance(bottom, asked) == 0.0


def test_a_broad_calibration_fitted_before_departments_still_reads_its_own_inputs():
    old = {"inputs": ["logit", "colour", "gender"], "weights": [1.0, 2.0, 0.0], "bias": 0.0, "mean": [0.0] * 3}
    model = calibration.Calibration.from_json(calibration.BROAD, {**old, "scale": [1.0] * 3})
    assert model is not None and model.inputs == ("logit", "colour", "gender")
    assert model.to_json()["inputs"] == ["logit", "colour", "gender"]
    x = calibration.calibration_inputs(
        calibration.BROAD, ["a"], {"colour": {"a": 1.0}}, np.array([0.5]), inputs=model.inputs
    )
    assert model.probability(x)[0] == pytest.approx(1 / (1 + np.exp(-2.5)))
    # an input it never had is refused, as before
    assert calibration.Calibration.from_json(calibration.BROAD, {**old, "inputs": ["logit", "xyz", "gender"]}) is None
    # a new one reads the department and the quality (1 when the query names none)
    x = calibration.calibration_inputs(calibration.BROAD, ["a"], {}, np.array([0.5]))
    np.testing.assert_allclose(x, [[0.5, 1.0, 1.0, 1.0, 1.0]])


def test_the_store_reads_the_leaf_under_the_name_the_signals_use():
    assert sql.CATEGORY_LEAF_KEY == v.FIELD_CATEGORY_LEAF


SPECS = [
    ("Alpha Hoodie", "Clothing > Tops > Hoodies", "red"),
    ("Beta Hoodie", "Clothing > Tops > Hoodies", "blue"),
    ("Gamma Jacket", "Clothing > Tops > Jackets", "green"),
    ("Delta Jacket", "Clothing > Tops > Jackets", "yellow"),
    ("Epsilon Pant", "Clothing > Bottoms > Pants", "black"),
    ("Zeta Short", "Clothing > Bottoms > Shorts", "white"),
    ("Eta Backpack", "Gear > Bags", "red"),
    ("Theta Duffel", "Gear > Bags", "blue"),
    ("Iota Watch", "Gear > Watches", "black"),
    ("Kappa Tent", "Outdoor > Tents", "green"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("stored_before", [False, True], ids=["leaf-in-fields", "rows-stored-before"])
def test_a_department_word_finds_the_department_at_the_storefront_cut(
    client, indexed, model_dir, watch_calibrations, stored_before
):
    products = [
        ProductFactory(title=title, category=Category.from_path(path), photos=[colour]) for title, path, colour in SPECS
    ]
    indexed(*products)
    # no attribute step runs here: indexing keeps the leaf the department signal reads in the fields
    fields = get_store().product_fields([str(products[0].pk)], model_id="hash-v1")
    assert fields[str(products[0].pk)][v.FIELD_CATEGORY_LEAF] == "hoodies"
    if stored_before:  # rows indexed before it did: the statement reads the leaf from the category paths
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {sql.PRODUCT_TABLE} SET fields = fields - %s", [v.FIELD_CATEGORY_LEAF])
    summary = train_reranker(max_queries=60, calibration=40)
    departments = get_departments("hash-v1")
    assert departments is not None and departments.leaves["tops"] == ["hoodies", "jackets"]
    assert set(departments.leaves) == {"bottoms", "clothing", "gear", "outdoor", "tops"}
    assert summary["departments"] == ["bottoms", "clothing", "gear", "outdoor", "tops"]
    assert summary["calibration"]["broad"]["queries"] >= 5
    model = reranking.get_reranker("hash-v1")
    assert model is not None and model.calibrations[calibration.BROAD].inputs == calibration.INPUTS[calibration.BROAD]

    tops = {str(p.pk) for p, (_, path, _) in zip(products, SPECS) if "Tops" in path}
    department, shown, kinds = broad_word_search("tops", v.DEPARTMENT, watch_calibrations)
    assert department == {pk: (1.0 if pk in tops else 0.0) for pk in department}
    # its relevance is the broad calibration's; a kind of product keeps the rerank one
    assert kinds == [calibration.RERANK, calibration.BROAD]
    assert shown == tops
    page = client.get("/search/", {"q": "tops"}).content.decode()
    assert "Alpha Hoodie" in page and "Delta Jacket" in page and "No results" not in page
    assert "Eta Backpack" not in page


@pytest.mark.django_db
def test_a_word_for_several_departments_finds_them_at_the_storefront_cut(
    client, indexed, model_dir, watch_calibrations
):
    specs = [
        ("Alpha Hoodie", "Men > Tops > Hoodies & Sweatshirts", "red", "A warm hoodie."),
        ("Gamma Jacket", "Women > Tops > Jackets", "green", "A rain jacket."),
        ("Epsilon Pant", "Men > Bottoms > Pants", "black", "A training pant."),
        ("Zeta Short", "Women > Bottoms > Shorts", "white", "A running short."),
        ("Eta Backpack", "Gear > Bags", "red", "Room for your clothes and clothing."),  # Luma's bags say so
        ("Theta Duffel", "Gear > Bags", "blue", "Room for gym clothes."),
        ("Iota Watch", "Gear > Watches", "black", "A watch."),
        ("Kappa Tent", "Outdoor > Tents", "green", "A tent."),
    ]
    products = [
        ProductFactory(title=title, description=text, category=Category.from_path(path), photos=[colour])
        for title, path, colour, text in specs
    ]
    indexed(*products)
    summary = train_reranker(max_queries=60, calibration=40)
    assert {"clothes", "clothing", "garment"} <= set(summary["classes"])
    departments = get_departments("hash-v1")
    assert departments is not None and departments.classes["clothes"] == [
        "hoodies & sweatshirts",
        "jackets",
        "pants",
        "shorts",
    ]
    # and the kinds of product a query may join ("hoodies and jackets": ranking.intent.kind_parts)
    assert {"hoodie", "jacket", "pant", "short", "backpack", "watch", "tent"} <= set(departments.kinds)
    clothes = {str(p.pk) for p, (_, path, _, _) in zip(products, specs) if "Tops" in path or "Bottoms" in path}
    department, shown, kinds = broad_word_search("clothes", v.DEPARTMENT, watch_calibrations)
    assert department == {pk: (1.0 if pk in clothes else 0.0) for pk in department}
    assert kinds == [calibration.RERANK, calibration.BROAD] and shown == clothes
    assert services.search_products("clothes", k=3).query["expanded"] == "clothes clothing apparel bottoms tops"
    assert "tops" not in services.search_products("clothes backpack", k=3).query["expanded"]  # a backpack is asked
    page = client.get("/search/", {"q": "clothes"}).content.decode()
    assert "Alpha Hoodie" in page and "Zeta Short" in page and "Eta Backpack" not in page
