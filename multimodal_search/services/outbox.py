"""The indexing outbox: one ``IndexState`` row per product says whether its vectors are current.

A product change marks the row dirty and bumps its ``version`` in the change's own transaction
(:func:`mark_dirty`); the task is sent on commit, and when that send fails the row stays dirty for
the sweep. A task *claims* its products before encoding (:func:`claim`: it counts the attempt, so a
product that kills the worker still uses up its tries) and writes vectors only for rows whose
version is still the one it claimed (:func:`write_current`, under a row lock), so an older write
never wins over a newer edit. A product that fails ``MAX_ATTEMPTS`` times is marked failed with its
error and retried by the sweep with a backoff that doubles up to ``RETRY_BACKOFF_MAX``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from multimodal_search.conf import search_settings
from multimodal_search.models import IndexState
from multimodal_search.store import get_store
from multimodal_search.store.base import ProductVectors

logger = logging.getLogger(__name__)

_UPSERT_DIRTY = """
INSERT INTO {table} (product_pk, dirty, version, attempts, last_error, touched_at)
SELECT pk, true, 1, 0, '', %s FROM unnest(%s::varchar[]) AS pk
ON CONFLICT (product_pk) DO UPDATE SET
    dirty = true, version = {table}.version + 1, attempts = 0, last_error = '',
    failed_at = NULL, next_attempt_at = NULL, touched_at = EXCLUDED.touched_at
"""

_INSERT_MISSING = """
INSERT INTO {table} (product_pk, dirty, version, attempts, last_error, touched_at)
SELECT pk, true, 1, 0, '', %s FROM unnest(%s::varchar[]) AS pk
ON CONFLICT (product_pk) DO NOTHING
"""


def setting(name: str) -> Any:
    """One key of ``MULTIMODAL_SEARCH["DURABILITY"]``."""
    return search_settings.DURABILITY[name]


def backoff(attempts: int) -> timedelta:
    """Wait before the next try of a product that failed ``attempts`` times: doubles, capped."""
    base = float(setting("RETRY_BACKOFF"))
    return timedelta(seconds=min(float(setting("RETRY_BACKOFF_MAX")), base * 2 ** max(0, attempts - 1)))


def _keys(pks: Iterable[Any]) -> list[str]:
    return sorted({str(pk) for pk in pks if pk is not None})  # sorted: rows are locked in one order


def _execute(statement: str, params: list[Any], using: str | None = None) -> None:
    with connections[using or "default"].cursor() as cursor:
        cursor.execute(statement.format(table=IndexState._meta.db_table), params)


def mark_dirty(pks: Iterable[Any], using: str | None = None) -> None:
    """Record that these products changed, in the caller's transaction: dirty, a new version, fresh tries."""
    keys = _keys(pks)
    if keys:
        _execute(_UPSERT_DIRTY, [timezone.now(), keys], using)


def has_unfinished(pks: Sequence[str]) -> bool:
    """Whether an earlier task started on one of these products and did not finish it."""
    return IndexState.objects.filter(product_pk__in=list(pks), dirty=True, attempts__gt=0).exists()


def claim(pks: Sequence[str]) -> dict[str, int]:
    """Count a try for each product that is due and return pk -> the version this task indexes.

    Skipped: failed products whose retry is not due yet, and products that used up their tries
    without an answer (the worker died on them), which are marked failed here.
    """
    keys = _keys(pks)
    if not keys:
        return {}
    now = timezone.now()
    limit = int(setting("MAX_ATTEMPTS"))
    _execute(_INSERT_MISSING, [now, keys])
    claimed: dict[str, int] = {}
    with transaction.atomic():
        rows = list(IndexState.objects.select_for_update().filter(product_pk__in=keys).order_by("product_pk"))
        for row in rows:
            if row.failed_at is not None and row.next_attempt_at is not None and row.next_attempt_at > now:
                continue
            if row.failed_at is None and row.attempts >= limit:
                row.failed_at = now
                row.next_attempt_at = now + backoff(row.attempts)
                row.last_error = row.last_error or (
                    f"the worker stopped {row.attempts} times while indexing this product (killed, out of memory?)"
                )
                logger.warning("product %s marked failed: %s", row.product_pk, row.last_error)
                continue
            row.attempts += 1
            row.touched_at = now
            # from the last try on, the next one waits: a product that kills the worker does not loop
            row.next_attempt_at = now + backoff(row.attempts) if row.attempts >= limit else None
            claimed[row.product_pk] = row.version
        IndexState.objects.bulk_update(
            rows, ["attempts", "touched_at", "next_attempt_at", "failed_at", "last_error"], batch_size=500
        )
    return claimed


