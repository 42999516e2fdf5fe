"""Shopper profiles: what a shopper did (``ShopperEvent``), folded into a taste vector on the worker.

A *shopper* is named by a key: ``"user:<id>"`` for a signed-in user (the user wins), else
``"session:<visitor hash>"`` (the keyed hash of the session key that ``analytics.visitor`` gives; the
session key itself is never stored). Every recorded event sends :data:`PROFILE_TASK` for its shopper once
the request's transaction commits (:func:`profile_changed`); the worker runs :func:`update_profile`, which
folds only the events newer than the profile's watermark (``last_event_id``) into its decayed running sum
(``ranking.personal.fold``) with the products' fused vectors. A request only reads (:func:`profile_for`);
the only row a request writes is the event's.

Privacy: :func:`shopper_events` lists a shopper's own events (the storefront's history page, the API) and
:func:`clear_history` deletes them and the profile. When a session visitor signs in, their session's
events become the user's (:func:`adopt_session_events`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from celery import current_app
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from multimodal_search.conf import search_settings
from multimodal_search.models import SearchLog, ShopperEvent, ShopperProfile
from multimodal_search.ranking.personal import Event, ProfileState, Taste, fold, profile_vector
from multimodal_search.services.analytics import record_event, visitor
from multimodal_search.services.query import current_encoder
from multimodal_search.store import get_store

logger = logging.getLogger(__name__)

PROFILE_TASK = "multimodal_search.tasks.update_profile_task"
USER, SESSION = "user:", "session:"
#: session key under which a visitor's hash is kept, so that signing in (a new session key) can find
#: the events recorded before it
VISITOR_SESSION_KEY = "mmsearch_visitor"
#: events read (and vectors fetched) per round while folding
FOLD_CHUNK = 1000
#: a product page reloaded within this time records no second view
VIEW_REPEAT = timedelta(minutes=30)
#: seconds before a profile found stale (another encoder) is sent for rebuilding again
REBUILD_AGAIN = 300
# sent on commit: no result to wait for, one quick retry (the watermark catches up at the next event)
_FIRE_AND_FORGET: dict[str, Any] = {
    "ignore_result": True,
    "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
}


@dataclass(frozen=True)
class RecentEvent:
    kind: str
    product_pk: str
    at: datetime


@dataclass(frozen=True)
class Profile:
    """A shopper's profile as stored: ``vector`` (unit, float32, in the fused space of ``model_id``),
    ``weight`` decayed to now, ``events`` folded, ``recent`` events newest first."""

    shopper: str
    model_id: str
    vector: np.ndarray
    weight: float
    events: int
    recent: tuple[RecentEvent, ...]

    def taste(self) -> Taste:
        """What a search needs to re-rank for this shopper (``ranking.personal.Taste``)."""
        return Taste(self.vector, self.weight, tuple((e.kind, e.product_pk) for e in self.recent))


def enabled() -> bool:
    return bool(search_settings.PERSONALISATION["ENABLED"])


def shopper_key(*, session_key: str | None, user_id: int | None) -> str | None:
    """The shopper a visitor's events count for: the user when signed in, else their session (hashed).

    Args:
        session_key: the visitor's session key, or None.
        user_id: the signed-in user's id, or None.

    Returns:
        ``"user:<id>"``, ``"session:<hash>"``, or None for a visitor with neither.
    """
    if user_id is not None:
        return f"{USER}{int(user_id)}"
    hashed = visitor(session_key)
    return f"{SESSION}{hashed}" if hashed else None


def visitor_hash(session_key: str | None) -> str:
    """The keyed hash that stands for a session in events and shopper keys ("" for none)."""
    return visitor(session_key)


def _event_shopper(user_id: int | None, session: str) -> str | None:
    """The shopper key of a stored event (its user, else its session hash)."""
    if user_id is not None:
        return f"{USER}{int(user_id)}"
    return f"{SESSION}{session}" if session else None


def shopper_histories(*, min_products: int = 2) -> dict[str, list[Event]]:
    """Every shopper's events, oldest first, for shoppers who touched at least ``min_products`` products
    (offline evaluation, ``evaluation.personal``).

    Returns:
        shopper key (as :func:`shopper_key` makes them) -> their events (kind, product pk, time).
    """
    grouped: dict[str, list[Event]] = {}
    rows = ShopperEvent.objects.order_by("created_at", "pk").values_list(
        "user_id", "session", "kind", "product_pk", "created_at"
    )
    for user_id, session, kind, product_pk, created_at in rows.iterator():
        key = _event_shopper(user_id, session)
        if key is not None:
            grouped.setdefault(key, []).append(Event(kind=kind, product_pk=str(product_pk), at=created_at))
    return {key: events for key, events in grouped.items() if len({e.product_pk for e in events}) >= min_products}


def _parse(shopper: str) -> tuple[int | None, str]:
    """``(user id, "")`` or ``(None, session hash)``; ValueError for anything else."""
    if shopper.startswith(USER):
        return int(shopper[len(USER) :]), ""
    if shopper.startswith(SESSION) and len(shopper) > len(SESSION):
        return None, shopper[len(SESSION) :]
    raise ValueError(f"Not a shopper key: {shopper[:100]!r}")


def shopper_events(shopper: str, *, limit: int | None = None, offset: int = 0) -> QuerySet[ShopperEvent]:
    """The shopper's own events, newest first: a user's, or a session's not yet tied to a user.

    Args:
        shopper: a key from :func:`shopper_key`.
        limit, offset: a slice of the list (None: all of it).
    """
    user_id, session = _parse(shopper)
    events = (
        ShopperEvent.objects.filter(user_id=user_id)
        if user_id is not None
        else ShopperEvent.objects.filter(session=session, user__isnull=True)
    )
    events = events.order_by("-id")
    return events[offset : offset + limit] if limit is not None else events[offset:] if offset else events


def profile_changed(shopper: str | None) -> None:
    """Send :data:`PROFILE_TASK` for ``shopper`` once the current transaction commits (nothing when
    personalisation is off). A broker error is logged, never raised: the next event's update catches up."""
    if not shopper or not enabled():
        return
    transaction.on_commit(lambda: send_profile_task(shopper))


