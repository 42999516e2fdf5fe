"""The maths of a shopper's profile: a time-decayed, weighted mean of product vectors.

A profile is kept as an unnormalised running sum and its total weight, both decayed to ``as_of``::

    sum(t)    = sum(t0) * decay(t - t0) + sum_i w(kind_i) * decay(t - t_i) * v_i
    weight(t) = weight(t0) * decay(t - t0) + sum_i w(kind_i) * decay(t - t_i)
    decay(d)  = 0.5 ** (d / half_life)

so new events fold into the stored state (:func:`fold`) without reading the old ones again, and the
profile vector (:func:`profile_vector`) is the unit-length direction of ``sum``. ``weight`` says how
much evidence is behind it (a thin profile is not used to re-rank: ``PERSONALISATION["MIN_WEIGHT"]``).
:func:`blend` nudges a search's scores towards a profile (``services.taste``).
Pure functions: no database, no settings reads (callers pass ``PERSONALISATION`` values in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Event:
    """One interaction that counts towards a profile."""

    kind: str
    product_pk: str
    at: datetime


@dataclass
class ProfileState:
    """A profile's stored state: ``total`` (unnormalised sum, None before any vector) and ``weight``, as of ``as_of``."""

    total: np.ndarray | None
    weight: float
    as_of: datetime | None


@dataclass(frozen=True)
class Taste:
    """What a search needs of a shopper's profile to re-rank for them (``services.search``).

    ``vector``: the profile's unit direction in the fused space; ``weight``: evidence behind it, decayed to
    now (a thin profile re-ranks nothing); ``recent``: ``(kind, product_pk)`` of their latest events, newest
    first, to say "because you viewed …"; ``blend``: the re-ranking strength to use instead of
    ``PERSONALISATION["BLEND"]`` (None: the setting; the offline evaluation tries several).
    """

    vector: np.ndarray
    weight: float
    recent: tuple[tuple[str, str], ...] = ()
    blend: float | None = None


def decay(age_seconds: float, half_life_days: float) -> float:
    """The weight left after ``age_seconds`` (1 at age 0, 0.5 after one half-life; no decay for a
    half-life of 0 or less; a negative age, a clock skew, counts as 0)."""
    if half_life_days <= 0:
        return 1.0
    return float(0.5 ** (max(age_seconds, 0.0) / (half_life_days * SECONDS_PER_DAY)))


def fold(
    state: ProfileState,
    events: Iterable[Event],
    vectors: Mapping[str, np.ndarray],
    *,
    now: datetime,
    event_weights: Mapping[str, float],
    half_life_days: float,
) -> ProfileState:
    """``state`` decayed to ``now`` with ``events`` added; events of unknown kinds, of weight 0 or
    of products without a vector are skipped."""
    total = None if state.total is None else np.asarray(state.total, dtype=np.float64)
    weight = float(state.weight)
    if state.as_of is not None and total is not None:
        factor = decay((now - state.as_of).total_seconds(), half_life_days)
        total, weight = total * factor, weight * factor
    for event in events:
        w = float(event_weights.get(event.kind, 0.0))
        vector = vectors.get(event.product_pk)
        if w <= 0 or vector is None:
            continue
        w *= decay((now - event.at).total_seconds(), half_life_days)
        unit = np.asarray(vector, dtype=np.float64)
        norm = float(np.linalg.norm(unit))
        if norm == 0:
            continue
        unit = unit / norm
        total = unit * w if total is None else total + unit * w
        weight += w
    return ProfileState(total=total, weight=weight, as_of=now)


def profile_vector(state: ProfileState) -> np.ndarray | None:
    """The profile's unit direction (float32), or None when it has no vector."""
    if state.total is None:
        return None
    norm = float(np.linalg.norm(state.total))
    if norm == 0:
        return None
    return (state.total / norm).astype(np.float32)


def blend(scores: Mapping[str, float], affinity: Mapping[str, float], weight: float) -> dict[str, float]:
    """Search scores nudged towards the profile: each candidate's affinity, standardised over the
    candidates (mean 0, standard deviation 1), times ``weight`` standard deviations of the scores.

    ``weight`` is therefore "how many score standard deviations one affinity standard deviation is
    worth", the same whatever scale a fusion method's scores have; products without an affinity keep
    their score. A weight of 0, fewer than two candidates or equal affinities change nothing.
    """
    shared = [pk for pk in scores if pk in affinity]
    if weight <= 0 or len(shared) < 2:
        return dict(scores)
    values = np.array([affinity[pk] for pk in shared], dtype=np.float64)
    spread = float(np.std(values))
    score_spread = float(np.std(np.array([scores[pk] for pk in shared], dtype=np.float64)))
    if spread == 0 or score_spread == 0:
        return dict(scores)
    mean = float(values.mean())
    nudged = dict(scores)
    for pk in shared:
        nudged[pk] = scores[pk] + weight * score_spread * (affinity[pk] - mean) / spread
    return nudged
