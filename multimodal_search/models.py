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

# who may re-index, retrain and read the index status (admin actions, staff pages, /api/index/status/)
REINDEX_PERMISSION = "multimodal_search.reindex_products"


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
        permissions = [("reindex_products", "Can reindex and retrain the search index")]

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


class IndexState(models.Model):
    """Whether a product's stored vectors are for its current content: the indexing outbox.

    Written in the same transaction as the product change (``services.outbox.mark_dirty``), so a
    change is never lost even when the broker is down; the worker clears ``dirty`` only when
    ``version`` is still the one it read at the start, and the sweep enqueues what is left.
    """

    product_pk = models.CharField(max_length=64, unique=True)
    dirty = models.BooleanField(default=True)
    # bumped at every change: a worker writes only when the version it started with is current
    version = models.PositiveBigIntegerField(default=1)
    # task starts since the last success or change (a worker that dies mid-batch still counts)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # set after ``DURABILITY["MAX_ATTEMPTS"]`` tries: skipped by batches, retried by the sweep when due
    failed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # last change, claim or sweep enqueue: the sweep re-sends a dirty product only once this is old
    touched_at = models.DateTimeField()
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["touched_at"], name="mmsearch_state_dirty_idx", condition=models.Q(dirty=True)),
        ]

    def __str__(self) -> str:
        state = "failed" if self.failed_at else "dirty" if self.dirty else "clean"
        return f"{self.product_pk} v{self.version} {state}"


class BackboneVector(models.Model):
    """What an encoder's backbone computed for one input, kept across head versions (``model_id``).

    A photo is keyed by the sha1 of its file, a text by the sha256 of its words; ``backbone_id`` is the
    encoder's ``image_backbone_id`` / ``text_backbone_id`` (weights, preprocessing, views), never the
    ``model_id``, so retraining a head re-runs only the heads. ``vector`` holds float16 bytes
    (``store.base.BaseVectorStore.backbone_vectors``).
    """

    backbone_id = models.CharField(max_length=200)
    digest = models.CharField(max_length=64)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["backbone_id", "digest"], name="mmsearch_backbone_uniq")]

    def __str__(self) -> str:
        return f"{self.digest[:12]} [{self.backbone_id}]"
