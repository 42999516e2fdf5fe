"""Celery tasks: thin wrappers that take ids and call the indexing service."""
from __future__ import annotations

from celery import shared_task

from multimodal_search import indexing


@shared_task(
    name="multimodal_search.tasks.index_products_task",
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
    acks_late=True,
)
def index_products_task(product_pks: list[str], force: bool = False) -> dict:
    report = indexing.index_products(product_pks, force=force)
    return {"indexed": report.indexed, "unchanged": report.unchanged, "removed": report.removed}
