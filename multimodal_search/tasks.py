"""Celery tasks: thin wrappers that take ids and call the indexing service."""

from __future__ import annotations

from celery import shared_task

from multimodal_search import services
from multimodal_search.services.enqueue import INDEX_TASK


@shared_task(
    name=INDEX_TASK,
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
    acks_late=True,
)
def index_products_task(product_pks: list[str], force: bool = False) -> dict[str, int]:
    report = services.index_products(product_pks, force=force)
    return {"indexed": report.indexed, "unchanged": report.unchanged, "removed": report.removed}
