"""Demo store catalogue: a category tree, products (one per parent x colour) and photos."""

from __future__ import annotations

from typing import cast

from django.db import models
from django.urls import reverse
from django.utils.text import slugify

PATH_SEPARATOR = " > "


class Category(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200)
    parent = models.ForeignKey("self", null=True, blank=True, related_name="children", on_delete=models.CASCADE)
    path = models.CharField(max_length=1000, unique=True, editable=False)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path

    def save(self, *args, **kwargs) -> None:
        self.slug = self.slug or slugify(self.name)[:200]
        parent = self.parent if self.parent_id else None
        self.path = f"{parent.path}{PATH_SEPARATOR}{self.name}" if parent is not None else self.name
        super().save(*args, **kwargs)

    def ancestor_paths(self) -> list[str]:
        parts = self.path.split(PATH_SEPARATOR)
        return [PATH_SEPARATOR.join(parts[: i + 1]) for i in range(len(parts))]

    @classmethod
    def from_path(cls, path: str) -> Category:
        """Get or create every level of "A > B > C" and return the leaf."""
        parent = None
        for name in [p.strip() for p in path.split(">") if p.strip()]:
            parent, _ = cls.objects.get_or_create(parent=parent, name=name, defaults={"slug": slugify(name)[:200]})
        if parent is None:
            raise ValueError(f"empty category path {path!r}")
        return parent


class Product(models.Model):
    """A sellable item as shoppers see it: one per parent product and colour."""

    sku = models.CharField(max_length=64, unique=True)
    parent_sku = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="Groups colour variants of one product."
    )
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, related_name="products", on_delete=models.SET_NULL)
    color = models.CharField(max_length=100, blank=True)
    gender = models.CharField(max_length=100, blank=True)
    material = models.CharField(max_length=200, blank=True)
    sizes = models.CharField(max_length=200, blank=True, help_text="Comma-separated sizes.")
    attributes = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "color", "sku"]

    def __str__(self) -> str:
        return f"{self.title} ({self.color})" if self.color else self.title

    def get_absolute_url(self) -> str:
        return reverse("catalog:product_detail", args=[self.sku])

    @property
    def main_image(self) -> ProductImage | None:
        images = list(self.images.all())
        return images[0] if images else None


class ProductImage(models.Model):
    KIND_CHOICES = [("main", "Main"), ("alternate", "Alternate"), ("back", "Back")]

    product = models.ForeignKey(Product, related_name="images", on_delete=models.CASCADE)
    image = models.ImageField(upload_to="products/")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default="main")
    alt = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        # the column is NOT NULL, so the name is a str (django-stubs types FieldFile.name as str | None)
        return cast(str, self.image.name)
