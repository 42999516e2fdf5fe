"""Vector storage: ``get_store()`` returns the configured ``BaseVectorStore`` (one instance per process)."""

from __future__ import annotations

import threading

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from multimodal_search.store.base import BaseVectorStore

_lock = threading.Lock()
_instances: dict[str, BaseVectorStore] = {}


def get_store() -> BaseVectorStore:
    """The store named by ``MULTIMODAL_SEARCH["STORE"]`` (a dotted path to a ``BaseVectorStore`` subclass)."""
    from multimodal_search.conf import search_settings

    path = str(search_settings.STORE)
    with _lock:
        if path not in _instances:
            try:
                cls = import_string(path)
            except ImportError as exc:
                raise ImproperlyConfigured(f"MULTIMODAL_SEARCH['STORE'] = {path!r}: {exc}") from exc
            if not (isinstance(cls, type) and issubclass(cls, BaseVectorStore)):
                raise ImproperlyConfigured(f"MULTIMODAL_SEARCH['STORE'] = {path!r} is not a BaseVectorStore subclass.")
            _instances[path] = cls()
        return _instances[path]


__all__ = ["BaseVectorStore", "get_store"]
