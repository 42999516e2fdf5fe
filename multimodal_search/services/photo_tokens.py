"""Query photos kept under short-lived tokens, so a photo search has a URL that can be reloaded and shared.

The search box posts a photo once; :func:`keep_photo` stores the photo *as decoded* by
``open_photo`` (upright, RGB, shrunk), re-encoded as a JPEG, never the upload's own bytes, in
the cache ``QUERY_PHOTOS["CACHE"]`` for ``QUERY_PHOTOS["TTL"]`` seconds, and returns a random
token. The results page is then ``GET /search/?photo=<token>&q=...``; :func:`load_photo` gives the
photo back for the search and :func:`photo_thumbnail` the small JPEG the page shows. Every web
process must see the same cache (the demo's is Redis); with a per-process cache a token only works
in the process that made it.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
from typing import Any

from django.core.cache import caches
from PIL import Image

from multimodal_search.conf import search_settings
from multimodal_search.services.query import SearchError

logger = logging.getLogger(__name__)

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
KEY_PREFIX = "mmsearch:query-photo:"
QUALITIES = (85, 75, 60, 45)

EXPIRED = "This photo search has expired or its link is incomplete: photos are kept for {minutes} minutes. Upload the photo again."
UNAVAILABLE = "Your photo could not be kept just now, so this search has no shareable link."


class PhotoStoreUnavailable(SearchError):
    """The cache that keeps query photos did not answer."""


def _options() -> dict[str, Any]:
    return dict(search_settings.QUERY_PHOTOS)


def _cache() -> Any:
    return caches[_options()["CACHE"]]


def expired_message() -> str:
    """What a shopper reads when a photo token is unknown, malformed or expired."""
    return EXPIRED.format(minutes=max(1, round(int(_options()["TTL"]) / 60)))


def _jpeg(image: Image.Image, max_side: int, max_bytes: int | None = None) -> bytes:
    """``image`` as a JPEG at most ``max_side`` long and, when given, at most ``max_bytes`` big."""
    side = max_side
    while True:
        copy = image.convert("RGB")
        copy.thumbnail((side, side), Image.Resampling.LANCZOS)
        for quality in QUALITIES:
            buffer = io.BytesIO()
            copy.save(buffer, format="JPEG", quality=quality, optimize=True)
            data = buffer.getvalue()
            if max_bytes is None or len(data) <= max_bytes or side <= 64:
                return data
        side //= 2


def keep_photo(image: Image.Image) -> str:
    """Store a decoded query photo and return its token.

    Args:
        image: the photo as ``open_photo`` returned it (never the raw upload).

    Returns:
        An unguessable URL-safe token, valid for ``QUERY_PHOTOS["TTL"]`` seconds.

    Raises:
        PhotoStoreUnavailable: the cache failed; the caller may still search with ``image``.
    """
    options = _options()
    photo = _jpeg(image, int(options["MAX_SIDE"]), int(options["MAX_BYTES"]))
    thumb = _jpeg(image, int(options["THUMB_SIDE"]))
    token = secrets.token_urlsafe(18)
    try:
        _cache().set(KEY_PREFIX + token, {"photo": photo, "thumb": thumb}, timeout=int(options["TTL"]))
    except Exception as exc:  # any cache backend's error (Redis down, disk full): search without a link
        logger.warning("query photo not kept: %s", exc)
        raise PhotoStoreUnavailable(UNAVAILABLE) from None
    return token


def is_token(value: str | None) -> bool:
    """Whether ``value`` has a token's shape (checked before any cache lookup)."""
    return bool(value) and TOKEN_PATTERN.fullmatch(value or "") is not None


def _entry(token: str) -> dict[str, bytes]:
    if not is_token(token):
        raise SearchError(expired_message())
    try:
        entry = _cache().get(KEY_PREFIX + token)
    except Exception as exc:
        logger.warning("query photo store unavailable: %s", exc)
        raise PhotoStoreUnavailable("Your photo could not be loaded just now. Try again, or upload it again.") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("photo"), bytes):
        raise SearchError(expired_message())
    return entry


def load_photo(token: str) -> Image.Image:
    """The kept photo of ``token``, decoded (RGB).

    Raises:
        SearchError: the token is malformed, unknown or expired (``expired_message``).
        PhotoStoreUnavailable: the cache failed.
    """
    image = Image.open(io.BytesIO(_entry(token)["photo"]))
    image.load()
    return image.convert("RGB")


def photo_thumbnail(token: str) -> bytes:
    """The JPEG thumbnail of the kept photo of ``token`` (see :func:`load_photo` for the errors)."""
    return _entry(token)["thumb"]


def photo_ttl() -> int:
    """Seconds a kept photo lives."""
    return int(_options()["TTL"])
