"""Which catalogue photo files an importer may copy into public media.

A photo must lie inside the catalogue's folder (or a folder of ``settings.CATALOG_PHOTO_ROOTS``) once every ``..`` and symbolic
link is resolved (so a crafted catalogue cannot publish ``/etc/passwd`` or ``../../secrets``),
and must be an image Pillow can read. Readers refuse the others with one line each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)


def trusted_photo_roots() -> list[Path]:
    """Folders outside a catalogue's own that its photos may come from: ``CATALOG_PHOTO_ROOTS``.

    The demo project trusts the Luma sample data there (the judged evaluation catalogues that
    ``make_luma_eval`` writes point into it).
    """
    return [Path(p) for p in getattr(settings, "CATALOG_PHOTO_ROOTS", []) or []]


def resolve_photo(root: Path, relative: str, also: Sequence[Path] = ()) -> tuple[Path | None, str]:
    """``(absolute path, "")`` for a usable photo, else ``(None, why it is refused)``.

    Args:
        root: the catalogue folder photos must stay in.
        relative: the photo's path as the catalogue gives it (relative to ``root``).
        also: other folders photos may resolve into (``trusted_photo_roots()``).
    """
    shown = relative[:200]
    if "\x00" in relative:
        return None, f"image path contains a NUL byte: {shown!r}"
    root = root.resolve()
    path = (root / relative).resolve()
    if not any(path.is_relative_to(allowed) for allowed in [root, *(p.resolve() for p in also)]):
        return None, f"image path leaves the catalogue folder: {shown}"
    if not path.is_file():
        return None, f"image file not found: {shown}"
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return None, f"not a readable image: {shown} ({exc.__class__.__name__})"
    return path, ""