def send_profile_task(shopper: str, *, rebuild: bool = False) -> bool:
    """Send one profile update (or, ``rebuild``, a rebuild from all events) to the worker now; False (and a
    warning) when personalisation is off or the broker refused it."""
    if not enabled():
        return False
    try:
        current_app.send_task(
            PROFILE_TASK, args=[shopper], kwargs={"rebuild": rebuild}, queue=search_settings.QUEUE, **_FIRE_AND_FORGET
        )
    except Exception:  # the broker's errors are of many kinds (kombu, redis, OS); a page must not fail
        logger.warning("Could not send the profile update of %s", shopper, exc_info=True)
        return False
    return True


def record_view(product_pk: str, *, session_key: str | None, user_id: int | None) -> bool:
    """Record that a visitor opened a product's page (a "view"; one per product per ``VIEW_REPEAT``).

    Returns:
        True when an event was written.
    """
    shopper = shopper_key(session_key=session_key, user_id=user_id)
    if shopper is None:
        return False
    since = timezone.now() - VIEW_REPEAT
    if (
        shopper_events(shopper)
        .filter(kind=ShopperEvent.VIEW, product_pk=str(product_pk), created_at__gte=since)
        .exists()
    ):
        return False
    return record_event(ShopperEvent.VIEW, product_pk, session_key=session_key, user_id=user_id)


def update_profile(shopper: str, *, rebuild: bool = False, now: datetime | None = None) -> ProfileState | None:
    """Fold the shopper's events newer than the watermark into their profile (the worker's job).

    The whole history is read again when the profile was built for another encoder (its vectors live
    in another space), when it has no vector yet (its products were not indexed then) or on ``rebuild``.

    Args:
        shopper: a key from :func:`shopper_key`.
        rebuild: start again from all of the shopper's events.
        now: the time the profile is decayed to (default: now).

    Returns:
        The profile's state, or None when there is nothing to keep (no events, personalisation off).
    """
    if not enabled():
        return None
    user_id, _ = _parse(shopper)
    now = now or timezone.now()
    conf = search_settings.PERSONALISATION
    _, model_id = current_encoder()
    events = shopper_events(shopper).order_by("id")
    with transaction.atomic():
        profile = ShopperProfile.objects.select_for_update().filter(shopper=shopper).first()
        if profile is None:
            if not events.exists() or (user_id is not None and not _user_exists(user_id)):
                return None
            profile, _ = ShopperProfile.objects.get_or_create(shopper=shopper, defaults={"user_id": user_id})
            profile = ShopperProfile.objects.select_for_update().get(pk=profile.pk)
        rebuild = rebuild or profile.model_id != model_id or profile.total is None
        if rebuild:
            state = ProfileState(None, 0.0, None)
            watermark, count, recent = 0, 0, []
        else:
            state = ProfileState(np.asarray(profile.total, dtype=np.float64), profile.weight, profile.as_of)
            watermark, count, recent = profile.last_event_id, profile.events, list(profile.recent)
        start = watermark
        while True:
            rows = list(events.filter(id__gt=watermark).values("id", "kind", "product_pk", "created_at")[:FOLD_CHUNK])
            if not rows:
                break
            chunk = [Event(row["kind"], row["product_pk"], row["created_at"]) for row in rows]
            vectors = get_store().product_vectors(
                sorted({e.product_pk for e in chunk}), "fused_vector", model_id=model_id
            )
            state = fold(
                state,
                chunk,
                vectors,
                now=now,
                event_weights=conf["EVENT_WEIGHTS"],
                half_life_days=float(conf["HALF_LIFE_DAYS"]),
            )
            watermark, count = rows[-1]["id"], count + len(rows)
            recent = [[e.kind, e.product_pk, e.at.isoformat()] for e in reversed(chunk)] + recent
        if watermark == start and not rebuild:
            return state  # nothing new: the stored row stays as it is
        profile.model_id = model_id
        profile.total = None if state.total is None else [float(x) for x in state.total]
        profile.weight = state.weight
        profile.as_of = state.as_of
        profile.last_event_id = watermark
        profile.events = count
        profile.recent = recent[: int(conf["RECENT"])]
        profile.save()
    return state


