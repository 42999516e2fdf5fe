"""Vectors of indexed products, kept apart from the product model.

Vector columns are ``halfvec`` without a fixed dimension so that several
encoders (of different sizes) can live side by side during a re-index; the
HNSW (cosine) indexes are partial expression indexes per encoder
(``(fused_vector::halfvec(D)) WHERE model_id = '...'``), the layout pgvector's
README recommends for mixed dimensions. They are created by
``backends.pgvector.ensure_indexes`` the first time an encoder stores vectors.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from pgvector.django import HalfVectorField


class ProductEmbedding(models.Model):
    """Text, pooled-image and fused vectors of one product for one encoder."""

    product_pk = models.CharField(max_length=64)
    model_id = models.CharField(max_length=200)
    content_hash = models.CharField(max_length=64)
    text_vector = HalfVectorField()
    title_vector = HalfVectorField(null=True, blank=True)
    image_vector = HalfVectorField(null=True, blank=True)
    fused_vector = HalfVectorField()
    image_count = models.PositiveIntegerField(default=0)
    categories = ArrayField(models.CharField(max_length=1000), default=list, blank=True)
    fields = models.JSONField(default=dict, blank=True)
    search_text = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product_pk", "model_id"], name="mmsearch_product_model_uniq")]
        indexes = [
            models.Index(fields=["model_id"], name="mmsearch_pe_model_idx"),
            GinIndex(fields=["categories"], name="mmsearch_pe_categories_gin"),
        ]

    def __str__(self) -> str:
        return f"{self.product_pk} [{self.model_id}]"


class ImageEmbedding(models.Model):
    """One photo of a product: visual features (photo-to-photo) and shared-space vector."""

    product_pk = models.CharField(max_length=64)
    model_id = models.CharField(max_length=200)
    image_key = models.CharField(max_length=500)
    position = models.PositiveIntegerField(default=0)
    feature_vector = HalfVectorField()
    shared_vector = HalfVectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product_pk", "model_id", "image_key"], name="mmsearch_image_uniq")
        ]
        indexes = [models.Index(fields=["model_id", "product_pk"], name="mmsearch_ie_model_pk_idx")]

    def __str__(self) -> str:
        return f"{self.product_pk}:{self.image_key} [{self.model_id}]"
