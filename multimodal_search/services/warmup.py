"""Process start: models loaded before the first request, and the cores an indexing process is given.

``shop/celery.py`` calls :func:`prepare_pool` from Celery's ``worker_init`` (the worker's main process,
which learns how many tasks encode at once) and :func:`prepare_worker` from ``worker_process_init`` (each
prefork child, or the solo worker), and ``shop/gunicorn_conf.py`` calls :func:`warm_up` from gunicorn's
``when_ready`` (the master, with ``preload_app``: :func:`warm_up_to_share`) and ``post_worker_init``
(each worker). Both obey ``MULTIMODAL_SEARCH["WARM_UP"]`` (tests turn it off).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from multimodal_search.conf import search_settings
from multimodal_search.encoders import get_encoder, use_threads
from multimodal_search.ranking.spelling import get_speller
from multimodal_search.services.query import current_encoder
from multimodal_search.services.suggest import category_counts

logger = logging.getLogger(__name__)
T = TypeVar("T")


def cores_available() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: processes (or threads) of this Celery worker that encode at once (:func:`prepare_pool`); 1 elsewhere
_encoding_processes = 1
#: pools whose tasks run one at a time in the worker's process
_ONE_AT_A_TIME = ("solo", "gevent", "eventlet")


def prepare_pool(worker: Any) -> int:
    """Celery's ``worker_init``, in the worker's main process before it starts its pool: how many tasks
    encode at once (``--concurrency`` children of prefork, or threads), so that each takes ``cores /
    that`` torch threads by default (:func:`indexing_threads`) instead of every core. Prefork children
    inherit it when they fork.

    Returns:
        the number of tasks that encode at once.
    """
    global _encoding_processes
    pool = worker.pool_cls
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    concurrency = worker.concurrency
    if any(kind in name for kind in _ONE_AT_A_TIME):
        processes = 1
    elif isinstance(concurrency, str) and not concurrency.isdigit():  # "auto": one per core
        processes = cores_available()
    else:
        processes = int(concurrency or 1)
    _encoding_processes = max(1, processes)
    return _encoding_processes


def indexing_threads() -> int:
    """``INDEX_TORCH_THREADS``, or the available cores shared among the worker's processes (all of them
    outside a worker, or with ``--concurrency 1``)."""
    configured = search_settings.INDEX_TORCH_THREADS
    return int(configured) if configured else max(1, cores_available() // _encoding_processes)


def use_indexing_threads() -> int:
    """Give torch :func:`indexing_threads` threads in this process (an indexing worker or command)."""
    threads = indexing_threads()
    use_threads(threads)
    return threads


def warm_up(*, force: bool = False) -> float | None:
    """Load the configured encoder's models and run each once, when ``WARM_UP`` is on (or ``force``).

    Returns:
        seconds it took, or None when warm-up is off or failed (logged).
    """
    if not (force or search_settings.WARM_UP):
        return None
    started = time.perf_counter()
    try:
        encoder, model_id = current_encoder()
        encoder.warm_up()
        get_speller(model_id)  # the spelling dictionary's index: up to 1.5 s at 20,000 words
        encoder.known_words()  # and the words of the language it never corrects
    except Exception:  # a process that cannot load its models still starts; the first request reports why
        logger.exception("warm-up failed (pid %d); the models load on first use", os.getpid())
        return None
    settle_memory()
    seconds = time.perf_counter() - started
    logger.info("models of %s loaded on %s in %.1f s (pid %d)", model_id, encoder.device, seconds, os.getpid())
    return seconds


def warm_up_search(*, force: bool = False) -> float | None:
    """A web process (gunicorn's master and workers): :func:`warm_up`, then autocomplete's category
    counts (``suggest.category_counts``: 3.5 s at 1,000,000 products), kept in this process's cache so
    that no first keystroke waits for them; a worker forked from a master that counted them has them."""
    seconds = warm_up(force=force)
    if seconds is not None:
        try:
            category_counts(current_encoder()[1])
        except Exception:  # the first keystroke counts them instead
            logger.exception("counting the products per category failed (pid %d)", os.getpid())
    return seconds


def settle_memory() -> None:
    """After the models load: what the process holds now lives as long as it does, so it is frozen out of
    the garbage collector's walks (``gc.freeze``), and the youngest generation is collected every
    ``GC_THRESHOLD`` allocations rather than 700. Before, a search allocated enough to start a
    collection several times, and a full one walked every object of torch and the models: pauses of up
    to half a second, the API's p95 three times its median. Also keeps a prefork child's pages shared."""
    threshold = search_settings.GC_THRESHOLD
    gc.collect()
    gc.freeze()
    if threshold:
        gc.set_threshold(int(threshold), *gc.get_threshold()[1:])


def before_fork() -> None:
    """In a process that loaded the models and is about to fork workers (gunicorn's master with
    ``preload_app``): close every database connection and connection pool, which must not be shared
    with the children (each opens its own on first use). The models stay: the children share their
    pages copy-on-write."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        close_pool = getattr(connection, "close_pool", None)  # Django's psycopg pool (PostgreSQL only)
        if close_pool is not None:
            close_pool()


def warm_up_to_share() -> float | None:
    """gunicorn's master with ``preload_app``, before it forks the workers: load and run the models here
    (:func:`warm_up`, on one torch thread: :func:`_on_one_thread`) when they run on the CPU, so that the
    workers share them, then close what no child may share (:func:`before_fork`). On a GPU each worker
    loads its own, as without preloading: a CUDA context does not survive a fork.

    Returns:
        :func:`warm_up`'s seconds, or None when nothing was loaded here.
    """
    seconds = None
    try:
        device = get_encoder().device  # the encoder object only: its weights load in warm_up
    except Exception:  # warm_up would fail the same way; the workers report it
        logger.exception("no encoder to preload (pid %d); each worker loads its own", os.getpid())
        device = ""
    if device.startswith("cpu"):
        seconds = _on_one_thread(warm_up_search)
    elif device:
        logger.info(
            "the encoder runs on %s: each worker loads its own models (a CUDA context does not survive a fork)", device
        )
    before_fork()
    return seconds


def _on_one_thread(work: Callable[[], T]) -> T:
    """``work()`` with torch on one CPU thread, then torch's thread count as it was.

    torch's CPU threads are OpenMP's, and a child forked from a process whose OpenMP threads have run
    blocks in its first parallel operation (with ``TORCH_THREADS`` above 1, every preloaded gunicorn
    worker hung in its warm-up). A master that ran the models on one thread has started none, so each
    child starts its own, as many as the master was set to.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return work()
    finally:
        torch.set_num_threads(threads)


def prepare_worker() -> float | None:
    """An indexing worker process: torch uses its cores, then the models load (``WARM_UP``)."""
    threads = use_indexing_threads()
    logger.info("indexing with %d torch thread(s) (pid %d)", threads, os.getpid())
    return warm_up()
