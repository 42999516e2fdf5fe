"""Versioned head files: each training run writes ``packaged-head-<version>.pt``, then publishes it.

Publishing copies a version over the head file an encoder watches (``head_path``) atomically; the
version is part of the encoder's ``model_id``, so vectors and trained artefacts of different versions
never mix. Earlier versions stay in the folder; :func:`publish` one of them to roll back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from multimodal_search.conf import search_settings
from multimodal_search.encoders.heads import ProjectionHead, save_head
from multimodal_search.learning.photos import CatalogueItem

HEAD_FILENAME = "packaged-head.pt"


def head_version(items: list[CatalogueItem], digests: list[str], settings: dict[str, Any]) -> str:
    """``<UTC timestamp>-<hash of the training data and settings>``."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for item in items:
        digest.update(b"\0" + item.key.encode() + b"\0" + item.text.encode())
    for photo in digests:
        digest.update(photo.encode())
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + digest.hexdigest()[:8]


def archive_path(path: str | os.PathLike[str], version: str) -> Path:
    """``packaged-head.pt`` -> ``packaged-head-<version>.pt`` (same folder)."""
    target = Path(path)
    return target.with_name(f"{target.stem}-{version}{target.suffix or '.pt'}")


def publish(archive: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Put a saved version at ``path`` atomically (encoders watching ``path`` switch to it)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(archive, temporary)
    os.replace(temporary, target)


def save_versioned(
    path: str | os.PathLike[str],
    head: ProjectionHead,
    version: str,
    config: dict[str, Any],
    visual: ProjectionHead | None,
    *,
    publish_now: bool = True,
) -> str:
    """Write ``packaged-head-<version>.pt`` next to ``path``, then (``publish_now``) put it at ``path``.

    Earlier versions stay in the folder; :func:`publish` one of them to roll back.
    """
    archive = archive_path(path, version)
    save_head(archive, head, version=version, config=config, visual=visual)
    if publish_now:
        publish(archive, path)
    return str(archive)


def default_head_path(encoder: Any) -> str:
    """The encoder's ``head_path``, else ``<MODEL_DIR>/packaged-head.pt``."""
    return getattr(encoder, "head_path", None) or str(Path(search_settings.MODEL_DIR) / HEAD_FILENAME)
