"""The one place that sends indexing work to the Celery worker: in batches, or once per committed transaction.

Tasks are sent by name (``INDEX_TASK``), so the services never import the task module that calls them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from celery import current_app
from celery.result import AsyncResult
from django.db import transaction

from multimodal_search.conf import search_settings

INDEX_TASK = "multimodal_search.tasks.index_products_task"


class EnqueueError(RuntimeError):
    """The broker could not be reached (the message says so in one line)."""


def send_index_task(pks: list[str], *, force: bool = False) -> AsyncResult:
    """Send one indexing task for these products to the ``QUEUE`` queue."""
    return current_app.send_task(INDEX_TASK, args=[pks], kwargs={"force": force}, queue=search_settings.QUEUE)


def enqueue_index(pks: Iterable[Any], *, force: bool = False, batch_size: int | None = None) -> list[AsyncResult]:
    """Send the products to the worker in tasks of ``batch_size`` (default ``BATCH_SIZE``), in the given order.

    Raises:
        EnqueueError: the broker is unreachable.
    """
    keys = [str(pk) for pk in pks]
    size = max(1, int(batch_size or search_settings.BATCH_SIZE))
    try:
        return [send_index_task(keys[start : start + size], force=force) for start in range(0, len(keys), size)]
    except Exception as exc:  # kombu raises OperationalError and friends: say what failed, in one line
        raise EnqueueError(f"could not reach the Celery broker ({exc})") from exc


def results_backend_configured() -> bool:
    """Whether task states can be read back (else progress is read from the stored vectors)."""
    return bool(current_app.conf.result_backend)


class _Batch:
    def __init__(self) -> None:
        self.pks: set[str] = set()
        self.sent = False

    def flush(self) -> None:
        if not self.sent:
            self.sent = True
            if self.pks:
                send_index_task(sorted(self.pks))


_pending = threading.local()


def index_on_commit(pks: Iterable[Any], using: str | None = None) -> None:
    """Queue these products for indexing when the current transaction commits (``AUTO_INDEX``).

    Saves inside one transaction are sent as one task: each call registers ``batch.flush`` with
    ``transaction.on_commit`` for a shared batch, and the first flush to run sends it. Only those
    registered callbacks keep the batch alive (this module holds a weak reference), so when a
    transaction rolls back, Django drops its callbacks, the batch is freed, and nothing is sent.
    """
    if not search_settings.AUTO_INDEX:
        return
    keys = {str(pk) for pk in pks if pk is not None}
    if not keys:
        return
    alias = using or "default"
    batches: dict[str, weakref.ref[_Batch]] = _pending.__dict__.setdefault("batches", {})
    reference = batches.get(alias)
    batch = reference() if reference is not None else None
    if batch is None or batch.sent:
        batch = _Batch()
        batches[alias] = weakref.ref(batch)
    batch.pks.update(keys)
    transaction.on_commit(batch.flush, using=using, robust=True)
