"""The index's health for the admin: counts, queue depth, recent errors, trained artefacts; re-index by scope.

Everything here reads what :func:`~multimodal_search.services.drift.find_drift` and the outbox know;
:func:`reindex` marks products dirty (so their progress shows as *pending*) and sends them to the worker.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import current_app
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import ChannelError

from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.models import DriftCheck, DriftWalk, IndexState
from multimodal_search.services import outbox
from multimodal_search.services.drift import Drift, find_drift, last_check
from multimodal_search.services.enqueue import bulk_queue, enqueue_deep_sweep, enqueue_index
from multimodal_search.services.query import current_encoder
from multimodal_search.services.sweeps import under_way
from multimodal_search.store import get_store
from multimodal_search.store.base import IndexInfo

logger = logging.getLogger(__name__)

SCOPES = ("selected", "stale", "failed", "all")
ERRORS_SHOWN = 10


@dataclass
class IndexFailure:
    """One product whose last indexing try raised."""

    product_pk: str
    error: str
    failed: bool
    when: datetime | None
    product: dict[str, Any] | None = None


@dataclass
class Artefact:
    """One file in ``MODEL_DIR`` written by ``mmsearch_train``."""

    name: str
    modified: datetime
    model_id: str | None
    current: bool


@dataclass
class IndexHealth:
    """What the admin's index health page shows."""

    model_id: str
    products: int
    indexed: int
    #: these four are None when the catalogue is too large to walk per page view and was never walked
    never_indexed: int | None
    old_version: int | None
    stale_content: int | None
    pending: int
    failed: int
    orphans: int | None
    images: int
    stored_versions: list[str] = field(default_factory=list)
    queue_depth: dict[str, int] | None = None
    errors: list[IndexFailure] = field(default_factory=list)
    artefacts: list[Artefact] = field(default_factory=list)
    #: the nearest-neighbour indexes of ``model_id`` (``mmsearch_indexes``)
    vector_indexes: list[IndexInfo] = field(default_factory=list)
    #: False: never indexed, older version, changed content and orphans are from ``checked`` (the last
    #: walk of a catalogue too large to walk per page view; None: never walked), not from this moment
    live: bool = True
    checked: DriftCheck | None = None
    #: the deep sweep's walk under way, if one is (how far it got); only where ``live`` is False
    walking: DriftWalk | None = None

    @property
    def indexes_to_build(self) -> bool:
        """Some vector index differs from the settings (other build parameters, a failed build, missing)."""
        return any(info.state != "current" for info in self.vector_indexes)

    @property
    def indexes_missing(self) -> bool:
        """Some vector column has rows but no usable index (searches read it whole)."""
        return any(info.state == "missing" for info in self.vector_indexes)

    @property
    def stale(self) -> int | None:
        """Products whose vectors are for an older encoder version or for changed content."""
        if self.old_version is None or self.stale_content is None:
            return None
        return self.old_version + self.stale_content

    @property
    def last_trained(self) -> datetime | None:
        return max((artefact.modified for artefact in self.artefacts), default=None)


