"""Settings for multimodal_search, read from one namespaced dict.

Example::

    MULTIMODAL_SEARCH = {
        "PRODUCT_MODEL": "catalog.Product",
        "ADAPTER": "shop.catalog.search.ProductAdapter",
        "ENCODERS": {
            "default": {
                "BACKEND": "multimodal_search.encoders.packaged.PackagedEncoder",
                "OPTIONS": {},
            },
        },
        "AUTO_INDEX": True,
    }

Keys:
    PRODUCT_MODEL: "app_label.ModelName" of the product model to index.
    ADAPTER: dotted path of a ``BaseProductAdapter`` subclass that reads a
        product's text, images, categories and result fields.
    ENCODERS: alias -> {"BACKEND": dotted path, "OPTIONS": kwargs}. The
        ``ENCODER`` alias is the one used for indexing and search.
    ENCODER: alias used (default "default").
    STORE: dotted path of the ``BaseVectorStore`` that holds the vectors
        (default the pgvector one, ``multimodal_search.store.pgvector.PgvectorStore``).
    AUTO_INDEX: enqueue indexing when a product (or a watched related row) is
        saved or deleted.
    QUEUE: Celery queue for indexing on save and by the sweep (latency-bound: a CPU worker is enough).
    BULK_QUEUE: Celery queue for bulk indexing (``mmsearch_reindex``, e.g. after ``mmsearch_train``):
        throughput-bound, so the queue of a GPU worker; None (default): ``QUEUE``.
    BATCH_SIZE: products encoded per batch by the worker and by reindex.
    DEVICE: "cuda", "cpu" or None (auto: CUDA when available).
    TORCH_THREADS: torch intra-op CPU threads set when the first encoder is
        created (1 is fastest and steadiest for one-query batches on small
        machines; None leaves torch's default).
    INDEX_TORCH_THREADS: torch CPU threads of an indexing process (a Celery worker child,
        ``mmsearch_train``); None: every core the process may run on, shared among a Celery
        worker's ``--concurrency`` (``services.prepare_pool``).
    WARM_UP: load the encoder's models when a worker or web process starts (Celery
        ``worker_process_init``, gunicorn's master and ``post_worker_init``), not on the first request.
    GC_THRESHOLD: after warm-up the process's objects (the models') are frozen out of Python's
        garbage collector and its youngest generation is collected every this many allocations
        (20,000; Python's default is 700; None leaves the collector as it is): at 100,000 products
        the collector's pauses made the API's p95 three times its median (README "Performance").
    MODEL_DIR: folder for trained heads (``mmsearch_train``).
    SYNONYMS: shopper synonym groups added to queries (``ranking.synonyms``); None: the built-in
        apparel list, []: none.
    EXPANSION: the catalogue's own words for query words it does not use, from WordNet
        (``ranking.expansion``): ``ENABLED`` (True; False turns it off), ``MAX_TERMS`` per missing
        phrase (3), ``MAX_SHARE`` of the catalogue a term may cover before it counts as too general
        (0.25), ``MIN_WEIGHT`` of a kept term (0.1), ``COUNT_CAP`` products counted per term (1000),
        ``CACHE_SECONDS`` each process keeps the catalogue's term counts (300; 0 counts on every search).
    FUSION: how modalities are combined at search time (see ranking.weights and ranking.fusion).
    RELEVANCE: cuts on the calibrated relevance (0..1) each text result gets (see
        ``ranking.calibration``); ``"auto"`` is the cut ``mmsearch_train`` chose on held-out
        pseudo-queries and stored with the re-ranker, a number is used as it is, None is off.
        ``STOREFRONT_MIN``: the search page drops results below it ("auto": the ``related`` cut);
        the API keeps every result unless asked (``min_relevance``). ``RELATED``: a result at least
        this relevant makes the ``match`` summary "related" rather than "none". ``EXACT``: the top
        result at least this relevant makes it "exact".
    FACETS: the search page's and the API's refinements (``services.browse``): ``FIELDS``, the facets
        counted, in order (["category", "color", "size"]; values from the adapter's
        ``get_facet_values``); ``PRICE_RANGES``, the price facet's ranges as ``[min, max]`` pairs,
        min inclusive, max exclusive, None open; ``MAX_VALUES`` shown per facet (20); ``PAGE_SIZE``
        of the storefront (24); ``GROUP_VARIANTS``, one result per product group (the adapter's
        ``get_group``: a product's colours) with the group's other matches as its ``variants``, and
        the total and facet counts in groups (True; the API's ``group`` parameter overrides it);
        ``MAX_VARIANTS``, the variants listed per result, one per colour other than the result's (12).
    HNSW_EF_SEARCH: pgvector ``hnsw.ef_search`` used by searches (500): how deep a 10-row read
        searches the graph; the default search's branches search deeper (``store.sql.branch_ef_search``:
        the pool column's at twice this, at most pgvector's 1,000). At 1,000,000 products its top 10
        agreed with its exact self in 0.961 of places at 500 and 0.948 at 400, for about 15% more time
        per search; at 100,000, 0.96-0.98 at 400 (README "Performance"). pgvector accepts 1-1,000.
    HNSW_M, HNSW_EF_CONSTRUCTION: pgvector's build parameters of the HNSW indexes (32 and 128, chosen
        at 100,000 products, README "Performance"; pgvector accepts m 2-100, ef_construction 4-1,000 and
        at least 2 x m). Indexing builds a new encoder version's indexes with them, but keeps an index
        that exists: ``manage.py mmsearch_indexes --build`` applies a change to the current version
        (``CREATE INDEX CONCURRENTLY``: searches and indexing go on; at 1,000,000 products the pool
        column's index alone took about 10 minutes to build).
    QUERY_VECTORS: how many encoded query texts each process keeps (2,000; 0: none). A refinement
        of the same words (a facet, a page, a sort) or a popular query skips the text encoder.
    MAX_UPLOAD_BYTES: largest accepted query photo upload (a larger request is a 413 before it is read).
    MAX_IMAGE_PIXELS: most pixels decoded from one photo, query or catalogue (JPEGs count after
        their reduced-scale decoding); larger photos are refused from their header.
    MAX_IMAGE_ASPECT: longest side / shortest side a photo may have (refused from its header).
    QUERY_PHOTOS: where the search box keeps a query photo so its results have a shareable URL
        (``services.photo_tokens``): ``CACHE`` alias of a cache every web process shares ("default";
        the demo uses Redis), ``TTL`` seconds a photo stays (3600), ``MAX_SIDE`` pixels of the kept
        JPEG (768), ``MAX_BYTES`` of it (300 KB), ``THUMB_SIDE`` pixels of the thumbnail shown (320).
    VOICE: the voice search's server fallback (``services.voice``): ``MAX_SECONDS`` of a recording (15),
        ``MAX_BYTES`` of the uploaded WAV (4 MB), ``CATALOGUE_GRAMMAR``: listen for the catalogue's
        own words (True) rather than general English (False).
    ANALYTICS: the search log and shopper events (``services.analytics``, README "Query analytics"):
        ``ENABLED`` (True; False logs nothing), ``RETENTION_DAYS`` rows are kept (90; older ones are
        deleted by ``mmsearch_prune_analytics`` and the daily beat task), ``LOW_CLICK_MIN_SEARCHES``
        searches (with results) a query needs before the report lists it as low-click (3).
    DURABILITY: how indexing survives failures (see ``services.outbox`` and ``services.drift``):
        ``MAX_ATTEMPTS`` task starts before a product is marked failed (3); ``RETRY_BACKOFF`` and
        ``RETRY_BACKOFF_MAX`` seconds between retries of a failing product, doubling per attempt
        (60 s up to 12 h); ``REQUEUE_AFTER`` seconds a dirty product waits (since its change, its
        last start or its last sweep) before the sweep sends it again (600); ``CHUNK`` products read at
        a time by the deep sweep and ``mmsearch_reconcile`` (500); ``STEP_SECONDS``: the deep sweep walks
        the catalogue this long per task, then sends its next step behind the indexing tasks queued
        meanwhile (60; ``services.sweeps``); ``LIVE_CHECK_PRODUCTS``: the index
        health page walks a catalogue of at most this many products for each view, and shows a larger
        one's last walk instead (2,000; a walk takes 0.65-0.8 ms a product with four photos, 0.1-0.2 without).
    PERSONALISATION: profiles from what a shopper did (``ranking.personal``, ``services.personal``,
        README "Personalisation"): ``ENABLED`` (True; False records no profiles and re-ranks nothing),
        ``EVENT_WEIGHTS`` per event kind (view 1, click 1, cart 3, purchase 5), ``HALF_LIFE_DAYS`` of an
        event's weight (30), ``MIN_WEIGHT`` of evidence before a profile re-ranks searches (3.0),
        ``BLEND``: how far the profile moves a search result, in score standard deviations per affinity
        standard deviation (0.05, the strongest that cost a neutral profile under 0.01 nDCG@10 on Luma;
        ``mmsearch_evaluate_personal --blends`` suggests one for a catalogue; 0 turns personal re-ranking off),
        ``RECENT`` events a profile remembers to explain itself ("because you viewed …", 20),
        ``POPULAR_CACHE_SECONDS`` the popularity ranking is kept in the default cache (300; 0: counted on
        every call).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

SETTING_NAME = "MULTIMODAL_SEARCH"

DEFAULTS: dict[str, Any] = {
    "PRODUCT_MODEL": None,
    "ADAPTER": None,
    "ENCODERS": {
        "default": {
            "BACKEND": "multimodal_search.encoders.packaged.PackagedEncoder",
            "OPTIONS": {},
        },
    },
    "ENCODER": "default",
    "STORE": "multimodal_search.store.pgvector.PgvectorStore",
    "AUTO_INDEX": True,
    "QUEUE": "embeddings",
    "BULK_QUEUE": None,
    "BATCH_SIZE": 32,
    "DEVICE": None,
    "TORCH_THREADS": 1,
    "INDEX_TORCH_THREADS": None,
    "WARM_UP": True,
    "GC_THRESHOLD": 20_000,
    "MODEL_DIR": ".data/models",
    "FUSION": {
        "METHOD": "rerank",
        "TEXT_WEIGHT": 0.5,
        "COLOUR_WEIGHT": 0.3,
        # None: 0.2, or 0 when the encoder's photo features carry colour (the packaged one)
        "PHOTO_COLOUR_WEIGHT": None,
        "GENDER_WEIGHT": 0.2,
        # category / material the query names, as learned by mmsearch_train (see ranking.attributes)
        "FACET_WEIGHT": 0.2,
        "CANDIDATES": 100,
    },
    # query expansion groups (see multimodal_search.ranking.synonyms); None = the built-in list, [] = off
    "SYNONYMS": None,
    # catalogue-aware expansion from WordNet (see multimodal_search.ranking.expansion); ENABLED False = off
    "EXPANSION": {
        "ENABLED": True,
        "MAX_TERMS": 3,
        "MAX_SHARE": 0.25,
        "MIN_WEIGHT": 0.1,
        "COUNT_CAP": 1000,
        "CACHE_SECONDS": 300,
    },
    # a typed word no product uses, read as the catalogue's nearest word (see ranking.spelling); False = off
    "SPELLING": True,
    "RELEVANCE": {"STOREFRONT_MIN": "auto", "RELATED": "auto", "EXACT": "auto"},
    "FACETS": {
        "FIELDS": ["category", "color", "size"],
        "PRICE_RANGES": [[None, 25], [25, 50], [50, 100], [100, None]],
        "MAX_VALUES": 20,
        "PAGE_SIZE": 24,
        "GROUP_VARIANTS": True,
        "MAX_VARIANTS": 12,
    },
    # the default search's recall@10 >= 0.95 against exact at 1,000,000 products with m = 32 (README "Performance")
    "HNSW_EF_SEARCH": 500,
    # the HNSW indexes' build parameters (measured in store.sql, where the names of indexes built with these are kept)
    "HNSW_M": 32,
    "HNSW_EF_CONSTRUCTION": 128,
    "QUERY_VECTORS": 2000,
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 40_000_000,
    "MAX_IMAGE_ASPECT": 20,
    "QUERY_PHOTOS": {"CACHE": "default", "TTL": 3600, "MAX_SIDE": 768, "MAX_BYTES": 300 * 1024, "THUMB_SIDE": 320},
    "VOICE": {"MAX_SECONDS": 15, "MAX_BYTES": 4 * 1024 * 1024, "CATALOGUE_GRAMMAR": True},
    "ANALYTICS": {"ENABLED": True, "RETENTION_DAYS": 90, "LOW_CLICK_MIN_SEARCHES": 3},
    "PERSONALISATION": {
        "ENABLED": True,
        "EVENT_WEIGHTS": {"view": 1.0, "click": 1.0, "cart": 3.0, "purchase": 5.0},
        "HALF_LIFE_DAYS": 30.0,
        "MIN_WEIGHT": 3.0,
        "BLEND": 0.05,
        "RECENT": 20,
        "POPULAR_CACHE_SECONDS": 300,
    },
    "DURABILITY": {
        "MAX_ATTEMPTS": 3,
        "RETRY_BACKOFF": 60,
        "RETRY_BACKOFF_MAX": 12 * 3600,
        "REQUEUE_AFTER": 600,
        "CHUNK": 500,
        "STEP_SECONDS": 60,
        "LIVE_CHECK_PRODUCTS": 2_000,
    },
}

IMPORT_STRINGS = ["ADAPTER"]


def perform_import(value: str, setting: str) -> Any:
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImportError(f"Could not import {value!r} for setting {SETTING_NAME}[{setting!r}]: {exc}") from exc


class SearchSettings:
    """Lazy view of ``settings.MULTIMODAL_SEARCH`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cached: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, SETTING_NAME, {}) or {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {name!r}")
        if name in self._cached:
            return self._cached[name]
        value = self.user_settings.get(name, DEFAULTS[name])
        if isinstance(DEFAULTS[name], dict) and name != "ENCODERS":
            value = {**DEFAULTS[name], **value}
        if name in IMPORT_STRINGS and isinstance(value, str):
            value = perform_import(value, name)
        self._cached[name] = value
        return value

    def reload(self) -> None:
        self._cached.clear()


search_settings = SearchSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        search_settings.reload()


setting_changed.connect(_reload)
