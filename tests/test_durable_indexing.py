"""The indexing outbox: dirty marks in the change's transaction, versioned writes, tries, failures, backoff, sweep."""

from __future__ import annotations

import logging
from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, transaction
from django.utils import timezone

from multimodal_search import services
from multimodal_search.encoders import clear_cache
from multimodal_search.models import IndexState, ProductEmbedding
from multimodal_search.services import indexing, outbox
from shop.catalog.models import Category, Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

DURABILITY = {"MAX_ATTEMPTS": 3, "RETRY_BACKOFF": 0, "RETRY_BACKOFF_MAX": 0, "REQUEUE_AFTER": 0, "CHUNK": 4}


def configure(settings, encoder: str = "hash", **durability):
    """Auto-indexing on, the given encoder, and ``DURABILITY`` with no waiting unless told."""
    encoders = {
        **settings.MULTIMODAL_SEARCH["ENCODERS"],
        "oom": {"BACKEND": "tests.fakes.OutOfMemoryEncoder", "OPTIONS": {"max_batch": 4}},
    }
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "ENCODERS": encoders,
        "ENCODER": encoder,
        "AUTO_INDEX": True,
        "DURABILITY": {**DURABILITY, **durability},
    }
    clear_cache()


@pytest.fixture
def sent():
    """The indexing tasks that would go to the broker (a list of pk lists)."""
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        yield send


def state(product) -> IndexState:
    return IndexState.objects.get(product_pk=str(product.pk))


def sent_pks(send) -> set[str]:
    return {pk for call in send.call_args_list for pk in call.args[0]}


def test_a_save_marks_the_product_dirty_in_its_own_transaction(settings, sent, django_capture_on_commit_callbacks):
    configure(settings)
    with django_capture_on_commit_callbacks(execute=True):
        product = ProductFactory(title="Red kettle")
    first = state(product)
    assert first.dirty and first.version >= 1 and first.attempts == 0
    with django_capture_on_commit_callbacks(execute=True):
        product.title = "Blue kettle"
        product.save()
    assert state(product).version == first.version + 1
    with pytest.raises(RuntimeError), transaction.atomic():
        product.title = "Green kettle"
        product.save()
        raise RuntimeError("rolled back")
    assert state(product).version == first.version + 1  # the mark rolled back with the change


