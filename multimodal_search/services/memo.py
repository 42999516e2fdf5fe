"""Values a process keeps for a while: slowly changing reads every search would otherwise repeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

Read = Callable[[list[Hashable]], dict[Hashable, Any]]


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
