import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def share_cores_among_pool(sender: object, **_kwargs: object) -> None:
    """The worker's main process, before its pool starts: with ``--concurrency N``, each child's torch
    takes ``cores / N`` threads by default rather than every core."""
    from multimodal_search import services

    services.prepare_pool(sender)


@worker_process_init.connect
def prepare_indexing_process(**_kwargs: object) -> None:
    """Each worker process (prefork child, or the solo worker): torch gets its cores and, with
    ``MULTIMODAL_SEARCH["WARM_UP"]``, the models load now rather than on the first task."""
    from multimodal_search import services

    services.prepare_worker()