def product_cards(pks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """pk -> the adapter's result dict (title, sku, image, ...) of the searchable products among ``pks``."""
    adapter = get_adapter()
    keys = [str(pk) for pk in pks]
    if not keys:
        return {}
    return {str(product.pk): adapter.to_result(product) for product in adapter.get_queryset().filter(pk__in=keys)}


def vector_rows_matching(term: str) -> Q:
    """The admin's search of the vector rows: the product's pk or SKU, or its indexed words (each word
    whole, the last also as a prefix: "hood" finds hoodies) through the stored text's full-text index. A
    substring match (``icontains``) read every row whole: 1.6 s at 100,000 products."""
    term = term.strip()
    found = Q(product_pk=term) | Q(product_pk__in=product_pks_matching(term))
    words = re.findall(r"[^\W_]+", term.lower())
    return found | get_store().rows_with_words(words) if words else found


def product_pks_matching(identifier: str) -> list[str]:
    """The pk of the product the adapter finds for ``identifier`` (a SKU in the demo), or nothing."""
    try:
        return [str(get_adapter().lookup(identifier.strip()).pk)]
    except Exception:  # the adapter's DoesNotExist, MultipleObjectsReturned, a malformed key
        return []


def queue_depth() -> dict[str, int] | None:
    """Messages waiting in the indexing queues (``QUEUE`` and ``BULK_QUEUE``); None when the broker is down."""
    names = sorted({str(search_settings.QUEUE), bulk_queue()})
    depth: dict[str, int] = {}
    try:
        with current_app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            for name in names:
                channel: Any = connection.channel()
                with channel:
                    try:
                        depth[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
                    except ChannelError:  # an empty Redis queue does not exist
                        depth[name] = 0
    except Exception as exc:  # broker unreachable: the page says so instead of failing
        logger.warning("could not read the indexing queue depth: %s", exc)
        return None
    return depth


def trained_artefacts(model_id: str) -> list[Artefact]:
    """The files in ``MODEL_DIR``, newest first; JSON artefacts say which encoder version they were trained on."""
    folder = Path(search_settings.MODEL_DIR)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if not path.is_file() or path.name.startswith("."):
            continue
        trained_for = None
        if path.suffix == ".json":
            try:
                trained_for = str(json.loads(path.read_text()).get("model_id") or "") or None
            except (OSError, ValueError, AttributeError):
                trained_for = None
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.get_current_timezone())
        found.append(Artefact(path.name, modified, trained_for, trained_for == model_id))
    return sorted(found, key=lambda artefact: artefact.modified, reverse=True)


def recent_errors(limit: int = ERRORS_SHOWN) -> list[IndexFailure]:
    """The products whose last indexing try raised, most recent first, with their adapter result."""
    rows = IndexState.objects.exclude(last_error="").order_by("-touched_at", "product_pk")[:limit]
    errors = [
        IndexFailure(row.product_pk, row.last_error, row.failed_at is not None, row.failed_at or row.touched_at)
        for row in rows
    ]
    cards = product_cards([error.product_pk for error in errors])
    for error in errors:
        error.product = cards.get(error.product_pk)
    return errors


def walked_per_request(products: int) -> bool:
    """Whether a catalogue of ``products`` searchable products is small enough to walk (:func:`find_drift`)
    inside a web request: at most ``DURABILITY["LIVE_CHECK_PRODUCTS"]``."""
    return products <= int(outbox.setting("LIVE_CHECK_PRODUCTS"))


def index_health(drift: Drift | None = None) -> IndexHealth:
    """Say how current the index is, from the outbox, the stored vectors and a walk of the catalogue.

    The walk (:func:`find_drift`, about 0.65-0.8 ms a product with four photos here: 80 s at 100,000) runs for this call
    when the catalogue has at most ``DURABILITY["LIVE_CHECK_PRODUCTS"]`` searchable products; a larger
    one shows what the last walk found (the deep sweep's, ``mmsearch_reconcile``'s) and when.

    Args:
        drift: a drift already found (default: as above).
    """
    _encoder, model_id = current_encoder()
    store = get_store()
    products = get_adapter().get_queryset().count()
    if drift is None and walked_per_request(products):
        drift = find_drift()
    counts = outbox.counts()
    found: dict[str, Any]
    if drift is not None:
        model_id, products = drift.model_id, drift.products
        found = {
            "indexed": drift.products - len(drift.never_indexed) - len(drift.old_version),
            "never_indexed": len(drift.never_indexed),
            "old_version": len(drift.old_version),
            "stale_content": len(drift.stale),
            "orphans": len(drift.orphans),
        }
    else:
        check = last_check(model_id)  # None (never walked): those four counts are None too
        found = {
            "indexed": store.count(model_id),
            "never_indexed": check and check.never_indexed,
            "old_version": check and check.old_version,
            "stale_content": check and check.stale,
            "orphans": check and check.orphans,
            "live": False,
            "checked": check,
            "walking": under_way(model_id),
        }
    return IndexHealth(
        model_id=model_id,
        products=products,
        pending=counts["pending"],
        failed=counts["failed"],
        images=store.count_photos(model_id),
        stored_versions=sorted(store.model_ids()),
        queue_depth=queue_depth(),
        errors=recent_errors(),
        artefacts=trained_artefacts(model_id),
        vector_indexes=store.index_status(model_id),
        **found,
    )


def reindex(scope: str, pks: Sequence[Any] = ()) -> int | None:
    """Mark products dirty (fresh tries, so they count as *pending* until done) and send them to the worker.

    Args:
        scope: ``selected`` (``pks``), ``stale`` (older encoder version, changed content or never
            indexed), ``failed`` or ``all`` searchable products.
        pks: the products of ``selected``.

    Returns:
        how many products were sent; None: ``stale`` in a catalogue of over
        ``DURABILITY["LIVE_CHECK_PRODUCTS"]`` products, whose walk was sent to the worker (a deep sweep).

    Raises:
        ValueError: an unknown scope.
        EnqueueError: the broker is unreachable (the products stay dirty, and the sweep sends them).
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    if scope == "selected":
        keys = [str(pk) for pk in pks]
    elif scope == "failed":
        keys = list(outbox.failed())
    elif scope == "stale":
        if not walked_per_request(get_adapter().get_queryset().count()):
            enqueue_deep_sweep()
            return None
        drift = find_drift()
        keys = drift.never_indexed + drift.old_version + drift.stale
    else:
        keys = [str(pk) for pk in get_adapter().get_queryset().order_by("pk").values_list("pk", flat=True)]
    if not keys:
        return 0
    outbox.mark_dirty(keys)
    enqueue_index(keys, force=scope in ("selected", "all"), track=False, bulk=scope == "all")
    outbox.touch(keys)
    return len(keys)
