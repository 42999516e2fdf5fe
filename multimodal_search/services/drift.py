"""Drift between the catalogue and the index: finding it (:func:`find_drift`) and repairing it (:func:`fix_drift`).

A walk compares every searchable product's current content hash with the stored one, in pk chunks
(:func:`product_chunks`), so it finds changes that bypassed the save signals (``QuerySet.update()``,
``loaddata``, a renamed category, a photo file replaced on disk), then reads the stored products in
chunks for vectors left behind by products that are gone (:func:`orphan_chunks`). The periodic
sweep's deep pass walks the same chunks, a worker step at a time (``services.sweeps``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Field, QuerySet
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

    #: the kinds of drift a walk finds (the others are the outbox's), as :class:`DriftCheck` counts them
    COUNTED = ("never_indexed", "old_version", "stale", "orphans")

    def counts(self) -> dict[str, int]:
        """``products`` walked and the length of each ``COUNTED`` list."""
        return {"products": self.products, **{name: len(getattr(self, name)) for name in self.COUNTED}}

    @property
    def total(self) -> int:
        return sum(len(pks) for _name, pks, _why in self.problems())

    def to_index(self) -> list[str]:
        """Every product that needs (re)indexing (orphans are deleted instead)."""
        wanted = set(self.never_indexed) | set(self.old_version) | set(self.stale) | set(self.failed)
        return sorted(wanted | set(self.stuck), key=pk_order)


def pk_order(pk: str) -> tuple[int, str]:
    return (0, f"{int(pk):020d}") if pk.isdigit() else (1, pk)


def find_drift(*, progress: Progress | None = None, chunk: int | None = None) -> Drift:
    """Walk every searchable product (pk order, ``DURABILITY["CHUNK"]`` at a time), then every stored one
    (for orphans), and compare them with the index. What is held at once stays a chunk, whatever the
    catalogue's size (``services.sweeps`` walks the same chunks, a worker step at a time).

    Args:
        progress: called with the number of products checked after each chunk (a progress bar).
        chunk: products per step (default ``DURABILITY["CHUNK"]``).

    Returns:
        the drift found; empty lists mean the index is current. Its counts are recorded
        (:func:`last_check`) for the index health page of a catalogue too large to walk per page view.
    """
    started = time.monotonic()
    _encoder, model_id = current_encoder()
    size = max(1, int(chunk or outbox.setting("CHUNK")))
    drift = Drift(model_id=model_id)
    for _last, found in product_chunks(model_id, None, size):
        drift.products += found.products
        drift.never_indexed += found.never_indexed
        drift.old_version += found.old_version
        drift.stale += found.stale
        if progress is not None:
            progress(found.products)
    for _last, orphans in orphan_chunks(None, size):
        drift.orphans += orphans
    drift.orphans.sort(key=pk_order)
    drift.failed = outbox.failed()
    drift.stuck = outbox.pending(older_than=float(outbox.setting("REQUEUE_AFTER")))
    record_check(model_id, time.monotonic() - started, drift.counts())
    return drift


def product_chunks(model_id: str, after: str | None, size: int) -> Iterator[tuple[str, Drift]]:
    """The searchable products after the pk ``after`` (None: from the first), ``size`` at a time in pk
    order, each chunk compared with the index: ``(its last pk, its drift)`` (products and the three
    lists of products to index)."""
    adapter = get_adapter()
    store = get_store()
    queryset = adapter.get_queryset().order_by("pk")
    last = None if after is None else _pk_field(queryset).to_python(after)
    while True:
        products = list((queryset if last is None else queryset.filter(pk__gt=last))[:size])
        if not products:
            return
        last = products[-1].pk
        keys = [str(product.pk) for product in products]
        known = store.content_hashes(model_id, keys)
        other_versions = store.stored_pks(among=[pk for pk in keys if pk not in known])
        found = Drift(model_id=model_id, products=len(products))
        for pk, product in zip(keys, products):
            if pk not in known:
                (found.old_version if pk in other_versions else found.never_indexed).append(pk)
            elif known[pk] != current_hash(adapter, product, model_id):
                found.stale.append(pk)
        yield str(last), found


def orphan_chunks(after: str | None, size: int) -> Iterator[tuple[str, list[str]]]:
    """The stored products (any encoder version) after ``after`` in the store's order, ``size`` at a
    time: ``(the chunk's last pk, those of its products no longer searchable)``. Vectors are read first
    and the products second, so a product activated meanwhile is live, never deleted as an orphan."""
    store = get_store()
    while True:
        keys = store.stored_pks_after(after, size)
        if not keys:
            return
        live = _searchable(keys)
        after = keys[-1]
        yield after, [pk for pk in keys if pk not in live]


def _searchable(keys: list[str]) -> set[str]:
    """Those of ``keys`` that are pks of products the adapter returns (one that cannot be a pk of the
    model, "abc" for an integer key, is not)."""
    queryset = get_adapter().get_queryset()
    field = _pk_field(queryset)
    values = []
    for key in keys:
        try:
            values.append(field.to_python(key))
        except ValidationError:
            continue
    return {str(pk) for pk in queryset.filter(pk__in=values).values_list("pk", flat=True)}


def _pk_field(queryset: QuerySet[Any]) -> Field[Any, Any]:
    field = queryset.model._meta.pk
    assert field is not None
    return field


def record_check(model_id: str, seconds: float, counts: Mapping[str, int]) -> None:
    """Keep what a whole walk found (:func:`last_check`): the health page of a large catalogue shows it.
    ``counts``: ``products`` walked and each of ``Drift.COUNTED``."""
    DriftCheck.objects.update_or_create(
        model_id=model_id,
        defaults={"checked_at": timezone.now(), "seconds": round(seconds, 3), **counts},
    )


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
