"""gunicorn settings of the demo store (``make demo``, docker-compose): ``gunicorn -c shop/gunicorn_conf.py shop.wsgi``.

A fixed number of processes, each with a few threads (gthread):
* the app and the models (MiniLM, EfficientNet-Lite0 and torch) load once, in the master, before it forks
  the workers (``preload_app``, ``when_ready`` below; ``GUNICORN_PRELOAD=0`` turns it off; on a GPU each
  worker loads its own): the workers share those pages copy-on-write instead of each holding a copy of
  its own (README "Serving in production" has the memory measured). Processes are fixed:
  ``GUNICORN_WORKERS`` (default 2);
* threads (``GUNICORN_THREADS``, default 4) overlap database and upload waits and share that copy; torch
  releases the GIL while it computes, so two threads of one process also encode in parallel.
* each process keeps a psycopg pool of ``DATABASE_POOL_SIZE`` connections (default: its thread count, so
  a thread never waits for one); the server's connections stay within workers x threads.
Requests beyond workers x threads wait in the listen queue instead of failing.
"""

from __future__ import annotations

import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# the longest request line gunicorn takes (its default 4,094 answered a 4,000-character search with its own
# HTML 414 before the app could give its JSON 400); 8,190 is its largest short of unlimited
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))
keepalive = 5
backlog = 2048
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
wsgi_app = "shop.wsgi:application"
preload_app = os.environ.get("GUNICORN_PRELOAD", "1") != "0"

# read by shop.settings in each worker process (set here, before the workers start)
os.environ.setdefault("DATABASE_POOL_SIZE", str(threads))
# torch then asks NVML whether there is a GPU, not the CUDA driver, whose initialisation in the master
# would keep every forked worker from using CUDA (torch.cuda.is_available's "poison fork" note)
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def when_ready(server: Any) -> None:
    """With ``preload_app``: load the models in the master (``MULTIMODAL_SEARCH["WARM_UP"]``) before the
    workers fork from it, unless they run on a GPU, then close its database connections, which no child
    may share (``services.warm_up_to_share``)."""
    if not server.cfg.preload_app:
        return
    from multimodal_search import services

    services.warm_up_to_share()


def post_worker_init(worker: object) -> None:
    """Load the models in each worker before it serves (``MULTIMODAL_SEARCH["WARM_UP"]``), so no search waits
    for them: with ``preload_app`` they came loaded from the master, and each is run once here; and
    autocomplete's category counts (``services.warm_up_search``)."""
    from multimodal_search import services

    services.warm_up_search()
