"""Where an indexing run's time goes: seconds per step, summed while :func:`recording` is open.

``services.indexing`` wraps its steps in :func:`phase` (reading the products and hashing their photo
files, decoding photos, the text and photo models, writing the rows) and logs the sums once per call,
so a worker's log says what a batch of products spent where: on a GPU host the models are a small
part of it ("Encoders on a GPU" in the README). Outside :func:`recording` a phase costs nothing but the
``ContextVar`` lookup.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SECONDS: ContextVar[dict[str, float] | None] = ContextVar("mmsearch_phase_seconds", default=None)


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Inside, each :func:`phase` adds its seconds to the dict this yields (phases nest: an inner phase's
    seconds are taken out of the outer one's, so the values add up to the time spent in phases)."""
    seconds: dict[str, float] = {}
    token = _SECONDS.set(seconds)
    try:
        yield seconds
    finally:
        _SECONDS.reset(token)


#: the seconds of the phases running inside the current one, taken out of its own when it ends
_INNER: ContextVar[float] = ContextVar("mmsearch_phase_inner", default=0.0)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as step ``name`` while :func:`recording` is open (else just run it)."""
    seconds = _SECONDS.get()
    if seconds is None:
        yield
        return
    seconds.setdefault(name, 0.0)  # in the order the phases start
    token = _INNER.set(0.0)
    started = time.perf_counter()
    try:
        yield
    finally:
        spent = time.perf_counter() - started
        inner = _INNER.get()
        _INNER.reset(token)
        seconds[name] += spent - inner
        _INNER.set(_INNER.get() + spent)


def summary(seconds: dict[str, float]) -> str:
    """``"read 0.05 s, decode 0.31 s, ..."``, in the order the phases first started."""
    return ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items())
