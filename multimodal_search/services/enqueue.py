"""The one place that sends indexing work to the Celery worker: in batches, or once per committed transaction.

Tasks are sent by name (``INDEX_TASK``), so the services never import the task module that calls them.
A change is first recorded in the outbox (``services.outbox``) inside its own transaction; sending the
task on commit may then fail (broker down) without losing anything: the failure is logged and the
sweep sends the product later.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from celery import current_app
from celery.result import AsyncResult
from django.db import transaction

from multimodal_search.conf import search_settings
from multimodal_search.services import outbox

logger = logging.getLogger(__name__)

INDEX_TASK = "multimodal_search.tasks.index_products_task"
SWEEP_TASK = "multimodal_search.tasks.sweep_index_task"
RETRAIN_TASK = "multimodal_search.tasks.retrain_task"


class EnqueueError(RuntimeError):
    """The broker could not be reached (the message says so in one line)."""


# Sends on commit and from the sweep: no result to wait for (with Redis down, subscribing to the
# result would block the save for ~20 s), and one quick retry: the outbox keeps what is not sent.
_FIRE_AND_FORGET: dict[str, Any] = {
    "ignore_result": True,
    "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
}


def bulk_queue() -> str:
    """The queue of bulk indexing: ``BULK_QUEUE`` (a GPU worker's, say), else ``QUEUE``."""
    return str(search_settings.BULK_QUEUE or search_settings.QUEUE)


def send_index_task(
    pks: list[str], *, force: bool = False, track: bool = True, queue: str | None = None, indexes_after: bool = False
) -> AsyncResult:
    """Send one indexing task for these products to ``queue`` (default ``QUEUE``; ``track``: keep its result;
    ``indexes_after``: ``services.index_products``'s)."""
    options = {} if track else _FIRE_AND_FORGET
    kwargs: dict[str, Any] = {"force": force, **({"indexes_after": True} if indexes_after else {})}
    return current_app.send_task(INDEX_TASK, args=[pks], kwargs=kwargs, queue=queue or search_settings.QUEUE, **options)


def enqueue_index(
    pks: Iterable[Any],
    *,
    force: bool = False,
    batch_size: int | None = None,
    track: bool = True,
    bulk: bool = False,
    indexes_after: bool = False,
) -> list[AsyncResult]:
    """Send the products to the worker in tasks of ``batch_size`` (default ``BATCH_SIZE``), in the given order.

    ``track=False`` sends without a result to wait for (the sweep: the outbox tracks the products).
    ``bulk=True`` sends to ``bulk_queue()`` (a whole catalogue: throughput-bound work for a GPU
    worker) instead of ``QUEUE`` (saves and the sweep: latency-bound). ``indexes_after``: the tasks write
    without the HNSW indexes, which the sender builds once they are done (``services.index_products``).

    Raises:
        EnqueueError: the broker is unreachable.
    """
    keys = [str(pk) for pk in pks]
    size = max(1, int(batch_size or search_settings.BATCH_SIZE))
    queue = bulk_queue() if bulk else search_settings.QUEUE
    try:
        return [
            send_index_task(
                keys[start : start + size], force=force, track=track, queue=queue, indexes_after=indexes_after
            )
            for start in range(0, len(keys), size)
        ]
    except Exception as exc:  # kombu raises OperationalError and friends: say what failed, in one line
        raise EnqueueError(f"could not reach the Celery broker ({exc})") from exc


def enqueue_retrain() -> AsyncResult:
    """Send one retraining task (``mmsearch_train``: heads, attributes, re-ranker, then the re-index for the
    new version) to ``bulk_queue()``, the worker that has the models; never run in a web request.

    Raises:
        EnqueueError: the broker is unreachable.
    """
    try:
        return current_app.send_task(RETRAIN_TASK, queue=bulk_queue(), **_FIRE_AND_FORGET)
    except Exception as exc:  # kombu raises OperationalError and friends: say what failed, in one line
        raise EnqueueError(f"could not reach the Celery broker ({exc})") from exc


def enqueue_deep_sweep(*, resume: bool = False) -> None:
    """Send a deep sweep (``services.sweeps.sweep(deep=True)``: walk the catalogue, queue what drifted)
    to the indexing worker: a walk of a large catalogue outlasts a web request. ``resume``: the next step
    of the walk under way (a step sends it), which starts no walk.

    Raises:
        EnqueueError: the broker is unreachable.
    """
    kwargs = {"deep": True, **({"resume": True} if resume else {})}
    try:
        current_app.send_task(SWEEP_TASK, kwargs=kwargs, queue=search_settings.QUEUE, **_FIRE_AND_FORGET)
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
                try:
                    send_index_task(sorted(self.pks), track=False)
                except Exception as exc:  # the outbox keeps them dirty: the sweep sends them later
                    logger.warning(
                        "could not enqueue indexing of %d product(s), left for the sweep: %s", len(self.pks), exc
                    )


_pending = threading.local()


def index_on_commit(pks: Iterable[Any], using: str | None = None) -> None:
    """Mark these products dirty now and queue them for indexing when the transaction commits (``AUTO_INDEX``).

    The dirty mark (``outbox.mark_dirty``) is written in the caller's transaction, so it commits or
    rolls back with the change; a failed send is logged and left for the sweep. Saves inside one
    transaction are sent as one task: each call registers ``batch.flush`` with
    ``transaction.on_commit`` for a shared batch, and the first flush to run sends it. Only those
    registered callbacks keep the batch alive (this module holds a weak reference), so when a
    transaction rolls back, Django drops its callbacks, the batch is freed, and nothing is sent.
    """
    if not search_settings.AUTO_INDEX:
        return
    keys = {str(pk) for pk in pks if pk is not None}
    if not keys:
        return
    outbox.mark_dirty(keys, using=using)
    alias = using or "default"
    batches: dict[str, weakref.ref[_Batch]] = _pending.__dict__.setdefault("batches", {})
    reference = batches.get(alias)
    batch = reference() if reference is not None else None
    if batch is None or batch.sent:
        batch = _Batch()
        batches[alias] = weakref.ref(batch)
    batch.pks.update(keys)
    transaction.on_commit(batch.flush, using=using, robust=True)
