"""The services: the only entry points of the HTML views, the API, the admin, the commands and the tasks.

* ``search``: :func:`search_products`, :func:`similar_products` (and the ``plain_knn`` reference);
* ``query``: input checks shared by every face, reading uploaded photos, encoding queries;
* ``indexing``: :func:`index_products`, removal, pruning, :func:`index_status`;
* ``enqueue``: sending indexing work to the worker, in batches or on commit;
* ``outbox``: the per-product index state (dirty, version, tries, failures) written with each change;
* ``drift``: :func:`find_drift` / :func:`fix_drift` (``mmsearch_reconcile``) and the periodic :func:`sweep`;
* ``encoding``: the encoding step of indexing, reusing kept backbone outputs across head versions;
* ``warmup``: models loaded at process start, torch threads of indexing processes.
"""

from multimodal_search.services.drift import Drift, find_drift, fix_drift, sweep
from multimodal_search.services.enqueue import EnqueueError, enqueue_index, index_on_commit, results_backend_configured
from multimodal_search.services.indexing import (
    IndexReport,
    chunked_pks,
    count_indexed,
    current_model_id,
    drop_older_encoders,
    index_products,
    index_status,
    prune_stale,
    remove_products,
)
from multimodal_search.services.query import (
    MAX_K,
    MIN_K,
    SearchError,
    check_photo_size,
    check_query,
    check_upload_length,
    open_photo,
)
from multimodal_search.services.search import (
    AUTO,
    METHODS,
    SearchHit,
    SearchResponse,
    check_min_relevance,
    plain_knn,
    search_products,
    similar_products,
    storefront_min_relevance,
)
from multimodal_search.services.warmup import prepare_worker, use_indexing_threads, warm_up

__all__ = [
    "AUTO",
    "MAX_K",
    "METHODS",
    "MIN_K",
    "Drift",
    "EnqueueError",
    "IndexReport",
    "SearchError",
    "SearchHit",
    "SearchResponse",
    "check_min_relevance",
    "check_photo_size",
    "check_query",
    "check_upload_length",
    "chunked_pks",
    "count_indexed",
    "current_model_id",
    "drop_older_encoders",
    "enqueue_index",
    "find_drift",
    "fix_drift",
    "index_on_commit",
    "index_products",
    "index_status",
    "open_photo",
    "plain_knn",
    "prepare_worker",
    "prune_stale",
    "remove_products",
    "results_backend_configured",
    "search_products",
    "similar_products",
    "storefront_min_relevance",
    "sweep",
    "use_indexing_threads",
    "warm_up",
]
