"""Trained model files in MODEL_DIR: atomic JSON writes and mtime-cached loads shared by all processes."""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

_cache: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


def model_file(filename: str) -> Path:
    """``MODEL_DIR / filename`` for the current settings."""
    from multimodal_search.conf import search_settings

    return Path(search_settings.MODEL_DIR) / filename


def load_cached(path: Path, parse: Callable[[Any], T], what: str) -> T | None:
    """``parse(json of path)``, reloaded only when the file changes; None when missing or unreadable."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    with _lock:
        cached = _cache.get(str(path))
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            model: T | None = parse(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            logger.warning("ignoring %s %s: %s", what, path, exc)
            model = None
        _cache[str(path)] = (mtime, model)
        return model


def save_json(path: Path, data: Any, *, indent: int | None = None) -> Path:
    """Write ``data`` as JSON atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)
    return path
