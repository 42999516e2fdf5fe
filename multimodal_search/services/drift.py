"""Drift between the catalogue and the index: finding it (:func:`find_drift`), repairing it (:func:`fix_drift`),
and the periodic sweep that keeps it at zero (:func:`sweep`).

The sweep sends what the outbox says is dirty and due; its *deep* pass walks every searchable
product in pk chunks and compares its current content hash with the stored one, so it also finds
changes that bypassed the save signals (``QuerySet.update()``, ``loaddata``, a renamed category,
a photo file replaced on disk) and vectors left behind by products that are gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils import timezone

from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.models import DriftCheck
from multimodal_search.services import outbox
from multimodal_search.services.enqueue import enqueue_index
from multimodal_search.services.indexing import IndexReport, current_hash, index_products
from multimodal_search.services.query import current_encoder
from multimodal_search.store import get_store

logger = logging.getLogger(__name__)

Progress = Callable[[int], object]


@dataclass
class Drift:
    """What differs between the searchable products and the stored vectors of the current encoder."""

    model_id: str
    products: int = 0
    never_indexed: list[str] = field(default_factory=list)
    old_version: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    def problems(self) -> list[tuple[str, list[str], str]]:
        """(problem, pks, explanation) for each kind of drift, in the report's order."""
        return [
            ("never indexed", self.never_indexed, "searchable, no vectors at all"),
            ("old version", self.old_version, "vectors only for another encoder version"),
            ("stale", self.stale, "stored content hash differs from the product's content"),
            ("failed", sorted(self.failed), "gave up after repeated errors; retried with backoff"),
            ("stuck", self.stuck, "changed over REQUEUE_AFTER ago, no worker finished it"),
            ("orphaned", self.orphans, "vectors of a deleted or inactive product"),
        ]

    @property
    def total(self) -> int:
        return sum(len(pks) for _name, pks, _why in self.problems())

    def to_index(self) -> list[str]:
        """Every product that needs (re)indexing (orphans are deleted instead)."""
        wanted = set(self.never_indexed) | set(self.old_version) | set(self.stale) | set(self.failed)
        return sorted(wanted | set(self.stuck), key=_pk_order)


def _pk_order(pk: str) -> tuple[int, str]:
    return (0, f"{int(pk):020d}") if pk.isdigit() else (1, pk)


def find_drift(*, progress: Progress | None = None, chunk: int | None = None) -> Drift:
    """Walk every searchable product (pk order, ``DURABILITY["CHUNK"]`` at a time) and compare it with the index.

    Args:
        progress: called with the number of products checked after each chunk (a progress bar).
        chunk: products per step (default ``DURABILITY["CHUNK"]``).

    Returns:
        the drift found; empty lists mean the index is current. Its counts are recorded
        (:func:`last_check`) for the index health page of a catalogue too large to walk per page view.
    """
    started = time.monotonic()
    adapter = get_adapter()
    store = get_store()
    _encoder, model_id = current_encoder()
    size = max(1, int(chunk or outbox.setting("CHUNK")))
    drift = Drift(model_id=model_id)
    # vectors first, products second: a product activated meanwhile is live, never deleted as an orphan
    stored_any = store.stored_pks()
    queryset = adapter.get_queryset().order_by("pk")
    live: set[str] = set()
    last = None
    while True:
        page = queryset if last is None else queryset.filter(pk__gt=last)
        products = list(page[:size])
        if not products:
            break
        last = products[-1].pk
        keys = [str(product.pk) for product in products]
        live.update(keys)
        known = store.content_hashes(model_id, keys)
        for pk, product in zip(keys, products):
            if pk not in known:
                (drift.old_version if pk in stored_any else drift.never_indexed).append(pk)
            elif known[pk] != current_hash(adapter, product, model_id):
                drift.stale.append(pk)
        drift.products += len(products)
        if progress is not None:
            progress(len(products))
    drift.orphans = sorted(stored_any - live, key=_pk_order)
    drift.failed = outbox.failed()
    drift.stuck = outbox.pending(older_than=float(outbox.setting("REQUEUE_AFTER")))
    DriftCheck.objects.update_or_create(
        model_id=model_id,
        defaults={
            "checked_at": timezone.now(),
            "seconds": round(time.monotonic() - started, 3),
            "products": drift.products,
            "never_indexed": len(drift.never_indexed),
            "old_version": len(drift.old_version),
            "stale": len(drift.stale),
            "orphans": len(drift.orphans),
        },
    )
    return drift


def last_check(model_id: str) -> DriftCheck | None:
    """The counts of the last :func:`find_drift` for ``model_id`` (None: the catalogue was never walked)."""
    return DriftCheck.objects.filter(model_id=model_id).first()


@dataclass
class Repair:
    """What :func:`fix_drift` did."""

    sent: int = 0
    orphans_removed: int = 0
    report: IndexReport | None = None


def fix_drift(drift: Drift, *, sync: bool = False, progress: Progress | None = None) -> Repair:
    """Repair what :func:`find_drift` found.

    Drifted products are marked dirty (a new version, as for a change the signals missed), failed
    ones get fresh tries, orphaned vectors are deleted, and everything is indexed: by the worker,
    or in this process with ``sync``.

    Args:
        drift: what to repair.
        sync: index in this process instead of sending tasks.
        progress: called with the number of products indexed after each batch (``sync`` only).

    Raises:
        EnqueueError: the broker is unreachable (without ``sync``).
    """
    repair = Repair()
    if drift.orphans:
        repair.orphans_removed = get_store().delete_products(drift.orphans)
        outbox.forget(drift.orphans)
    outbox.mark_dirty(drift.never_indexed + drift.old_version + drift.stale)
    outbox.reset_failures(list(drift.failed))
    todo = drift.to_index()
    if not todo:
        return repair
    if sync:
        repair.report = IndexReport()
        size = max(1, int(search_settings.BATCH_SIZE))
        for start in range(0, len(todo), size):
            repair.report.merge(index_products(todo[start : start + size]))
            if progress is not None:
                progress(len(todo[start : start + size]))
    else:
        enqueue_index(todo, track=False)
        outbox.touch(todo)
    repair.sent = len(todo)
    return repair


@dataclass
class SweepReport:
    """What one sweep did."""

    sent: int = 0
    marked: int = 0
    orphans_removed: int = 0


def sweep(*, deep: bool = False) -> SweepReport:
    """Send the dirty products that are due; with ``deep``, first find drift the outbox does not know.

    The light pass reads only the outbox: dirty products not sent, started or changed for
    ``REQUEUE_AFTER`` seconds (a lost task, a failed enqueue, a killed worker), and failed
    products whose backoff is over. The deep pass (:func:`find_drift`) marks never-indexed,
    old-version and stale products dirty and deletes orphaned vectors.

    Raises:
        EnqueueError: the broker is unreachable (the products stay dirty).
    """
    report = SweepReport()
    if deep:
        drift = find_drift()
        missed = drift.never_indexed + drift.old_version + drift.stale
        outbox.mark_dirty(missed)
        # marked now, so sent by this very sweep rather than after REQUEUE_AFTER
        outbox.touch_back(missed)
        report.marked = len(missed)
        if drift.orphans:
            report.orphans_removed = get_store().delete_products(drift.orphans)
            outbox.forget(drift.orphans)
    due = outbox.due_for_sweep()
    if due:
        enqueue_index(sorted(due, key=_pk_order), track=False)
        outbox.touch(due)
        logger.info("sweep sent %d product(s) to the indexing worker", len(due))
    report.sent = len(due)
    return report