def test_a_failed_enqueue_is_logged_kept_dirty_and_sent_by_the_sweep(
    settings, sent, caplog, django_capture_on_commit_callbacks
):
    configure(settings)
    sent.side_effect = ConnectionError("Error 111 connecting to 127.0.0.1:6391. Connection refused.")
    with (
        caplog.at_level(logging.WARNING, logger="multimodal_search"),
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        products = [ProductFactory(title=f"Lamp {i}") for i in range(3)]
    assert Product.objects.count() == 3  # the save itself went through
    warning = [r for r in caplog.records if "could not enqueue" in r.getMessage()]
    assert warning and "3 product(s)" in warning[0].getMessage() and "Connection refused" in warning[0].getMessage()
    assert all(state(p).dirty for p in products)

    sent.side_effect = None
    sent.reset_mock()
    report = services.sweep()
    assert report.sent == 3
    assert sent_pks(sent) == {str(p.pk) for p in products}
    sent.reset_mock()
    configure(settings, REQUEUE_AFTER=600)
    assert services.sweep().sent == 0  # just sent: not again before REQUEUE_AFTER


def test_indexing_clears_the_mark_and_resets_tries(settings, sent):
    configure(settings)
    product = ProductFactory(title="Walking boots")
    report = services.index_products([product.pk])
    assert report.indexed == 1
    row = state(product)
    assert not row.dirty and row.attempts == 0 and row.indexed_at is not None
    assert services.sweep().sent == 0


def test_an_older_write_never_wins_over_a_newer_edit(settings, sent, django_capture_on_commit_callbacks):
    configure(settings)
    product = ProductFactory(title="Canvas tote")
    real_encode = indexing._encode

    def edit_while_encoding(items, encoder, report):
        vectors = real_encode(items, encoder, report)
        with django_capture_on_commit_callbacks(execute=True):  # the shop saves an edit meanwhile
            edited = Product.objects.get(pk=product.pk)
            edited.title = "Leather tote"
            edited.save()
        return vectors

    with mock.patch.object(indexing, "_encode", edit_while_encoding):
        report = services.index_products([product.pk])
    assert report.indexed == 0 and report.superseded == 1
    assert not ProductEmbedding.objects.filter(product_pk=str(product.pk)).exists()
    assert state(product).dirty

    report = services.index_products([product.pk])  # the newer task
    assert report.indexed == 1
    stored = ProductEmbedding.objects.get(product_pk=str(product.pk))
    assert "Leather tote" in stored.search_text
    assert not state(product).dirty


def test_a_batch_that_runs_out_of_memory_is_split_and_fully_indexed(settings, sent):
    configure(settings, encoder="oom")
    products = [ProductFactory(title=f"Mug {i}", photos=["red"]) for i in range(11)]
    report = services.index_products([p.pk for p in products])
    assert report.indexed == 11 and not report.failed
    assert ProductEmbedding.objects.filter(product_pk__in=[str(p.pk) for p in products]).count() == 11
    encoder = services.query.current_encoder()[0]
    # texts and titles go in one call (22 texts): tried whole, then halves
    assert max(encoder.calls) == 22 and encoder.calls.count(22) == 1
    assert all(not state(p).dirty for p in products)


def test_a_poison_product_fails_alone_then_is_marked_failed_after_max_tries(settings, sent):
    configure(settings, encoder="oom", RETRY_BACKOFF=0)
    good = [ProductFactory(title=f"Scarf {i}") for i in range(3)]
    poison = ProductFactory(title="Poison scarf")
    report = services.index_products([p.pk for p in [*good, poison]])
    assert report.indexed == 3 and report.failed == [str(poison.pk)]
    row = state(poison)
    assert row.dirty and row.attempts == 1 and row.failed_at is None and "ValueError" in row.last_error
    for _ in range(2):
        services.index_products([poison.pk])
    row = state(poison)
    assert row.attempts == 3 and row.failed_at is not None and "breaks the encoder" in row.last_error
    assert services.find_drift().failed == {str(poison.pk): row.last_error}

    # not due (backoff in the future): batches skip it without trying
    IndexState.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    report = services.index_products([poison.pk, good[0].pk])
    assert report.skipped == 1 and state(poison).attempts == 3


def test_a_product_that_kills_the_worker_uses_up_its_tries_and_blocks_nobody(settings, sent):
    configure(settings, RETRY_BACKOFF=3600, RETRY_BACKOFF_MAX=86400)
    products = [ProductFactory(title=f"Cap {i}") for i in range(4)]
    victim = products[1]
    pks = [p.pk for p in products]
    # three deliveries died mid-batch: each counted a try at its start and never finished
    outbox.claim([str(pk) for pk in pks])
    for _ in range(2):
        outbox.claim([str(victim.pk)])
    assert state(victim).attempts == 3
    report = services.index_products(pks)  # the next delivery goes one by one and skips the victim
    assert report.indexed == 3 and report.skipped == 1
    row = state(victim)
    assert row.failed_at is not None and "worker stopped 3 times" in row.last_error
    assert row.next_attempt_at > timezone.now() + timedelta(minutes=30)
    assert all(not state(p).dirty for p in products if p != victim)


def test_index_status_counts_pending_and_failed_products(settings, sent, django_capture_on_commit_callbacks):
    configure(settings)
    with django_capture_on_commit_callbacks(execute=True):
        waiting, broken = ProductFactory(title="Sun hat"), ProductFactory(title="Straw hat")
    IndexState.objects.filter(product_pk=str(broken.pk)).update(failed_at=timezone.now(), last_error="boom")
    status = services.index_status()
    assert (status["pending"], status["failed"]) == (1, 1)
    services.index_products([waiting.pk])
    assert services.index_status()["pending"] == 0


def test_backoff_doubles_from_minutes_to_hours(settings):
    configure(settings, RETRY_BACKOFF=60, RETRY_BACKOFF_MAX=12 * 3600)
    assert outbox.backoff(1) == timedelta(minutes=1)
    assert outbox.backoff(4) == timedelta(minutes=8)
    assert outbox.backoff(20) == timedelta(hours=12)


def test_a_failed_product_is_retried_by_the_sweep_only_when_due(settings, sent):
    configure(settings, RETRY_BACKOFF=3600, RETRY_BACKOFF_MAX=86400)
    product = ProductFactory(title="Wool socks")
    now = timezone.now()
    IndexState.objects.filter(product_pk=str(product.pk)).delete()
    IndexState.objects.create(
        product_pk=str(product.pk),
        attempts=3,
        failed_at=now,
        next_attempt_at=now + timedelta(hours=1),
        touched_at=now - timedelta(hours=2),
        last_error="boom",
    )
    assert services.sweep().sent == 0
    IndexState.objects.filter(product_pk=str(product.pk)).update(next_attempt_at=now - timedelta(seconds=1))
    assert services.sweep().sent == 1
    report = services.index_products([product.pk])  # the retry works this time
    assert report.indexed == 1
    assert state(product).failed_at is None and not state(product).dirty


def test_the_deep_sweep_finds_changes_that_bypassed_the_signals(settings, sent):
    configure(settings)
    category = Category.objects.create(name="Bags")
    products = [ProductFactory(title=f"Bag {i}", category=category) for i in range(3)]
    other = ProductFactory(title="Umbrella")
    services.index_products([p.pk for p in [*products, other]])
    sent.reset_mock()

    Product.objects.filter(pk=products[0].pk).update(title="Duffel bag")  # QuerySet.update(): no signal
    Category.objects.filter(pk=category.pk).update(path="Luggage")  # a renamed category
    assert services.sweep().sent == 0  # the outbox knows nothing
    report = services.sweep(deep=True)
    assert report.marked == 3 and report.sent == 3
    assert sent_pks(sent) == {str(p.pk) for p in products}
    services.index_products([p.pk for p in products])
    assert services.find_drift().total == 0


def test_database_errors_are_not_blamed_on_the_products(settings, sent):
    configure(settings)
    product = ProductFactory(title="Rain jacket")
    with (
        mock.patch.object(indexing, "_encode", side_effect=OperationalError("server closed the connection")),
        pytest.raises(OperationalError),
    ):
        services.index_products([product.pk])
    row = state(product)
    assert row.last_error == "" and row.failed_at is None and row.dirty  # the task retries the batch


def test_deleted_products_lose_their_vectors_and_state(settings, sent, django_capture_on_commit_callbacks):
    configure(settings)
    product = ProductFactory(title="Old hat")
    services.index_products([product.pk])
    pk = product.pk
    with django_capture_on_commit_callbacks(execute=True):
        product.delete()
    assert IndexState.objects.get(product_pk=str(pk)).dirty
    report = services.index_products([pk])
    assert report.removed == 1
    assert not ProductEmbedding.objects.filter(product_pk=str(pk)).exists()
    assert not IndexState.objects.filter(product_pk=str(pk)).exists()
