"""Indexing service: encode products and store their vectors; the index's health."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.db import Error as DatabaseError

from multimodal_search.adapters import BaseProductAdapter, ImageRef, get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.encoders import BaseEncoder
from multimodal_search.models import ProductEmbedding
from multimodal_search.ranking import attributes, colour, fusion
from multimodal_search.ranking import vocabulary as v
from multimodal_search.services import encoding, outbox
from multimodal_search.services.phases import phase, recording, summary
from multimodal_search.services.query import current_encoder
from multimodal_search.services.vector_indexes import ensure_vector_indexes
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
    #: products whose encoding raised (their error is in their ``IndexState``)
    failed: list[str] = field(default_factory=list)
    #: products not tried: failed and not due for a retry
    skipped: int = 0
    #: products changed while this run encoded them (a newer task writes them)
    superseded: int = 0

    def merge(self, other: IndexReport) -> None:
        self.indexed += other.indexed
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.failed_images.extend(other.failed_images)
        self.failed.extend(other.failed)
        self.skipped += other.skipped
        self.superseded += other.superseded


@dataclass
class _Prepared:
    pk: str
    text: str
    title: str
    images: list[ImageRef]
    #: sha1 of each photo's file (``encoding.MISSING`` when unreadable), in ``images`` order
    digests: list[str]
    categories: list[str]
    fields: dict[str, Any]
    content_hash: str


# bump when what is stored per product changes (new vector column, new fields), so
# `mmsearch_reindex` re-encodes products whose content did not change
INDEX_FORMAT = "3"


def index_recipe(model_id: str) -> str:
    """Everything besides a product's content that changes what is stored for it.

    The encoder version and the fused vector's text weight: a product whose stored hash was made
    with another recipe is stale, and ``mmsearch_reindex`` re-encodes it.
    """
    return f"{INDEX_FORMAT}:{model_id}:fusion-text-weight={float(search_settings.FUSION['TEXT_WEIGHT']):g}"


def content_hash(model_id: str, text: str, images: list[ImageRef], digests: list[str] | None = None) -> str:
    """The hash stored next to a product's vectors: its text, its photos' bytes and :func:`index_recipe`.

    ``digests`` are the photos' file digests when the caller has read them already.
    """
    digest = hashlib.sha256(index_recipe(model_id).encode())
    digest.update(b"\0" + text.encode())
    files = digests if digests is not None else [encoding.file_digest(ref.path) for ref in images]
    for ref, file_digest in zip(images, files):
        digest.update(b"\0" + ref.key.encode() + b"=" + file_digest.encode())
    return digest.hexdigest()


def current_hash(adapter: BaseProductAdapter, product: Any, model_id: str) -> str:
    """The content hash ``product`` would be stored with now (what the deep sweep compares)."""
    title, text = adapter.get_title(product), adapter.get_text(product)
    return content_hash(model_id, f"{title}\0{text}", adapter.get_images(product))


def _prepare(adapter: BaseProductAdapter, product: Any, model_id: str) -> _Prepared:
    text = adapter.get_text(product)
    title = adapter.get_title(product)
    images = adapter.get_images(product)
    digests = [encoding.file_digest(ref.path) for ref in images]
    return _Prepared(
        pk=str(product.pk),
        text=text,
        title=title,
        images=images,
        digests=digests,
        categories=adapter.get_categories(product),
        fields=adapter.get_fields(product),
        content_hash=content_hash(model_id, f"{title}\0{text}", images, digests),
    )


def _encode(items: list[_Prepared], encoder: BaseEncoder, report: IndexReport) -> list[ProductVectors]:
    """The vectors of a batch: texts and titles in one call, photos once each; kept backbone outputs
    are reused (``services.encoding``), so only new texts and photos go through the backbones."""
    text_weight = float(search_settings.FUSION["TEXT_WEIGHT"])
    count = len(items)
    texts = encoding.encode_texts(encoder, [item.text for item in items] + [item.title for item in items])
    text_vectors, title_vectors = texts[:count], texts[count:]
    encoded = encoding.encode_photos(
        encoder,
        [(index, ref, digest) for index, item in enumerate(items) for ref, digest in zip(item.images, item.digests)],
        report.failed_images,
    )
    owners, shared, features, palettes = encoded.owners, encoded.shared, encoded.features, encoded.palettes
    per_item: dict[int, list[int]] = {}
    for row, (index, _ref) in enumerate(owners):
        per_item.setdefault(index, []).append(row)

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
        leaf = attributes.category_leaf(item.categories)
        if leaf:  # what the category and department signals read (rows stored before it: store.sql.CATEGORY_LEAF)
            fields[v.FIELD_CATEGORY_LEAF] = leaf
        inferred: dict[str, Any] = {}
        if inferring is not None:
            photos = attributes.photo_matrix(features[rows], shared[rows])
            inferred = attributes.enrichment(fields, inferring.infer(photos, text_vector), item.categories)
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
                inferred=inferred,
                search_text=item.text,
                photos=[PhotoVectors(owners[row][1].key, features[row], shared[row]) for row in rows],
            )
        )
    return stored


def _encode_and_write(
    items: list[_Prepared], encoder: BaseEncoder, versions: dict[str, int], report: IndexReport
) -> list[str]:
    """Encode and write a batch; when encoding raises, split it and go on, so one product blocks nothing.

    Database errors are not the batch's fault: they propagate (the task retries the batch).
    Returns the pks written.
    """
    try:
        with phase("other encoding"):  # the kept backbone outputs' reads and writes, fusion, attributes
            vectors = _encode(items, encoder, report)
    except DatabaseError:
        raise
    except Exception as exc:  # out of memory on a big batch, a photo that breaks the encoder, ...
        if len(items) > 1:
            logger.warning("encoding %d products failed (%s); splitting the batch", len(items), exc)
            middle = len(items) // 2
            return _encode_and_write(items[:middle], encoder, versions, report) + _encode_and_write(
                items[middle:], encoder, versions, report
            )
        outbox.record_failure(items[0].pk, versions[items[0].pk], f"{type(exc).__name__}: {exc}")
        report.failed.append(items[0].pk)
        return []
    with phase("write"):
        if encoder.model_id not in _DEFERRED.get():
            get_store().ensure_indexes(encoder.model_id, encoder.dimensions, encoder.feature_dimensions)
        batch_versions = {item.pk: versions[item.pk] for item in items}
        written, _removed = outbox.write_current(encoder.model_id, vectors, batch_versions)
    report.indexed += len(written)
    report.superseded += len(items) - len(written)
    return written


#: encoder versions whose HNSW indexes are built after their rows are written (:func:`indexes_built_after`)
_DEFERRED: ContextVar[frozenset[str]] = ContextVar("mmsearch_deferred_indexes", default=frozenset())


@contextmanager
def _without_indexes(model_id: str) -> Iterator[None]:
    token = _DEFERRED.set(_DEFERRED.get() | {model_id})
    try:
        yield
    finally:
        _DEFERRED.reset(token)


@contextmanager
def indexes_built_after(encoder: BaseEncoder) -> Iterator[None]:
    """Inside, products indexed with ``encoder`` are written without its HNSW indexes, which are built
    when the block ends without an error: for a version nobody searches yet (``mmsearch_train``'s
    staging head). Inserting into a new version's empty indexes row by row is the slow way to fill
    them: for 300 Luma products and their 486 photos, 6.8 s of inserts against 0.2 s without the
    indexes and a 1.1 s build after. Indexes that exist already (a resumed run) are kept up as usual."""
    with _without_indexes(encoder.model_id):
        yield
    # every row is written: the builds run here, in the command, whatever their size
    ensure_vector_indexes(encoder)
    refresh_statistics()


def store_is_empty() -> bool:
    """No vectors of any encoder version are stored: nothing can be searched yet (a first indexing)."""
    return not get_store().model_ids()


def remove_products(pks: Iterable[Any]) -> int:
    """Delete every stored vector of these products (all encoders)."""
    return get_store().delete_products([str(pk) for pk in pks])


def index_products(
    pks: Iterable[Any], *, force: bool = False, encoder: BaseEncoder | None = None, indexes_after: bool = False
) -> IndexReport:
    """Encode and store the vectors of the given products.

    Products that no longer exist (or are not searchable per the adapter's
    queryset) lose their vectors; products whose content hash is unchanged are
    skipped unless ``force``. Idempotent: safe to run twice or concurrently.

    Each product is claimed first (``outbox.claim``: a try is counted, failed products that are not
    due are skipped) and written only if it did not change meanwhile. When an earlier run died on
    these products, they are indexed one by one, so a product that kills the worker takes only
    itself down; a batch whose encoding raises is split, and a single product that raises is
    recorded as failing.

    Args:
        pks: product primary keys.
        force: re-encode even when the content is unchanged.
        encoder: override the configured encoder.
        indexes_after: write the rows without the encoder version's HNSW indexes (none are created, those
            that exist are kept up): the caller builds them once every row is written (``mmsearch_reindex``
            on an empty store, or with ``--indexes-after``), which costs far less than inserting each row
            into them; searches read the columns whole until then.

    Returns:
        counts of indexed, unchanged and removed products.

    Logs (INFO) where the time went when products were encoded: ``services.phases``.
    """
    if encoder is None:
        encoder, _model_id = current_encoder()
    keys = list(dict.fromkeys(str(pk) for pk in pks))
    report = IndexReport()
    started = time.perf_counter()
    deferred = _without_indexes(encoder.model_id) if indexes_after else nullcontext()
    with recording() as seconds, deferred:
        if len(keys) > 1 and outbox.has_unfinished(keys):
            logger.warning("an earlier run stopped on some of these %d products: indexing them one by one", len(keys))
            for key in keys:
                report.merge(_index_claimed([key], force, encoder))
        elif keys:
            report = _index_claimed(keys, force, encoder)
    if report.indexed or report.failed:
        spent = time.perf_counter() - started
        logger.info("indexed %d of %d products in %.2f s: %s", report.indexed, len(keys), spent, summary(seconds))
    return report


def _index_claimed(keys: list[str], force: bool, encoder: BaseEncoder) -> IndexReport:
    adapter = get_adapter()
    report = IndexReport()
    with phase("read"):  # the products, their stored hashes, and their photo files' digests
        versions = outbox.claim(keys)
        report.skipped = len(keys) - len(versions)
        keys = [pk for pk in keys if pk in versions]
        if not keys:
            return report
        products = {str(p.pk): p for p in adapter.get_queryset().filter(pk__in=keys)}
        model_id = encoder.model_id
        known = get_store().content_hashes(model_id, list(products))
        todo, unchanged = [], []
        for pk, product in products.items():
            item = _prepare(adapter, product, model_id)
            if not force and known.get(pk) == item.content_hash:
                unchanged.append(pk)
            else:
                todo.append(item)
    # products gone (deleted, not searchable) lose their vectors; unchanged ones become clean
    settled = {pk: version for pk, version in versions.items() if pk not in products or pk in unchanged}
    if settled:
        with phase("write"):
            _written, report.removed = outbox.write_current(model_id, [], settled, unchanged=unchanged)
        report.unchanged += len(unchanged)
    batch = max(1, int(search_settings.BATCH_SIZE))
    written: list[str] = []
    for start in range(0, len(todo), batch):
        written += _encode_and_write(todo[start : start + batch], encoder, versions, report)
    if written:
        product_indexed.send(sender=ProductEmbedding, product_pks=written, model_id=model_id)
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
    """Delete the vectors and HNSW indexes of every encoder version but the current one, and the kept
    backbone outputs of backbones the current encoder does not use.

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
    removed = sum(store.drop_model(model_id) for model_id in older)
    # kept backbone outputs of another backbone (other weights or preprocessing) serve no head any more
    encoder = current_encoder()[0]
    backbones = [encoder.text_backbone_id, encoder.image_backbone_id]
    store.drop_backbones(keep=[encoding.PALETTE_ID, *(backbone for backbone in backbones if backbone)])
    return removed, older


def refresh_statistics() -> None:
    """After a bulk write (``mmsearch_reindex``, a new head's index): the store's statistics brought up
    to date (``BaseVectorStore.refresh_statistics``)."""
    get_store().refresh_statistics()


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
        # the outbox: changed products waiting for a worker, and products given up on (mmsearch_reconcile)
        **outbox.counts(),
    }