def stale_profiles(*, everyone: bool = False) -> list[str]:
    """Shoppers whose profile was built for another encoder than the current one (after ``mmsearch_train``);
    with ``everyone``, every shopper with a profile."""
    profiles = ShopperProfile.objects.order_by("shopper")
    if not everyone:
        profiles = profiles.exclude(model_id=current_encoder()[1])
    return list(profiles.values_list("shopper", flat=True))


def rebuild_profiles(shoppers: list[str], *, sync: bool = False, progress: Any = None) -> int:
    """Rebuild these shoppers' profiles from all their events: here (``sync``) or on the worker.

    Args:
        shoppers: shopper keys (e.g. :func:`stale_profiles`).
        sync: rebuild in this process rather than sending one task per shopper.
        progress: called with 1 per shopper handled (a progress bar's ``update``).

    Returns:
        How many were rebuilt (``sync``) or sent.
    """
    done = 0
    for shopper in shoppers:
        if sync:
            done += update_profile(shopper, rebuild=True) is not None
        else:
            done += send_profile_task(shopper, rebuild=True)
        if progress is not None:
            progress(1)
    return done


def _user_exists(user_id: int) -> bool:
    return get_user_model().objects.filter(pk=user_id).exists()


def profile_for(shopper: str | None, *, model_id: str | None = None, now: datetime | None = None) -> Profile | None:
    """The shopper's stored profile (a read, never a recompute), its weight decayed to now.

    Args:
        shopper: a key from :func:`shopper_key` (None: no profile).
        model_id: the encoder the caller searches with (default: the current one); a profile built for
            another encoder is not usable (None) until the worker rebuilds it.
        now: the time its weight is decayed to (default: now).

    Returns:
        The profile, or None: no profile, no vector yet, another encoder or personalisation off.
    """
    if not shopper or not enabled():
        return None
    row = ShopperProfile.objects.filter(shopper=shopper).first()
    if row is None or not row.total:
        return None
    if row.model_id != (model_id or current_encoder()[1]):
        _rebuild_once(shopper)  # a new encoder since: the worker rebuilds it in the new space
        return None
    state = ProfileState(np.asarray(row.total, dtype=np.float64), row.weight, row.as_of)
    vector = profile_vector(state)
    if vector is None:
        return None
    conf = search_settings.PERSONALISATION
    decayed = fold(
        state, [], {}, now=now or timezone.now(), event_weights={}, half_life_days=float(conf["HALF_LIFE_DAYS"])
    )
    return Profile(
        shopper=shopper,
        model_id=row.model_id,
        vector=vector,
        weight=decayed.weight,
        events=row.events,
        recent=tuple(RecentEvent(kind, pk, datetime.fromisoformat(at)) for kind, pk, at in row.recent),
    )


def taste_for(shopper: str | None, *, model_id: str | None = None) -> Taste | None:
    """What a search needs to re-rank for this shopper (``services.search``'s ``personal``): None for no
    profile, one of another encoder, or one with less evidence than ``PERSONALISATION["MIN_WEIGHT"]``."""
    profile = profile_for(shopper, model_id=model_id)
    if profile is None or profile.weight < float(search_settings.PERSONALISATION["MIN_WEIGHT"]):
        return None
    return profile.taste()


def clear_history(shopper: str) -> int:
    """Delete the shopper's events and profile (their "Clear my history"); their logged searches stay
    in the query analytics' counts but no longer say whose they were.

    Returns:
        The number of events deleted.
    """
    user_id, session = _parse(shopper)
    searches = (
        SearchLog.objects.filter(user_id=user_id) if user_id is not None else SearchLog.objects.filter(session=session)
    )
    with transaction.atomic():
        deleted, _ = shopper_events(shopper).order_by().delete()
        ShopperProfile.objects.filter(shopper=shopper).delete()
        searches.update(user=None, session="")
    return deleted


def adopt_session_events(session_hash: str, user_id: int) -> int:
    """Give a session's events to the user who just signed in in it, and update the user's profile.

    Args:
        session_hash: the session's visitor hash (``analytics.visitor`` of its key before sign-in).
        user_id: the user.

    Returns:
        The number of events moved.
    """
    if not session_hash:
        return 0
    with transaction.atomic():
        moved = ShopperEvent.objects.filter(session=session_hash, user__isnull=True).update(user_id=user_id)
        ShopperProfile.objects.filter(shopper=f"{SESSION}{session_hash}").delete()
    if moved:
        # the moved events may be older than the user's watermark: rebuild rather than fold
        transaction.on_commit(lambda: send_profile_task(f"{USER}{user_id}", rebuild=True))
    return moved


def _rebuild_once(shopper: str) -> None:
    """Ask the worker to rebuild a profile, at most once per ``REBUILD_AGAIN`` seconds per shopper (the default cache)."""
    if cache.add(f"mmsearch:profile-rebuild:{shopper}", 1, REBUILD_AGAIN):
        send_profile_task(shopper, rebuild=True)
