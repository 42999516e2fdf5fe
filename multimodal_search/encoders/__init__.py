"""Encoder registry: one lazily created instance per alias per process.

Only the registry reads Django's settings; the encoders themselves are plain torch code, so
``bench/gpu.py`` imports them on a GPU machine that has no Django.
"""

from __future__ import annotations

import threading

from multimodal_search.encoders.base import BaseEncoder

_lock = threading.Lock()
_instances: dict[str, BaseEncoder] = {}
#: set by :func:`use_threads` (an indexing process); else ``TORCH_THREADS`` applies
_threads: int | None = None


def get_encoder(alias: str | None = None) -> BaseEncoder:
    """Return the encoder configured under ``alias`` (default: settings ENCODER)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.module_loading import import_string

    from multimodal_search.conf import search_settings

    alias = alias or search_settings.ENCODER
    config = search_settings.ENCODERS.get(alias)
    if not config or "BACKEND" not in config:
        raise ImproperlyConfigured(f"MULTIMODAL_SEARCH['ENCODERS'] has no encoder {alias!r} with a BACKEND.")
    options = dict(config.get("OPTIONS", {}))
    options.setdefault("device", search_settings.DEVICE)
    # keyed by configuration, so a settings override never reuses a stale instance
    key = f"{config['BACKEND']}|{sorted(options.items())!r}"
    with _lock:
        if key not in _instances:
            try:
                cls = import_string(config["BACKEND"])
            except ImportError as exc:
                raise ImproperlyConfigured(f"MULTIMODAL_SEARCH['ENCODERS'][{alias!r}]['BACKEND']: {exc}") from exc
            _set_threads(_threads or search_settings.TORCH_THREADS)
            _instances[key] = cls(**options)
        return _instances[key]


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def use_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU threads of this process, now and for encoders created later.

    An indexing process (a Celery worker child) encodes big batches and uses every core it is given;
    a web process keeps ``TORCH_THREADS`` (1) per request thread.
    """
    global _threads
    _threads = int(threads) if threads else None
    _set_threads(_threads)


def clear_cache() -> None:
    with _lock:
        _instances.clear()


__all__ = ["BaseEncoder", "clear_cache", "get_encoder", "use_threads"]
