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
    QUEUE: Celery queue for indexing tasks.
    BATCH_SIZE: products encoded per batch by the worker and by reindex.
    DEVICE: "cuda", "cpu" or None (auto: CUDA when available).
    TORCH_THREADS: torch intra-op CPU threads set when the first encoder is
        created (1 is fastest and steadiest for one-query batches on small
        machines; None leaves torch's default).
    MODEL_DIR: folder for trained heads (``mmsearch_train``).
    FUSION: how modalities are combined at search time (see ranking.weights and ranking.fusion).
    HNSW_EF_SEARCH: pgvector ``hnsw.ef_search`` used by searches.
    MAX_UPLOAD_BYTES: largest accepted query photo.
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
    "BATCH_SIZE": 32,
    "DEVICE": None,
    "TORCH_THREADS": 1,
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
    "HNSW_EF_SEARCH": 100,
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
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
