"""Trained artefacts in ``MODEL_DIR`` (the attribute classifiers, the re-ranker), keyed by encoder ``model_id``.

Each artefact is one JSON file, ``<MODEL_DIR>/<name>.json``, holding the ``model_id`` of the vectors it
was trained on. :func:`load` returns it only for that ``model_id``: after an upgrade or a new head the
old artefact is ignored (search falls back to the untrained path) until ``mmsearch_train`` runs again.
Writes are atomic and loads are cached by file mtime, so every process picks up a new file at once.
(The encoder's own head file is versioned in its ``model_id`` by construction; see ``encoders.heads``.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

_cache: dict[str, tuple[float, str | None, Any]] = {}
_lock = threading.Lock()


def artefact_path(name: str) -> Path:
    """``MODEL_DIR / <name>.json`` for the current settings."""
    from multimodal_search.conf import search_settings

    return Path(search_settings.MODEL_DIR) / f"{name}.json"


def load(name: str, model_id: str, parse: Callable[[Mapping[str, Any]], T]) -> T | None:
    """``parse(json)`` of the artefact trained for ``model_id``; None when missing, unreadable or for another."""
    path = artefact_path(name)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    with _lock:
        cached = _cache.get(str(path))
        if cached is None or cached[0] != mtime:
            trained_for: str | None = None
            parsed: Any = None
            try:
                data = json.loads(path.read_text())
                trained_for = str(data["model_id"])
                parsed = parse(data)
            except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
                logger.warning("ignoring %s %s: %s", name, path, exc)
                trained_for, parsed = None, None
            cached = (mtime, trained_for, parsed)
            _cache[str(path)] = cached
    return cached[2] if cached[1] == model_id else None


def save(name: str, model_id: str, data: Mapping[str, Any], *, indent: int | None = None) -> Path:
    """Write ``data`` with its ``model_id`` atomically (readers never see half a file); returns the path."""
    path = artefact_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**data, "model_id": model_id}, indent=indent))
    os.replace(tmp, path)
    return path
