"""Model signals -> indexing tasks, sent once per committed transaction."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from multimodal_search.conf import search_settings


def _enqueue(pks: list[Any]) -> None:
    from multimodal_search.tasks import index_products_task

    index_products_task.apply_async(
        args=[sorted({str(pk) for pk in pks})], queue=search_settings.QUEUE
    )


class _Batch:
    def __init__(self, pks: set[str]) -> None:
        self.pks = pks
        self.sent = False

    def flush(self) -> None:
        self.sent = True
        if self.pks:
            _enqueue(list(self.pks))


def schedule(pks: list[Any], using: str | None = None) -> None:
    """Queue these products for indexing when the current transaction commits.

    Saves inside one transaction are sent as one task (the worker batches them).
    A rolled-back transaction sends nothing.
    """
    if not search_settings.AUTO_INDEX or not pks:
        return
    keys = {str(pk) for pk in pks}
    connection = transaction.get_connection(using)
    batch: _Batch | None = getattr(connection, "_mmsearch_batch", None)
    if batch is not None and not batch.sent and any(entry[1] == batch.flush for entry in connection.run_on_commit):
        batch.pks.update(keys)
        return
    batch = _Batch(keys)
    connection._mmsearch_batch = batch
    transaction.on_commit(batch.flush, using=using, robust=True)


def product_changed(sender: type, instance: Any, raw: bool = False, using: str | None = None, **kwargs: Any) -> None:
    if raw:
        return
    schedule([instance.pk], using=using)


def related_changed(sender: type, instance: Any, raw: bool = False, using: str | None = None, **kwargs: Any) -> None:
    if raw:
        return
    from multimodal_search.adapters import get_adapter

    resolver = get_adapter().watched_models().get(sender)
    if resolver is not None:
        schedule([pk for pk in resolver(instance) if pk is not None], using=using)


def connect() -> None:
    from multimodal_search.adapters import get_adapter

    if not search_settings.ADAPTER or not search_settings.PRODUCT_MODEL:
        return
    adapter = get_adapter()
    model = adapter.get_model()
    post_save.connect(product_changed, sender=model, dispatch_uid="mmsearch_product_save")
    post_delete.connect(product_changed, sender=model, dispatch_uid="mmsearch_product_delete")
    for related in adapter.watched_models():
        post_save.connect(related_changed, sender=related, dispatch_uid=f"mmsearch_save_{related._meta.label}")
        post_delete.connect(related_changed, sender=related, dispatch_uid=f"mmsearch_delete_{related._meta.label}")
