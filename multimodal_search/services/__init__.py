"""The services: the only entry points of the HTML views, the API, the admin, the commands and the tasks.

* ``search``: :func:`search_products`, :func:`similar_products` (and the ``plain_knn`` reference);
* ``query``: input checks shared by every face, reading uploaded photos, encoding queries;
* ``indexing``: :func:`index_products`, removal, pruning, :func:`index_status`;
* ``enqueue``: sending indexing work to the worker, in batches or on commit.
"""

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
from multimodal_search.services.query import MAX_K, MIN_K, SearchError, check_photo_size, check_query, open_photo
from multimodal_search.services.search import (
    METHODS,
    SearchHit,
    SearchResponse,
    plain_knn,
    search_products,
    similar_products,
)

__all__ = [
    "MAX_K",
    "METHODS",
    "MIN_K",
    "EnqueueError",
    "IndexReport",
    "SearchError",
    "SearchHit",
    "SearchResponse",
    "check_photo_size",
    "check_query",
    "chunked_pks",
    "count_indexed",
    "current_model_id",
    "drop_older_encoders",
    "enqueue_index",
    "index_on_commit",
    "index_products",
    "index_status",
    "open_photo",
    "plain_knn",
    "prune_stale",
    "remove_products",
    "results_backend_configured",
    "search_products",
    "similar_products",
]
