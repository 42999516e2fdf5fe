"""Keeps an encoder's trained heads in step with their file while the process runs (no torch at import)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multimodal_search.encoders.heads import HeadBundle

logger = logging.getLogger(__name__)


class HeadWatcher:
    """The heads read from ``path``: read on first use, then re-checked (one ``os.stat``) at most every
    ``interval`` seconds when :meth:`refresh` is called, reloaded when the file changed, dropped when it
    is removed (the encoder then works zero-shot).

    Args:
        path: the head file (None: no heads).
        interval: seconds between checks.
        load: reads and validates a head file (raises ValueError for a bad one).
    """

    def __init__(self, path: str | None, interval: float, load: Callable[[str], HeadBundle]) -> None:
        self.path = path
        self.interval = max(0.0, float(interval))
        self._load = load
        self._lock = threading.Lock()
        self._bundle: HeadBundle | None = None
        self._signature: tuple[int, int, int] | None = None
        self._missing_logged = False
        self._next_check = 0.0
        self._checked = False

    @property
    def bundle(self) -> HeadBundle | None:
        """The heads in use (None: zero-shot); only the first read looks at the file."""
        if not self._checked:
            self.refresh(force=True)
        return self._bundle

    def _file_signature(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)  # type: ignore[arg-type]
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def refresh(self, force: bool = False) -> None:
        """Load, reload or drop the head file when it changed (throttled unless ``force``)."""
        if not self.path or (not force and time.monotonic() < self._next_check):
            return
        with self._lock:
            if not force and time.monotonic() < self._next_check:
                return
            self._next_check = time.monotonic() + self.interval
            self._checked = True
            signature = self._file_signature()
            if signature == self._signature and (signature is not None or self._missing_logged):
                return
            if signature is None:
                if self._bundle is not None:
                    logger.warning("Head file %s was removed; using zero-shot image vectors.", self.path)
                else:
                    logger.warning("Head file %s not found; using zero-shot image vectors.", self.path)
                self._bundle, self._signature, self._missing_logged = None, None, True
                return
            self._bundle = self._load(self.path)
            self._signature = signature
            self._missing_logged = False
            logger.info("Loaded head %s (version %s).", self.path, self._bundle.version)
