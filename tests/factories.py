"""Test data: products with small generated photos."""
from __future__ import annotations

import io
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
