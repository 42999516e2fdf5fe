"""The deep sweep walks the catalogue in steps (services.sweeps): each step walks for
``DURABILITY["STEP_SECONDS"]``, acts on what it found, keeps its place and sends the next step through the
real broker; the steps together find what one walk finds. One walk at a time; a stalled one is taken up."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from celery import current_app
from django.utils import timezone

from multimodal_search import services
from multimodal_search.models import DriftCheck, DriftWalk, IndexState, ProductEmbedding
from multimodal_search.services import sweeps
from multimodal_search.services.enqueue import SWEEP_TASK, enqueue_deep_sweep
from shop.catalog.models import Product
from tests.factories import ProductFactory
from tests.test_admin_health import test_queue  # noqa: F401 (a fixture: this test's own queue on the real broker)
from tests.test_durable_indexing import configure
from tests.test_reconcile import corrupted  # noqa: F401 (a fixture: ten products, one of each kind of drift)
from tests.worker import WorkerProcess, purge_broker, wait_for

COUNTED = ["products", "never_indexed", "old_version", "stale", "orphans"]


def counts(check: DriftCheck) -> dict[str, int]:
    return {name: getattr(check, name) for name in COUNTED}


def messages(queue: str) -> list[dict]:
    """The kwargs of the sweep tasks waiting in ``queue`` (every task is taken off it)."""
    found = []
    with current_app.connection_for_write() as connection, connection.channel() as channel:
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            if message.headers["task"] == SWEEP_TASK:
                found.append(message.decode()[1])
    return found


def steps_in(settings, **durability) -> None:
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "DURABILITY": {**settings.MULTIMODAL_SEARCH["DURABILITY"], **durability},
    }


@pytest.mark.django_db
def test_a_walk_in_steps_finds_what_one_walk_finds_and_sends_each_next_step(
    corrupted,  # noqa: F811
    test_queue,  # noqa: F811
    settings,
):
    expected = services.find_drift().counts()  # 8 live products: 1 never, 1 old, 1 stale; 2 orphans
    assert expected == {"products": 8, "never_indexed": 1, "old_version": 1, "stale": 1, "orphans": 2}
    DriftCheck.objects.all().delete()
    steps_in(settings, CHUNK=2, STEP_SECONDS=0)  # one chunk a step
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as sent:
        report = services.sweep(deep=True)
        assert report.walk_continues and not DriftCheck.objects.exists()
        walk = DriftWalk.objects.get()
        assert (walk.phase, walk.products, walk.held_until) == ("products", 2, None)
        assert messages(test_queue) == [{"deep": True, "resume": True}]
        marked = report.marked
        taken = 1
        while report.walk_continues:
            assert taken < 20
            report = services.sweep(deep=True, resume=True)
            marked += report.marked
            taken += 1
            assert len(messages(test_queue)) == int(report.walk_continues)
    assert taken >= 8  # four chunks of products, five of stored products
    assert counts(DriftCheck.objects.get()) == expected and not DriftWalk.objects.exists()
    # what it found was acted on as it went: drifted products sent, orphaned vectors gone
    assert marked == 3
    assert {pk for call in sent.call_args_list for pk in call.args[0]} >= {
        corrupted[name] for name in ("never", "old", "stale")
    }
    assert not ProductEmbedding.objects.filter(product_pk__in=[corrupted["deleted"], corrupted["off"]]).exists()
    # a continuation with no walk under way starts none
    assert services.sweep(deep=True, resume=True).walk_continues is False
    assert not DriftWalk.objects.exists() and messages(test_queue) == []


@pytest.mark.django_db
def test_one_walk_at_a_time_and_a_stalled_walk_is_taken_up(corrupted, test_queue, settings):  # noqa: F811
    steps_in(settings, CHUNK=2, STEP_SECONDS=0, REQUEUE_AFTER=600)
    now = timezone.now()
    DriftWalk.objects.create(model_id="hash-v0", started_at=now, updated_at=now)  # an earlier encoder's
    assert services.sweep(deep=True).walk_continues
    walk = DriftWalk.objects.get()  # the earlier encoder's walk is gone
    # the beat's next deep sweep finds it carried by its own steps: leaves it, sends nothing
    assert sweeps.walk_step() == sweeps.Step(idle=True)
    # a step that finds the walk held by another step leaves it too
    DriftWalk.objects.update(held_until=timezone.now() + timedelta(minutes=1))
    assert sweeps.walk_step(resume=True) == sweeps.Step(idle=True)
    assert DriftWalk.objects.get().products == walk.products == 2
    # ... unless it is that step's own message, delivered again after its worker died (same task id)
    DriftWalk.objects.update(held_until=timezone.now() + timedelta(minutes=1), held_by="task-1")
    assert sweeps.walk_step(resume=True, step_id="task-2") == sweeps.Step(idle=True)
    assert sweeps.walk_step(resume=True, step_id="task-1").more
    walk = DriftWalk.objects.get()
    assert (walk.products, walk.held_until, walk.held_by) == (4, None, "")
    # a hold that ran out (a killed step) does not stop the walk
    DriftWalk.objects.update(held_until=timezone.now() - timedelta(seconds=1), held_by="task-3")
    assert sweeps.walk_step(resume=True).more and DriftWalk.objects.get().products == 6
    # the chain's message was lost: after REQUEUE_AFTER without a move, the next deep sweep takes it up
    DriftWalk.objects.update(updated_at=timezone.now() - timedelta(seconds=601))
    assert sweeps.walk_step().more and DriftWalk.objects.get().products == 8
    assert DriftWalk.objects.count() == 1


@pytest.mark.django_db
def test_a_step_holds_the_walk_under_its_task_id(corrupted, test_queue, settings, monkeypatch):  # noqa: F811
    """What lets the step's message, delivered again after its worker died, take the walk it held."""
    from multimodal_search.tasks import sweep_index_task

    steps_in(settings, CHUNK=2, STEP_SECONDS=0, REQUEUE_AFTER=600)
    holders = []
    walk = sweeps._walk

    def spy(held, deadline):
        holders.append(DriftWalk.objects.get(pk=held.pk).held_by)
        return walk(held, deadline)

    monkeypatch.setattr(sweeps, "_walk", spy)
    result = sweep_index_task.apply(kwargs={"deep": True}, task_id="step-1")
    assert result.get()["walk_continues"] == 1
    assert holders == ["step-1"] and DriftWalk.objects.get().held_by == ""


