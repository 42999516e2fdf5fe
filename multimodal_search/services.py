"""The single entry point that views, the API, admin, commands and tasks call."""
from multimodal_search.indexing import (  # noqa: F401
    IndexReport,
    chunked_pks,
    drop_older_encoders,
    index_products,
    index_status,
    prune_stale,
    remove_products,
)
from multimodal_search.searching import (  # noqa: F401
    METHODS,
    SearchError,
    SearchHit,
    SearchResponse,
    search_products,
    similar_products,
)
