"""Values a process keeps for a while: slowly changing reads every search would otherwise repeat."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import connection

Read = Callable[[list[Hashable]], dict[Hashable, Any]]
T = TypeVar("T")
logger = logging.getLogger(__name__)
#: a read that has not finished by then (its thread died with its process) may be started again
_READING_SECONDS = 300


class Memo:
    """A bounded, thread-safe map of keys to values read at most once per ``seconds``.

    Each process has its own (web workers, the worker): nothing is shared or invalidated across
    processes, so a value may be up to ``seconds`` old. ``seconds`` 0 reads every time.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._values: dict[Hashable, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[Hashable], read: Read, seconds: float) -> dict[Hashable, Any]:
        """The value of every key: kept ones younger than ``seconds``, the rest from one ``read(missing)``
        (which returns a value per key it knows; keys it leaves out are kept as None)."""
        if seconds <= 0:
            return read(list(keys))
        now = time.monotonic()
        found: dict[Hashable, Any] = {}
        missing: list[Hashable] = []
        with self._lock:
            for key in keys:
                kept = self._values.get(key)
                if kept is not None and now - kept[1] < seconds:
                    found[key] = kept[0]
                else:
                    missing.append(key)
        if missing:
            fresh = read(missing)
            with self._lock:
                if len(self._values) + len(missing) > self.max_entries:
                    self._values.clear()  # rare and cheap to refill: no LRU bookkeeping per read
                for key in missing:
                    self._values[key] = (fresh.get(key), now)
                    found[key] = fresh.get(key)
        return found

    def get(self, key: Hashable, read: Callable[[], Any], seconds: float) -> Any:
        """One key's value (``read()`` when it is missing or older than ``seconds``)."""
        return self.get_many([key], lambda _keys: {key: read()}, seconds)[key]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def kept_fresh(key: str, read: Callable[[], T], *, fresh: float, keep: float, busy: T) -> T:
    """``read()``'s value, kept in the default cache under ``key``, for reads too slow for a request (a count
    over every product: seconds at 1,000,000). A value older than ``fresh`` seconds is still returned while
    one thread of this process reads it again (one at a time, a ``cache.add`` lock); values are kept up to
    ``keep`` seconds. Only the first read is made in the request; a request that comes while another makes
    it gets ``busy`` rather than waiting."""
    kept: tuple[float, T] | None = cache.get(key)
    if kept is not None:
        read_at, value = kept
        if time.time() - read_at > fresh and cache.add(key + ":reading", 1, _READING_SECONDS):
            threading.Thread(target=_read_in_background, args=(key, read, keep), name=f"kept-fresh {key}").start()
        return value
    if not cache.add(key + ":reading", 1, _READING_SECONDS):
        return busy
    return _read_now(key, read, keep=keep)


def _read_now(key: str, read: Callable[[], T], *, keep: float) -> T:
    """``read()`` now, its value kept under ``key`` for :func:`kept_fresh`."""
    try:
        value = read()
        cache.set(key, (time.time(), value), keep)
        return value
    finally:
        cache.delete(key + ":reading")


def _read_in_background(key: str, read: Callable[[], Any], keep: float) -> None:
    try:
        _read_now(key, read, keep=keep)
    except Exception:  # the old value stays; a request after the lock's expiry tries again
        logger.exception("Reading %s again failed", key)
    finally:
        connection.close()  # this thread's own connection
