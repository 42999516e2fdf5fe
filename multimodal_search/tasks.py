"""Celery tasks: thin wrappers that take ids and call the indexing (and analytics) services."""

from __future__ import annotations

from celery import Task, shared_task

from multimodal_search import services
from multimodal_search.services.enqueue import INDEX_TASK, RETRAIN_TASK, SWEEP_TASK
from multimodal_search.services.personal import PROFILE_TASK


# Per-product failures are recorded in the outbox and never raise; what raises here is the
# infrastructure (the database, the broker): 12 retries, the wait doubling up to 10 min (jittered:
# tens of minutes in all), then the products are still dirty and the sweep takes over.
@shared_task(
    name=INDEX_TASK,
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=12,
    acks_late=True,
    reject_on_worker_lost=True,
)
def index_products_task(product_pks: list[str], force: bool = False, indexes_after: bool = False) -> dict[str, int]:
    report = services.index_products(product_pks, force=force, indexes_after=indexes_after)
    return {
        "indexed": report.indexed,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "failed": len(report.failed),
        "skipped": report.skipped,
        "superseded": report.superseded,
    }


# A deep sweep walks for DURABILITY["STEP_SECONDS"], then sends itself again (resume) while its walk goes on.
# Its task id names the step holding the walk: the message, redelivered when its worker dies
# (reject_on_worker_lost), takes the walk up at once instead of waiting for the hold to run out.
@shared_task(name=SWEEP_TASK, acks_late=True, reject_on_worker_lost=True, bind=True)
def sweep_index_task(self: Task, deep: bool = False, resume: bool = False) -> dict[str, int]:
    report = services.sweep(deep=deep, resume=resume, step_id=self.request.id)
    return {
        "sent": report.sent,
        "marked": report.marked,
        "orphans_removed": report.orphans_removed,
        "walk_continues": int(report.walk_continues),
    }


@shared_task(name="multimodal_search.tasks.prune_analytics_task")
def prune_analytics_task() -> dict[str, int]:
    searches, events = services.prune_analytics()
    return {"searches": searches, "events": events}


@shared_task(name=RETRAIN_TASK)
def retrain_task() -> None:
    """``mmsearch_train`` on the worker (the admin's "Retrain" button): minutes of work, never in a request."""
    from django.core.management import call_command

    call_command("mmsearch_train")


# Idempotent: the profile's watermark says which events are folded, so a repeated or late task folds nothing
# twice; the database being away is retried.
@shared_task(
    name=PROFILE_TASK,
    autoretry_for=(Exception,),
    dont_autoretry_for=(ValueError,),  # not a shopper key: no retry makes it one
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def update_profile_task(shopper: str, rebuild: bool = False) -> dict[str, float] | None:
    state = services.update_profile(shopper, rebuild=rebuild)
    return None if state is None else {"weight": state.weight}
