"""Learned category and material facets: what a query names, how products match, and training from labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multimodal_search import services
from multimodal_search.learning.attributes import train_attributes
from multimodal_search.learning.fitting import train_multi_classifier
from multimodal_search.learning.labels import load_labels
from multimodal_search.ranking import attributes
from multimodal_search.store import get_store
from tests.factories import ProductFactory, half_labelled, write_labels

CATEGORIES = ["bags", "bras & tanks", "hoodies & sweatshirts", "pants", "tees"]
MATERIALS = ["cotton", "organic cotton", "polyester", "wool"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("blue sweatshirt", ["hoodies & sweatshirts"]),
        ("womens hoodies", ["hoodies & sweatshirts"]),
        ("gym bag", ["bags"]),
        ("tank top", ["bras & tanks"]),
        ("black tee", ["tees"]),
        ("black jacket", []),
    ],
)
def test_a_query_names_a_category_by_any_word_of_its_leaf(text, expected):
    assert attributes.named_values(text, CATEGORIES, "category") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("organic cotton shorts", ["organic cotton"]),  # the longest name wins, not also "cotton"
        ("cotton tee", ["cotton"]),
        ("wool and polyester jacket", ["polyester", "wool"]),
        ("black tee", []),
    ],
)
def test_a_query_names_a_material_by_its_whole_name(text, expected):
    assert sorted(attributes.named_values(text, MATERIALS, "material")) == expected


def test_facet_match_prefers_stated_values():
    assert attributes.facet_match("category", ["tees"], {"category_leaf": "tees"}) == 1.0
    assert attributes.facet_match("category", ["tees"], {"category_leaf": "pants"}) == 0.0
    assert attributes.facet_match("category", ["tees"], {"category_inferred": {"tees": 0.7}}) == pytest.approx(0.7)
    assert attributes.facet_match("category", ["tees"], {}) == 0.5  # nothing known: neutral
    assert attributes.facet_match("material", ["cotton"], {"material": "Cotton, Spandex"}) == 1.0
    assert attributes.facet_match("material", ["wool"], {"material": "Cotton"}) == 0.0
    assert attributes.facet_match("material", ["wool"], {"material_inferred": {"wool": 0.4}}) == pytest.approx(0.4)


def test_a_material_the_title_names_counts_as_stated():
    helena = {"title": "Helena Hooded Fleece", "material": "Cotton, Polyester, Spandex"}
    assert attributes.facet_match("material", ["fleece"], helena) == 1.0  # the title says what it is
    assert attributes.facet_match("material", ["wool"], helena) == 0.0
    assert attributes.facet_match("material", ["fleece"], {"title": "Fleece-lined Jacket"}) == 1.0
    assert attributes.facet_match("material", ["organic cotton"], {"title": "Cotton Tee", "material": "Wool"}) == 0.0
    assert (
        attributes.facet_match("material", ["fleece"], {"title": "Fleeces", "material_inferred": {"fleece": 0.2}})
        == 1.0
    )
    assert attributes.facet_match("material", ["fleece", "wool"], {"title": "Wool Fleece", "material": "Wool"}) == 1.0
    assert attributes.facet_match("material", ["fleece", "wool"], {"title": "Wool Top"}) == 0.75  # fleece unknown
    assert attributes.facet_match("material", ["fleece"], {"title": "Fleecy Top"}) == 0.5  # a whole word only


def test_enrich_fields_keeps_the_stated_leaf_and_only_missing_materials():
    inferred = {"category": {"tees": 0.9, "pants": 0.1}, "material": {"cotton": 0.8}}
    stated = attributes.enrich_fields({"material": "Wool"}, inferred, ["Men", "Men > Tops > Tees"])
    assert stated["category_leaf"] == "tees"
    assert "category_inferred" not in stated and "material_inferred" not in stated
    unknown = attributes.enrich_fields({}, inferred, [])
    assert unknown["category_inferred"] == {"tees": 0.9, "pants": 0.1}
    assert unknown["material_inferred"] == {"cotton": 0.8}


def test_normal_materials_drop_marks_and_split():
    assert attributes.normal_materials("Organic Cotton, CoolTech™; Lycra®") == ["organic cotton", "cooltech", "lycra"]


def test_multi_valued_classifier_learns_each_value_on_its_own():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6))
    value_sets = [({"cotton"} if row[0] > 0 else set()) | ({"wool"} if row[1] > 0 else set()) for row in x]
    clf = train_multi_classifier(x, value_sets)
    assert clf.multi and clf.classes == ["cotton", "wool"]
    p = clf.probabilities(x)
    truth = np.array([[c in values for c in clf.classes] for values in value_sets])
    assert ((p > 0.5) == truth).mean() > 0.9
    again = attributes.Classifier.from_json(json.loads(json.dumps(clf.to_json())))
    assert again.multi and np.allclose(again.probabilities(x), p, atol=1e-3)
    assert train_multi_classifier(x[:3], value_sets[:3]) is None  # too few products per value


@pytest.fixture
def shop(indexed):
    """Tees have red photos, bags blue ones; titles name neither, and only the L* products are labelled."""
    return half_labelled(indexed, "Classic", red=("U-tee", "Quiet Classic"), blue=("U-bag", "Calm Classic"))


def _labels(path, labelled):
    return load_labels(
        write_labels(
            path,
            labelled,
            {"category": "Tops > Tees", "material": "Organic Cotton"},
            {"category": "Gear > Bags", "material": "Nylon, Polyester"},
        )
    )


@pytest.mark.django_db
def test_labelled_categories_and_materials_find_unlabelled_products(shop, indexed, model_dir, tmp_path):
    labelled, unknown_tee, unknown_bag = shop
    before = services.search_products("organic cotton tee", k=12, method="feature")
    assert "category" not in before.hits[0].signals  # nothing learned yet: no facet signal

    summary = train_attributes(labels=_labels(tmp_path / "labels.jsonl", labelled))
    assert summary["facets"]["category"]["classes"] == ["bags", "tees"]
    assert summary["facets"]["material"]["classes"] == ["nylon", "organic cotton", "polyester"]
    fields = get_store().product_fields(
        [str(unknown_tee.pk), str(unknown_bag.pk)], model_id=services.current_model_id()
    )
    assert fields[str(unknown_tee.pk)]["category_inferred"]["tees"] > 0.8
    assert fields[str(unknown_bag.pk)].get("material_inferred", {}).get("polyester", 0) > 0.8, json.dumps(
        fields[str(unknown_bag.pk)]
    )

    response = services.search_products("organic cotton tee", k=12, method="feature")
    order = [hit.product.sku for hit in response.hits]
    assert order.index("U-tee") < order.index("U-bag")
    tee = next(hit for hit in response.hits if hit.product.sku == "U-tee")
    assert tee.signals["category"] > 0.8 and tee.signals["material"] > 0.8
    assert tee.explanation["category"] > 0 and tee.explanation["material"] > 0
    # a product whose title names a material is of it, whatever its material field says
    indexed(ProductFactory(sku="N-bag", title="Nylon Carry", material="Polyester", photos=["blue"]))
    nylon = {hit.product.sku: hit for hit in services.search_products("nylon", k=30, method="feature").hits}
    assert nylon["N-bag"].signals["material"] == 1.0 and nylon["U-tee"].signals["material"] < 0.5
