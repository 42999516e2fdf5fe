"""Colour naming from pixels and colour words in queries."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_search import services
from multimodal_search.encoders import pixels
from multimodal_search.ranking import colour
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


def close_up(product, face=(224, 172, 140)):
    """A close-up: the product runs off three edges; a model's chin and neck run off the top
    one, between corners of the white studio behind."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 96), product)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 95, 24), fill=(250, 250, 250))
    draw.ellipse((20, -30, 76, 56), fill=face)
    return image


@pytest.mark.parametrize("name", ["green", "red", "blue"])
def test_close_up_keeps_the_product_colour(name):
    """A border that is the product is not a backdrop: its colour is what the photo shows."""
    protos = colour.PROTOTYPES[name][0]
    distribution = colour.colour_distribution(close_up(protos))
    assert colour.NAMES[int(np.argmax(distribution))] == name
    assert distribution[colour.NAMES.index(name)] > 0.6


def test_backdrop_is_light_neutral_or_covers_the_border():
    from PIL import Image

    def grid(image):
        small = np.asarray(image.convert("RGB"), dtype=np.float32)
        return pixels.srgb_to_lab(small.reshape(-1, 3)).reshape(small.shape)

    studio = Image.new("RGB", (64, 64), (242, 242, 240))
    studio.paste(Image.new("RGB", (40, 64), (40, 80, 180)), (12, 10))  # runs off the bottom edge
    assert pixels.backdrop_colour(grid(studio)) is not None
    green_wall = Image.new("RGB", (64, 64), (40, 140, 60))
    green_wall.paste(Image.new("RGB", (30, 30), (200, 30, 30)), (17, 17))
    assert pixels.backdrop_colour(grid(green_wall)) is not None
    assert colour.NAMES[int(np.argmax(colour.colour_distribution(green_wall)))] == "red"
    # a dark backdrop with the product running off the bottom edge
    black_wall = Image.new("RGB", (64, 64), (20, 20, 22))
    black_wall.paste(Image.new("RGB", (36, 50), (45, 85, 180)), (14, 14))
    assert pixels.backdrop_colour(grid(black_wall)) is not None
    assert colour.NAMES[int(np.argmax(colour.colour_distribution(black_wall)))] == "blue"
    assert pixels.backdrop_colour(grid(close_up((60, 140, 70)))) is None


def test_muted_heathered_colour_is_named_by_its_hue():
    """Lightness varies across a heathered fabric; the hue is what a shopper names."""
    from PIL import Image

    rng = np.random.RandomState(0)
    image = np.full((60, 60, 3), 250, dtype=np.uint8)
    image[10:50, 10:50] = np.clip(np.array([120, 150, 120]) + rng.randint(-25, 25, (40, 40, 1)), 0, 255)
    distribution = colour.colour_distribution(Image.fromarray(image))
    assert colour.NAMES[int(np.argmax(distribution))] == "green"
    assert distribution[colour.NAMES.index("green")] > 0.5


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
    from multimodal_search.ranking import fusion

    assert fusion.tied_ranks({"a": 0.9, "b": 0.5, "c": 0.5, "d": 0.1}) == {"a": 1, "b": 2, "c": 2, "d": 4}
    scores, _parts = fusion.rrf_scores({"x": {"a": 1.0, "b": 1.0}}, {"x": 1.0})
    assert scores["a"] == scores["b"]


def test_photo_colour_signal_defaults_off_when_features_carry_colour():
    from multimodal_search.encoders.packaged import PackagedEncoder

    assert PackagedEncoder().features_carry_colour  # colour histogram inside the photo features
    assert not PackagedEncoder(colour_weight=0).features_carry_colour
