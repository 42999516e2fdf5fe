"""Colour naming from pixels and colour words in queries."""
from __future__ import annotations

import numpy as np
import pytest

from multimodal_search import colour, services
from tests.factories import ProductFactory


@pytest.mark.parametrize("name", ["red", "green", "blue", "black", "yellow"])
def test_solid_product_on_white_gets_its_colour(pil_photo, name):
    distribution = colour.colour_distribution(pil_photo(name))
    assert colour.NAMES[int(np.argmax(distribution))] == name
    assert abs(distribution.sum() - 1) < 1e-5


def test_white_product_on_white_background_is_white(pil_photo):
    from PIL import Image

    image = Image.new("RGB", (64, 64), (250, 250, 250))
    assert colour.NAMES[int(np.argmax(colour.colour_distribution(image)))] == "white"


def test_colour_words_and_synonyms():
    assert colour.colours_in_text("Grey hoodie with navy trim") == ["gray", "blue"]
    assert colour.colours_in_text("yoga pants") == []


def test_profile_mixes_photos_and_stated_colour():
    red = np.zeros(len(colour.NAMES), dtype=np.float32)
    red[colour.NAMES.index("red")] = 1
    profile = colour.product_colours([red], "Blue")
    assert profile["red"] == pytest.approx(0.5) and profile["blue"] == pytest.approx(0.5)
    assert colour.colour_match(["red"], profile) == pytest.approx(0.5)
    assert colour.colour_match([], profile) == 0.0


@pytest.mark.django_db
def test_colour_in_query_prefers_products_that_show_it(indexed):
    # identical text: only the photos tell the colours apart
    red = ProductFactory(title="canvas sneaker", photos=["red"])
    blue = ProductFactory(title="canvas sneaker", photos=["blue"])
    indexed(red, blue)
    for method in ("feature", "decision"):
        hits = services.search_products("red canvas sneaker", k=2, method=method).hits
        assert hits[0].product == red, method
        assert "colour" in hits[0].explanation
    hits = services.search_products("blue sneaker", k=2).hits
    assert hits[0].product == blue


@pytest.mark.django_db
def test_photo_query_colour_separates_variants_and_words_override_it(indexed, pil_photo):
    red = ProductFactory(title="canvas sneaker", photos=[("red", "circle")])
    blue = ProductFactory(title="canvas sneaker", photos=[("blue", "circle")])
    indexed(red, blue)
    hits = services.search_products(image=pil_photo("red", "circle"), k=2).hits
    assert hits[0].product == red and "colour" in hits[0].explanation
    # "like this photo, but in blue"
    hits = services.search_products("in blue", pil_photo("red", "circle"), k=2).hits
    assert hits[0].product == blue


def test_tied_ranks_share_a_rank():
    from multimodal_search import fusion

    assert fusion.tied_ranks({"a": 0.9, "b": 0.5, "c": 0.5, "d": 0.1}) == {"a": 1, "b": 2, "c": 2, "d": 4}
    scores, parts = fusion.rrf_scores({"x": {"a": 1.0, "b": 1.0}}, {"x": 1.0})
    assert scores["a"] == scores["b"]


def test_photo_colour_signal_defaults_off_when_features_carry_colour():
    from multimodal_search.encoders.packaged import PackagedEncoder

    assert PackagedEncoder().features_carry_colour  # colour histogram inside the photo features
    assert not PackagedEncoder(colour_weight=0).features_carry_colour
