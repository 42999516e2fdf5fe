"""The services: the only entry points of the HTML views, the API, the admin, the commands and the tasks.

* ``search``: :func:`search_products`, :func:`similar_products` (and the ``plain_knn`` reference);
* ``browse``: :func:`browse_products`, a search refined: facets with counts, price, sort and pages;
* ``query``: input checks shared by every face, reading uploaded photos, encoding queries;
* ``indexing``: :func:`index_products`, removal, pruning, :func:`index_status`;
* ``enqueue``: sending indexing work to the worker, in batches or on commit;
* ``outbox``: the per-product index state (dirty, version, tries, failures) written with each change;
* ``health``: :func:`index_health` (the admin's index health page), :func:`reindex` by scope;
* ``drift``: :func:`find_drift` / :func:`fix_drift` (``mmsearch_reconcile``); ``sweeps``: the periodic :func:`sweep`,
  whose deep pass walks the catalogue a worker step at a time;
* ``encoding``: the encoding step of indexing, reusing kept backbone outputs across head versions;
* ``voice``: :func:`voice_search`, a WAV recording transcribed offline (pocketsphinx), then searched;
* ``warmup``: models loaded at process start, torch threads of indexing processes.
* ``suggest``: :func:`suggest`, autocomplete of products and categories from a typed prefix;
* ``photo_tokens``: query photos kept under short-lived tokens (:func:`keep_photo`, :func:`load_photo`).
* ``merchandising``: synonyms and query rules (pin, boost, bury, hide) edited in the admin (:func:`rules_changed`).
* ``relaxed``: :func:`relaxed_queries`, shorter forms of a query that finds nothing (a helpful "no match").
* ``analytics``: the search log (:func:`searcher`, :func:`log_search`), clicks and add-to-cart
  (:func:`record_event`), the admin's report (:func:`analytics_report`) and :func:`prune_analytics`.
* ``recommend``: :func:`recommended_for_vector` / :func:`recommended_for_shopper`, :func:`also_viewed`
  (co-occurrence, similar products as the cold start) and :func:`popular_products`.
* ``personal``: shopper profiles from their events: :func:`record_view`, :func:`update_profile` (the worker),
  :func:`profile_for` (a read), :func:`taste_for`, :func:`shopper_events`, :func:`clear_history`, :func:`adopt_session_events`.
"""

from multimodal_search.services.analytics import (
    VOICE_SESSION_KEY,
    Report,
    analytics_report,
    clicked_product,
    corrected_queries,
    log_search,
    loose_queries,
    product_url,
    prune_analytics,
    query_figures,
    record_event,
    searcher,
    unsold_queries,
)
from multimodal_search.services.browse import (
    RELEVANCE,
    SIZE,
    SORTS,
    FacetValue,
    PriceRange,
    SearchPage,
    browse_products,
    facet_names,
    storefront_page_size,
)
from multimodal_search.services.drift import Drift, find_drift, fix_drift
from multimodal_search.services.enqueue import (
    EnqueueError,
    enqueue_index,
    enqueue_retrain,
    index_on_commit,
    results_backend_configured,
)
from multimodal_search.services.health import (
    IndexHealth,
    index_health,
    product_cards,
    product_pks_matching,
    queue_depth,
    reindex,
    vector_rows_matching,
)
from multimodal_search.services.indexing import (
    IndexReport,
    chunked_pks,
    count_indexed,
    current_model_id,
    drop_older_encoders,
    index_products,
    index_status,
    indexes_built_after,
    prune_stale,
    refresh_statistics,
    remove_products,
    store_is_empty,
)
from multimodal_search.services.memo import kept_fresh
from multimodal_search.services.merchandising import rules_changed
from multimodal_search.services.personal import (
    VISITOR_SESSION_KEY,
    Profile,
    RecentEvent,
    adopt_session_events,
    clear_history,
    profile_for,
    rebuild_profiles,
    record_view,
    shopper_events,
    shopper_key,
    stale_profiles,
    taste_for,
    update_profile,
    visitor_hash,
)
from multimodal_search.services.photo_tokens import (
    PhotoStoreUnavailable,
    expired_message,
    is_token,
    keep_photo,
    load_photo,
    photo_thumbnail,
    photo_ttl,
)
from multimodal_search.services.query import (
    MAX_K,
    MAX_QUERY_CHARS,
    MIN_K,
    SearchError,
    check_photo_size,
    check_query,
    check_upload_length,
    has_null_characters,
    null_character_parameter,
    open_photo,
    sizes_in_words,
)
from multimodal_search.services.recommend import (
    also_viewed,
    popular_in_category_for,
    popular_products,
    recommended_for_shopper,
    recommended_for_vector,
)
from multimodal_search.services.relaxed import Relaxed, relaxed_queries
from multimodal_search.services.search import (
    AUTO,
    METHODS,
    SearchHit,
    SearchResponse,
    check_min_relevance,
    likely_match,
    other_gender,
    plain_knn,
    search_products,
    similar_products,
    storefront_min_relevance,
    words_as_read,
)
from multimodal_search.services.suggest import suggest
from multimodal_search.services.sweeps import sweep
from multimodal_search.services.vector_indexes import (
    ensure_vector_indexes,
    missing_vector_indexes,
    rebuild_vector_indexes,
    vector_indexes,
)
from multimodal_search.services.voice import (
    VoiceSearch,
    check_recording_length,
    check_recording_size,
    transcribe,
    voice_search,
)
from multimodal_search.services.warmup import (
    before_fork,
    prepare_pool,
    prepare_worker,
    use_indexing_threads,
    warm_up,
    warm_up_search,
    warm_up_to_share,
)