def write_current(
    model_id: str, vectors: Sequence[ProductVectors], versions: dict[str, int], *, unchanged: Sequence[str] = ()
) -> tuple[list[str], int]:
    """Store vectors, keep unchanged ones, and drop the vectors of the other claimed products that are gone.

    Only products whose version is still ``versions[pk]`` are touched (their rows are locked
    meanwhile, so a concurrent edit waits and then marks them dirty again); those become clean.
    ``vectors`` products are written, ``unchanged`` ones only marked clean, and every other product
    in ``versions`` is treated as gone (its vectors and state row are deleted).

    Returns:
        (the pks whose vectors were written, product rows deleted for gone products)
    """
    store = get_store()
    written = {item.product_pk for item in vectors}
    keep = written | set(unchanged)
    with transaction.atomic():
        rows = IndexState.objects.select_for_update().filter(product_pk__in=_keys(versions)).order_by("product_pk")
        current = {row.product_pk for row in rows if versions.get(row.product_pk) == row.version}
        fresh = [item for item in vectors if item.product_pk in current]
        if fresh:
            store.save_products(model_id, fresh)
        gone = sorted(current - keep)
        removed = store.delete_products(gone) if gone else 0
        IndexState.objects.filter(product_pk__in=gone).delete()
        IndexState.objects.filter(product_pk__in=sorted(current & keep)).update(
            dirty=False, attempts=0, last_error="", failed_at=None, next_attempt_at=None, indexed_at=timezone.now()
        )
    superseded = sorted(written - current)
    if superseded:
        logger.info("not writing %d product(s) changed since this task started: %s", len(superseded), superseded)
    return [item.product_pk for item in fresh], removed


def record_failure(pk: str, version: int, error: str) -> None:
    """A try of this product raised: keep the error; after ``MAX_ATTEMPTS`` tries it is failed."""
    now = timezone.now()
    row = IndexState.objects.filter(product_pk=pk, version=version).first()
    if row is None:
        return  # changed meanwhile: the new version gets fresh tries
    failed = row.attempts >= int(setting("MAX_ATTEMPTS"))
    IndexState.objects.filter(pk=row.pk, version=version).update(
        last_error=error[:2000],
        next_attempt_at=now + backoff(row.attempts),
        failed_at=(row.failed_at or now) if failed else None,
    )
    logger.warning("indexing product %s failed (try %d): %s", pk, row.attempts, error)


def due_for_sweep(now: datetime | None = None) -> list[str]:
    """Dirty products to send again: not sent, started or changed for ``REQUEUE_AFTER``, or whose retry is due."""
    now = now or timezone.now()
    quiet = now - timedelta(seconds=float(setting("REQUEUE_AFTER")))
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    waited = Q(touched_at__lte=quiet) | Q(next_attempt_at__isnull=False, touched_at__lt=F("next_attempt_at"))
    rows = IndexState.objects.filter(due & waited, dirty=True).order_by("product_pk")
    return list(rows.values_list("product_pk", flat=True))


def touch(pks: Sequence[str]) -> None:
    """Record that these products were just sent (the sweep waits ``REQUEUE_AFTER`` before sending them again)."""
    IndexState.objects.filter(product_pk__in=_keys(pks)).update(touched_at=timezone.now())


def touch_back(pks: Sequence[str]) -> None:
    """Make these dirty products due for the sweep now (they were just found by the deep pass)."""
    long_ago = timezone.now() - timedelta(seconds=float(setting("REQUEUE_AFTER")) + 1)
    IndexState.objects.filter(product_pk__in=_keys(pks)).update(touched_at=long_ago)


def reset_failures(pks: Sequence[str]) -> int:
    """Give failed products fresh tries now (``mmsearch_reconcile --fix``)."""
    return IndexState.objects.filter(product_pk__in=_keys(pks), failed_at__isnull=False).update(
        failed_at=None, attempts=0, next_attempt_at=None, dirty=True
    )


def forget(pks: Sequence[str]) -> None:
    """Drop the state rows of products that no longer exist."""
    IndexState.objects.filter(product_pk__in=_keys(pks)).delete()


def failed() -> dict[str, str]:
    """pk -> last error of every failed product."""
    rows = IndexState.objects.filter(failed_at__isnull=False).order_by("product_pk")
    return dict(rows.values_list("product_pk", "last_error"))


def counts() -> dict[str, int]:
    """How many products wait for a worker (``pending``) and how many were given up on (``failed``)."""
    waiting = IndexState.objects.filter(dirty=True, failed_at__isnull=True).count()
    return {"pending": waiting, "failed": IndexState.objects.filter(failed_at__isnull=False).count()}


def pending(*, older_than: float = 0) -> list[str]:
    """Dirty products that are not failed (waiting for, or being indexed by, a worker).

    Args:
        older_than: only those not changed, started or sent for this many seconds (stuck ones).
    """
    rows = IndexState.objects.filter(dirty=True, failed_at__isnull=True)
    if older_than:
        rows = rows.filter(touched_at__lte=timezone.now() - timedelta(seconds=older_than))
    return list(rows.order_by("product_pk").values_list("product_pk", flat=True))
