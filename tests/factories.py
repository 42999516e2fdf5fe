"""Test data: products with small generated photos."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import factory
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from shop.catalog.models import Category, Product, ProductImage

COLOURS = {
    "red": (200, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 60, 200),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "yellow": (230, 210, 40),
}


def photo_bytes(colour: str | tuple[int, int, int], size: int = 64, shape: str = "square") -> bytes:
    """A small JPEG: a coloured shape on white."""
    rgb = COLOURS.get(colour, colour) if isinstance(colour, str) else colour
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size // 8, size // 8, size - size // 8, size - size // 8)
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    else:
        draw.rectangle(box, fill=rgb)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    title = factory.Sequence(lambda n: f"Product {n}")
    description = "A product."
    price = Decimal("19.99")

    @factory.post_generation
    def photos(self, create, extracted, **kwargs):
        """photos=["red", ("blue", "circle")] adds generated photos."""
        if not create or not extracted:
            return
        for position, spec in enumerate(extracted):
            colour, shape = (spec, "square") if isinstance(spec, str) else spec
            image = ProductImage(product=self, position=position, kind="main" if position == 0 else "alternate")
            image.image.save(f"{self.sku}-{position}.jpg", ContentFile(photo_bytes(colour, shape=shape)), save=False)
            image.save()


def half_labelled(indexed, title_word: str, red: tuple[str, str], blue: tuple[str, str]):
    """Ten labelled products ("L0".."L9": five red photos, then five blue) and one unlabelled
    red and one unlabelled blue product (``(sku, title)`` each), all indexed.

    Returns:
        (the ten labelled products, the unlabelled red one, the unlabelled blue one)
    """
    labelled = [
        ProductFactory(sku=f"L{i}", title=f"Item{i} {title_word}", photos=[colour])
        for i, colour in enumerate(["red"] * 5 + ["blue"] * 5)
    ]
    unknown_red = ProductFactory(sku=red[0], title=red[1], photos=["red"])
    unknown_blue = ProductFactory(sku=blue[0], title=blue[1], photos=["blue"])
    indexed(*labelled, unknown_red, unknown_blue)
    return labelled, unknown_red, unknown_blue


def write_labels(path, labelled, red_facts: dict, blue_facts: dict):
    """A labels file: ``red_facts`` for the five red products, ``blue_facts`` for the blue ones."""
    rows = [{"sku": p.sku, **(red_facts if i < 5 else blue_facts)} for i, p in enumerate(labelled)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