__all__ = [
    "AUTO",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "METHODS",
    "MIN_K",
    "RELEVANCE",
    "SIZE",
    "SORTS",
    "VISITOR_SESSION_KEY",
    "VOICE_SESSION_KEY",
    "Drift",
    "EnqueueError",
    "FacetValue",
    "IndexHealth",
    "IndexReport",
    "PhotoStoreUnavailable",
    "PriceRange",
    "Profile",
    "RecentEvent",
    "Relaxed",
    "Report",
    "SearchError",
    "SearchHit",
    "SearchPage",
    "SearchResponse",
    "VoiceSearch",
    "adopt_session_events",
    "also_viewed",
    "analytics_report",
    "before_fork",
    "browse_products",
    "check_min_relevance",
    "check_photo_size",
    "check_query",
    "check_recording_length",
    "check_recording_size",
    "check_upload_length",
    "chunked_pks",
    "clear_history",
    "clicked_product",
    "corrected_queries",
    "count_indexed",
    "current_model_id",
    "drop_older_encoders",
    "enqueue_index",
    "enqueue_retrain",
    "ensure_vector_indexes",
    "expired_message",
    "facet_names",
    "find_drift",
    "fix_drift",
    "has_null_characters",
    "index_health",
    "index_on_commit",
    "index_products",
    "index_status",
    "indexes_built_after",
    "is_token",
    "keep_photo",
    "kept_fresh",
    "likely_match",
    "load_photo",
    "log_search",
    "loose_queries",
    "missing_vector_indexes",
    "null_character_parameter",
    "open_photo",
    "other_gender",
    "photo_thumbnail",
    "photo_ttl",
    "plain_knn",
    "popular_in_category_for",
    "popular_products",
    "prepare_pool",
    "prepare_worker",
    "product_cards",
    "product_pks_matching",
    "product_url",
    "profile_for",
    "prune_analytics",
    "prune_stale",
    "query_figures",
    "queue_depth",
    "rebuild_profiles",
    "rebuild_vector_indexes",
    "recommended_for_shopper",
    "recommended_for_vector",
    "record_event",
    "record_view",
    "refresh_statistics",
    "reindex",
    "relaxed_queries",
    "remove_products",
    "results_backend_configured",
    "rules_changed",
    "search_products",
    "searcher",
    "shopper_events",
    "shopper_key",
    "similar_products",
    "sizes_in_words",
    "stale_profiles",
    "store_is_empty",
    "storefront_min_relevance",
    "storefront_page_size",
    "suggest",
    "sweep",
    "taste_for",
    "transcribe",
    "unsold_queries",
    "update_profile",
    "use_indexing_threads",
    "vector_indexes",
    "vector_rows_matching",
    "visitor_hash",
    "voice_search",
    "warm_up",
    "warm_up_search",
    "warm_up_to_share",
    "words_as_read",
]