@pytest.mark.django_db
def test_the_health_page_shows_the_walk_under_way(admin_client, corrupted, settings):  # noqa: F811
    steps_in(settings, CHUNK=2, STEP_SECONDS=0, LIVE_CHECK_PRODUCTS=5)
    sweeps.walk_step()
    html = admin_client.get("/admin/multimodal_search/indexstate/").content.decode()
    assert 'id="health-walking"' in html and "2 of 8 products checked" in html


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_walks_in_steps_and_repairs_what_it_finds(settings, tmp_path):
    """A worker process on the real broker, a step a chunk: the walk goes on by itself to its end, and
    the drift it finds is indexed by the same worker."""
    configure(settings)
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    products = [ProductFactory(title=f"Scarf {i}") for i in range(9)]
    services.index_products([p.pk for p in products])
    Product.objects.filter(pk__in=[products[1].pk, products[6].pk]).update(title="Beanie")  # behind the signals
    gone = str(products[4].pk)
    Product.objects.filter(pk=gone).delete()
    purge_broker()
    worker = WorkerProcess(
        tmp_path / "worker.log",
        encoder="hash",
        env={"MMSEARCH_SWEEP_STEP_SECONDS": "0", "MMSEARCH_SWEEP_CHUNK": "2", "MMSEARCH_REQUEUE_AFTER": "0"},
    )
    try:
        worker.start()
        enqueue_deep_sweep()
        wait_for(DriftCheck.objects.exists, timeout=120, message="the walk to end")
        assert counts(DriftCheck.objects.get()) == {
            "products": 8,
            "never_indexed": 0,
            "old_version": 0,
            "stale": 2,
            "orphans": 1,
        }
        assert worker.log().count("walk_continues': 1") >= 8  # 4 chunks of products, 5 of stored products
        wait_for(
            lambda: not IndexState.objects.filter(dirty=True).exists(), timeout=60, message="the drift to be indexed"
        )
        assert services.find_drift().total == 0
        assert not ProductEmbedding.objects.filter(product_pk=gone).exists()
    finally:
        worker.stop()
        purge_broker()
