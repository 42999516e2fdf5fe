"""Indexing service: encode products and store their vectors; the index's health."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from multimodal_search.adapters import BaseProductAdapter, ImageRef, get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.encoders import BaseEncoder
from multimodal_search.models import ProductEmbedding
from multimodal_search.ranking import attributes, colour, fusion
from multimodal_search.ranking import vocabulary as v
from multimodal_search.services.query import current_encoder
from multimodal_search.signals import product_indexed
from multimodal_search.store import get_store
from multimodal_search.store.base import PhotoVectors, ProductVectors

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed_images: list[str] = field(default_factory=list)

    def merge(self, other: IndexReport) -> None:
        self.indexed += other.indexed
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.failed_images.extend(other.failed_images)


@dataclass
class _Prepared:
    pk: str
    text: str
    title: str
    images: list[ImageRef]
    categories: list[str]
    fields: dict[str, Any]
    content_hash: str


def _file_digest(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).hexdigest()
    except OSError:
        return "missing"


# bump when what is stored per product changes (new vector column, new fields), so
# `mmsearch_reindex` re-encodes products whose content did not change
INDEX_FORMAT = "3"


def index_recipe(model_id: str) -> str:
    """Everything besides a product's content that changes what is stored for it.

    The encoder version and the fused vector's text weight: a product whose stored hash was made
    with another recipe is stale, and ``mmsearch_reindex`` re-encodes it.
    """
    return f"{INDEX_FORMAT}:{model_id}:fusion-text-weight={float(search_settings.FUSION['TEXT_WEIGHT']):g}"


def content_hash(model_id: str, text: str, images: list[ImageRef]) -> str:
    """The hash stored next to a product's vectors: its text, its photos' bytes and :func:`index_recipe`."""
    digest = hashlib.sha256(index_recipe(model_id).encode())
    digest.update(b"\0" + text.encode())
    for ref in images:
        digest.update(b"\0" + ref.key.encode() + b"=" + _file_digest(ref.path).encode())
    return digest.hexdigest()


def _prepare(adapter: BaseProductAdapter, product: Any, model_id: str) -> _Prepared:
    text = adapter.get_text(product)
    title = adapter.get_title(product)
    images = adapter.get_images(product)
    return _Prepared(
        pk=str(product.pk),
        text=text,
        title=title,
        images=images,
        categories=adapter.get_categories(product),
        fields=adapter.get_fields(product),
        content_hash=content_hash(model_id, f"{title}\0{text}", images),
    )


def _load_images(items: list[_Prepared], report: IndexReport) -> tuple[list[Image.Image], list[tuple[int, ImageRef]]]:
    pil_images: list[Image.Image] = []
    owners: list[tuple[int, ImageRef]] = []
    for index, item in enumerate(items):
        for ref in item.images:
            try:
                pil_images.append(ref.open())
            except Exception as exc:  # unreadable photo: index the rest
                logger.warning("cannot read photo %s of product %s: %s", ref.path, item.pk, exc)
                report.failed_images.append(ref.path)
                continue
            owners.append((index, ref))
    return pil_images, owners


def _encode_and_store(items: list[_Prepared], encoder: BaseEncoder, report: IndexReport) -> None:
    text_weight = float(search_settings.FUSION["TEXT_WEIGHT"])
    text_vectors = encoder.encode_text([item.text for item in items])
    title_vectors = encoder.encode_text([item.title for item in items])
    pil_images, owners = _load_images(items, report)
    palettes = [colour.colour_distribution(image) for image in pil_images]
    if pil_images:
        shared, features = encoder.encode_image_pair(pil_images)
    else:
        shared = features = np.zeros((0, 1), dtype=np.float32)
    per_item: dict[int, list[int]] = {}
    for row, (index, _ref) in enumerate(owners):
        per_item.setdefault(index, []).append(row)

    store = get_store()
    store.ensure_indexes(encoder.model_id, encoder.dimensions, encoder.feature_dimensions)
    inferring = attributes.get_model(encoder.model_id)
    stored = []
    for index, item in enumerate(items):
        rows = per_item.get(index, [])
        image_vector = fusion.mean_pool(shared[rows]) if rows else None
        text_vector = text_vectors[index]
        fields = {
            **item.fields,
            v.FIELD_COLOURS: colour.product_colours(
                [palettes[row] for row in rows], str(item.fields.get(v.FIELD_COLOR) or "")
            ),
        }
        if inferring is not None:
            photos = attributes.photo_matrix(features[rows], shared[rows])
            fields = attributes.enrich_fields(fields, inferring.infer(photos, text_vector), item.categories)
        stored.append(
            ProductVectors(
                product_pk=item.pk,
                content_hash=item.content_hash,
                text_vector=text_vector,
                title_vector=title_vectors[index],
                image_vector=image_vector,
                fused_vector=fusion.fuse_vectors(text_vector, image_vector, text_weight),
                categories=item.categories,
                fields=fields,
                search_text=item.text,
                photos=[PhotoVectors(owners[row][1].key, features[row], shared[row]) for row in rows],
            )
        )
    store.save_products(encoder.model_id, stored)
    report.indexed += len(items)


def remove_products(pks: Iterable[Any]) -> int:
    """Delete every stored vector of these products (all encoders)."""
    return get_store().delete_products([str(pk) for pk in pks])


def index_products(pks: Iterable[Any], *, force: bool = False, encoder: BaseEncoder | None = None) -> IndexReport:
    """Encode and store the vectors of the given products.

    Products that no longer exist (or are not searchable per the adapter's
    queryset) lose their vectors; products whose content hash is unchanged are
    skipped unless ``force``. Idempotent: safe to run twice or concurrently.

    Args:
        pks: product primary keys.
        force: re-encode even when the content is unchanged.
        encoder: override the configured encoder.

    Returns:
        counts of indexed, unchanged and removed products.
    """
    adapter = get_adapter()
    if encoder is None:
        encoder, _model_id = current_encoder()
    keys = list(dict.fromkeys(str(pk) for pk in pks))
    report = IndexReport()
    if not keys:
        return report
    products = {str(p.pk): p for p in adapter.get_queryset().filter(pk__in=keys)}
    gone = [pk for pk in keys if pk not in products]
    if gone:
        report.removed += remove_products(gone)
    model_id = encoder.model_id
    known = get_store().content_hashes(model_id, list(products))
    todo = []
    for pk, product in products.items():
        item = _prepare(adapter, product, model_id)
        if not force and known.get(pk) == item.content_hash:
            report.unchanged += 1
        else:
            todo.append(item)
    batch = max(1, int(search_settings.BATCH_SIZE))
    for start in range(0, len(todo), batch):
        _encode_and_store(todo[start : start + batch], encoder, report)
    if todo:
        product_indexed.send(sender=ProductEmbedding, product_pks=[item.pk for item in todo], model_id=model_id)
    return report


def chunked_pks(
    *, missing_only: bool = False, batch_size: int | None = None, model_id: str | None = None
) -> Iterator[list[str]]:
    """Walk searchable product pks in pk order, in chunks (for reindexing)."""
    adapter = get_adapter()
    batch_size = batch_size or int(search_settings.BATCH_SIZE)
    queryset = adapter.get_queryset().order_by("pk")
    pks = [str(pk) for pk in queryset.values_list("pk", flat=True)]
    if missing_only:
        have = get_store().stored_pks(model_id or current_model_id())
        pks = [pk for pk in pks if pk not in have]
    for start in range(0, len(pks), batch_size):
        yield pks[start : start + batch_size]


def prune_stale() -> int:
    """Remove vectors of products that are gone or no longer searchable."""
    live = {str(pk) for pk in get_adapter().get_queryset().values_list("pk", flat=True)}
    return remove_products(sorted(get_store().stored_pks() - live))


def drop_older_encoders() -> tuple[int, list[str]]:
    """Delete the vectors and HNSW indexes of every encoder version but the current one.

    Does nothing unless the current version indexes every searchable product, so a
    search never loses results (running processes reload a new head within seconds).

    Returns:
        (product rows deleted, the model ids dropped)
    """
    status = index_status()
    if status["missing"]:
        return 0, []
    store = get_store()
    older = [model_id for model_id in store.model_ids() if model_id != status["model_id"]]
    return sum(store.drop_model(model_id) for model_id in older), older


def current_model_id() -> str:
    """The configured encoder's version, after it looked for a new head."""
    return current_encoder()[1]


def count_indexed(pks: Iterable[Any], model_id: str) -> int:
    """How many of these products have vectors for ``model_id``."""
    return get_store().count(model_id, [str(pk) for pk in pks])


def index_status(model_id: str | None = None) -> dict[str, Any]:
    """Counts that tell the index's health for the current encoder."""
    store = get_store()
    encoder_id = model_id or current_model_id()
    total = get_adapter().get_queryset().count()
    current = store.count(encoder_id)
    return {
        "model_id": encoder_id,
        "products": total,
        "indexed": current,
        "missing": max(0, total - current),
        "images": store.count_photos(encoder_id),
        "stale_encoders": len([other for other in store.model_ids() if other != encoder_id]),
    }
