"""How multimodal_search reads the demo store's products."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import unescape
from typing import Any

from django.db import models
from django.utils.html import strip_tags

from multimodal_search.adapters import BaseProductAdapter, ImageRef, split_values
from shop.catalog.models import Category, Product, ProductImage


def _category(product: Product) -> Category | None:
    """The product's category; ``category_id`` is checked first so that a product without one costs no query."""
    return product.category if product.category_id else None


class ProductAdapter(BaseProductAdapter):
    facet_values_use_prefetch = False  # category (select_related), colour, sizes and price: no photos
    # what get_facet_values and get_group read
    facet_fields = ("category__path", "color", "sizes", "price", "sku", "parent_sku")

    def get_model(self) -> type[models.Model]:
        return Product

    def get_queryset(self) -> models.QuerySet:
        return Product.objects.filter(active=True).select_related("category").prefetch_related("images")

    def get_text(self, product: Product) -> str:
        parts = [product.title]
        if product.color:
            parts.append(f"Colour: {product.color}.")
        category = _category(product)
        if category is not None:
            parts.append(f"Category: {category.path}.")
        for label, value in (("Gender", product.gender), ("Material", product.material)):
            if value:
                parts.append(f"{label}: {value}.")
        for key, value in sorted((product.attributes or {}).items()):
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            if value not in ("", None):
                parts.append(f"{key.replace('_', ' ').capitalize()}: {value}.")
        description = " ".join(strip_tags(product.description).split())
        if description:
            parts.append(description)
        # imported descriptions carry HTML entities ("&reg;", "&bull;"): index the characters they stand for
        return unescape(" ".join(parts))

    def get_title(self, product: Product) -> str:
        """Name, colour, category and gender: "Chaz Kangeroo Hoodie. Black. Men > Tops > Hoodies & Sweatshirts."."""
        category = _category(product)
        parts = [product.title, product.color, category.path if category is not None else ""]
        if product.gender and product.gender.lower() not in parts[2].lower():
            parts.append(product.gender)
        return unescape(". ".join(part.strip() for part in parts if part and part.strip()) + ".")

    def get_images(self, product: Product) -> list[ImageRef]:
        return [
            ImageRef(key=img.image.name, path=img.image.path, url=img.image.url)
            for img in product.images.all()
            if img.image.name  # what ``bool(img.image)`` tests
        ]

    def get_categories(self, product: Product) -> list[str]:
        category = _category(product)
        return category.ancestor_paths() if category is not None else []

    def get_fields(self, product: Product) -> dict[str, Any]:
        return {
            "title": unescape(product.title),
            "color": product.color,
            "gender": product.gender,
            "material": product.material,
            "group": product.parent_sku or product.sku,
            "sku": product.sku,
            "attributes": product.attributes or {},
        }

    def get_group(self, product: Product) -> str:
        return product.parent_sku or product.sku

    def get_facet_values(self, product: Product) -> dict[str, Any]:
        """Category (leaf path), colour, sizes ("S,M,L") and price, for the search page's filters."""
        category = _category(product)
        return {
            "category": [category.path] if category is not None else [],
            "color": split_values(product.color),
            "size": split_values(product.sizes),
            "price": product.price,
        }

    def to_result(self, product: Product) -> dict[str, Any]:
        images = self.get_images(product)
        return {
            "sku": product.sku,
            "title": product.title,
            "url": product.get_absolute_url(),
            "image": images[0].url if images else "",
            "price": str(product.price) if product.price is not None else None,
            "color": product.color,
            "category": category.path if (category := _category(product)) is not None else None,
        }

    def lookup(self, identifier: str) -> Product:
        return self.get_queryset().get(sku=identifier)

    def watched_models(self) -> dict[type[models.Model], Callable[[Any], Iterable[Any]]]:
        return {ProductImage: lambda image: [image.product_id]}
