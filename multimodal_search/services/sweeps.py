"""The periodic sweep (:func:`sweep`), whose deep pass walks the catalogue against the index in steps
of ``DURABILITY["STEP_SECONDS"]`` (:func:`walk_step`).

The light pass reads only the outbox: dirty products not sent, started or changed for ``REQUEUE_AFTER``
seconds (a lost task, a failed enqueue, a killed worker), and failed products whose backoff is over.
The deep pass also finds what the outbox does not know: changes that bypassed the save signals and
vectors of products that are gone (``services.drift``).

A walk costs 0.65-0.8 ms a product with four photos (its content hash: its text and its photos'
bytes; ``bench/sweep.py``): 80 s at 100,000 products, 635 s at a million, more than a
task's time limit, and while one task walks, the worker indexes nothing else. So a step walks the
chunks of :func:`~multimodal_search.services.drift.product_chunks` (then
:func:`~multimodal_search.services.drift.orphan_chunks`) until its time is up, acting on each chunk as
it goes (drifted products marked dirty and due, orphaned vectors deleted), keeps where it is
and what it found in a :class:`~multimodal_search.models.DriftWalk` row, and sends the next step
behind the indexing tasks queued meanwhile. The last step records the walk's findings
(:class:`~multimodal_search.models.DriftCheck`) and deletes the row.

One walk per encoder version: a step *holds* it (``held_until``) while it walks; another step finds it
held and leaves it. The deep sweeps of the beat schedule and of the admin's "Re-index stale" start a
walk, or leave one that a chain of steps is carrying; they take up a walk whose steps stopped (a lost
message: it has not moved for ``REQUEUE_AFTER``). A step's hold names its task (``held_by``): when the
worker running it dies, its message, redelivered with the same task id, takes the walk up where it
stopped, hold or not; any other step waits for the hold to run out (``STEP_SECONDS`` and a minute).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from multimodal_search.models import DriftWalk
from multimodal_search.services import outbox
from multimodal_search.services.drift import Drift, orphan_chunks, pk_order, product_chunks, record_check
from multimodal_search.services.enqueue import EnqueueError, enqueue_deep_sweep, enqueue_index
from multimodal_search.services.query import current_encoder
from multimodal_search.store import get_store

logger = logging.getLogger(__name__)

#: a step's hold on its walk outlasts its time by this much (a chunk may end after the step's time)
HOLD_MARGIN = timedelta(seconds=60)


@dataclass
class SweepReport:
    """What one sweep did."""

    sent: int = 0
    marked: int = 0
    orphans_removed: int = 0
    #: the deep pass's walk goes on in another step, sent behind the indexing tasks
    walk_continues: bool = False


def sweep(*, deep: bool = False, resume: bool = False, step_id: str | None = None) -> SweepReport:
    """Send the dirty products that are due; with ``deep``, first walk the catalogue for a step.

    Args:
        deep: walk for one step (:func:`walk_step`): never-indexed, old-version and stale products are
            marked dirty and sent by this sweep, orphaned vectors deleted; while the walk goes on the
            next step is sent to the worker.
        resume: the deep pass continues a walk (a step's continuation; see :func:`walk_step`).
        step_id: the task id of this sweep (see :func:`walk_step`).

    Raises:
        EnqueueError: the broker is unreachable (the products stay dirty).
    """
    report = SweepReport()
    if deep:
        step = walk_step(resume=resume, step_id=step_id)
        report.marked, report.orphans_removed = step.marked, step.orphans_removed
        if step.more:
            try:
                enqueue_deep_sweep(resume=True)
                report.walk_continues = True
            except EnqueueError as exc:  # the next deep sweep takes the walk up where it stopped
                logger.warning("could not send the deep sweep's next step: %s", exc)
    due = outbox.due_for_sweep()
    if due:
        enqueue_index(sorted(due, key=pk_order), track=False)
        outbox.touch(due)
        logger.info("sweep sent %d product(s) to the indexing worker", len(due))
    report.sent = len(due)
    return report


@dataclass
class Step:
    """What one step of a walk did."""

    marked: int = 0
    orphans_removed: int = 0
    #: the walk goes on: the next step is to be sent
    more: bool = False
    #: nothing walked: another step holds the walk, a chain carries it, or (``resume``) it had ended
    idle: bool = False


def walk_step(*, resume: bool = False, step_id: str | None = None) -> Step:
    """Walk the catalogue for up to ``DURABILITY["STEP_SECONDS"]`` (at least one chunk).

    Args:
        resume: this step was sent by the walk's previous one: it continues the walk under way and starts
            none (False: a new deep sweep, which starts a walk where none is under way).
        step_id: the task id of this step: a walk held by the same id was held by this very message,
            whose worker died (the broker delivers it again), and is taken up; None: not a task.
    """
    _encoder, model_id = current_encoder()
    walk = under_way(model_id)
    if walk is None:
        if resume:
            return Step(idle=True)
        walk = _start(model_id)
    elif not resume and walk.updated_at > timezone.now() - timedelta(seconds=float(outbox.setting("REQUEUE_AFTER"))):
        return Step(idle=True)  # its own steps carry it
    seconds = float(outbox.setting("STEP_SECONDS"))
    if not _hold(walk, seconds, step_id):
        return Step(idle=True)
    try:
        return _walk(walk, time.monotonic() + seconds)
    finally:
        DriftWalk.objects.filter(pk=walk.pk).update(held_until=None, held_by="")


def under_way(model_id: str) -> DriftWalk | None:
    """The walk of ``model_id``'s index under way, if one is (the health page shows how far it got)."""
    return DriftWalk.objects.filter(model_id=model_id).first()


def _start(model_id: str) -> DriftWalk:
    now = timezone.now()
    DriftWalk.objects.exclude(model_id=model_id).delete()  # an earlier encoder version's walk will not go on
    try:
        with transaction.atomic():
            return DriftWalk.objects.create(model_id=model_id, started_at=now, updated_at=now)
    except IntegrityError:  # another sweep started it a moment ago
        return DriftWalk.objects.get(model_id=model_id)


def _hold(walk: DriftWalk, seconds: float, step_id: str | None) -> bool:
    """Take the walk for one step, unless another step holds it (one of the same task id is this one)."""
    now = timezone.now()
    free = Q(held_until__isnull=True) | Q(held_until__lt=now)
    if step_id:
        free |= Q(held_by=step_id)
    until = now + timedelta(seconds=seconds) + HOLD_MARGIN
    taken = DriftWalk.objects.filter(pk=walk.pk).filter(free).update(held_until=until, held_by=step_id or "")
    return taken == 1


def _walk(walk: DriftWalk, deadline: float) -> Step:
    """Walk chunks until ``deadline`` (``time.monotonic``), keeping the walk's place after each."""
    step = Step()
    size = max(1, int(outbox.setting("CHUNK")))
    clock = _Clock()
    if walk.phase == DriftWalk.PRODUCTS:
        for last, found in product_chunks(walk.model_id, walk.after, size):
            missed = found.never_indexed + found.old_version + found.stale
            outbox.mark_dirty(missed)
            outbox.touch_back(missed)  # due now: sent by this very sweep
            step.marked += len(missed)
            for name, count in found.counts().items():  # the chunk's products and what it found
                setattr(walk, name, getattr(walk, name) + count)
            _moved(walk, last, clock.lap())
            if time.monotonic() >= deadline:
                step.more = True
                return step
        walk.phase = DriftWalk.ORPHANS
        _moved(walk, None, clock.lap())
    for last, orphans in orphan_chunks(walk.after, size):
        if orphans:
            step.orphans_removed += get_store().delete_products(orphans)
            outbox.forget(orphans)
            walk.orphans += len(orphans)
        _moved(walk, last, clock.lap())
        if time.monotonic() >= deadline:
            step.more = True
            return step
    walk.seconds += clock.lap()
    record_check(walk.model_id, walk.seconds, {name: getattr(walk, name) for name in ("products", *Drift.COUNTED)})
    walk.delete()
    return step


class _Clock:
    """Seconds since the last lap (a chunk's time includes its reads, which its iterator does)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        seconds, self.last = now - self.last, now
        return seconds


def _moved(walk: DriftWalk, after: str | None, seconds: float) -> None:
    walk.after = after
    walk.seconds += seconds
    walk.updated_at = timezone.now()
    fields = ["phase", "after", "seconds", "updated_at", "products", *Drift.COUNTED]
    walk.save(update_fields=fields)
