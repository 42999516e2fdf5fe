"""A first indexing writes its rows without HNSW indexes and builds them once at the end: inserting each
row into the graphs costs far more than one build over all of them (``services.index_products``'s
``indexes_after``, ``mmsearch_reindex``).

The builds run concurrently (``mmsearch_indexes --build``), which a test's transaction does not allow:
these tests commit, and drop the indexes they made."""

from __future__ import annotations

import io
from collections.abc import Iterator
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from multimodal_search import services, tasks
from multimodal_search.services import outbox
from multimodal_search.store import hnsw
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model_id() -> Iterator[str]:
    model_id = services.current_model_id()
    hnsw.drop(model_id)
    yield model_id
    hnsw.drop(model_id)


@pytest.fixture
def indexes_at_writes(model_id: str) -> Iterator[list[int]]:
    """How many HNSW indexes the version had each time rows were written."""
    seen: list[int] = []
    write = outbox.write_current

    def counting(*args, **kwargs):
        if args[1]:  # rows to write (not only products settled as unchanged or gone)
            seen.append(len(hnsw.indexes(model_id)))
        return write(*args, **kwargs)

    with mock.patch.object(outbox, "write_current", counting):
        yield seen


def _reindex(*options: str) -> str:
    out = io.StringIO()
    call_command("mmsearch_reindex", "--sync", "--batch-size", "2", *options, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_first_reindex_writes_every_row_then_builds_the_indexes(model_id, indexes_at_writes):
    ProductFactory.create_batch(5, photos=["red"])
    assert services.store_is_empty()

    out = _reindex()

    assert "without HNSW indexes (the store holds no vectors yet)" in out
    assert indexes_at_writes == [0, 0, 0]  # three batches, no index yet at any of them
    assert "Built 7 index(es)" in out
    assert {info.state for info in hnsw.status(model_id)} == {"current"} and len(hnsw.status(model_id)) == 7
    assert services.missing_vector_indexes(model_id) == []
    assert len(services.search_products("red", k=5).hits) == 5


def test_a_reindex_of_a_store_that_holds_vectors_keeps_the_indexes_up(model_id, indexes_at_writes):
    ProductFactory.create_batch(2, photos=["red"])
    _reindex()
    ProductFactory.create_batch(3, photos=["blue"])
    indexes_at_writes.clear()

    out = _reindex("--missing")

    assert "without HNSW indexes" not in out and "Building the HNSW indexes" not in out
    assert indexes_at_writes == [7, 7]  # the three new products were inserted into the built indexes


def test_indexes_after_on_a_store_with_vectors_and_what_an_earlier_run_left_unbuilt(model_id, indexes_at_writes):
    ProductFactory.create_batch(2, photos=["red"])
    _reindex()
    ProductFactory.create_batch(2, photos=["blue"])
    indexes_at_writes.clear()
    hnsw.drop(model_id)  # as a run stopped before its end leaves them

    # the indexes that exist are kept up; none are created until the end, where the missing ones are built
    out = _reindex("--missing", "--indexes-after")

    assert "without HNSW indexes (--indexes-after)" in out and indexes_at_writes == [0]
    assert services.missing_vector_indexes(model_id) == []
    hnsw.drop(model_id)
    out = _reindex("--missing")  # nothing to index: the missing indexes are built all the same
    assert "0 product(s) to index" in out and "Built 7 index(es)" in out


def test_a_task_told_to_leave_the_indexes_writes_without_them(model_id):
    products = ProductFactory.create_batch(3, photos=["red"])

    result = tasks.index_products_task([str(p.pk) for p in products], indexes_after=True)

    assert result["indexed"] == 3
    assert hnsw.indexes(model_id) == [] and len(services.missing_vector_indexes(model_id)) == 7
    tasks.index_products_task([str(p.pk) for p in products], force=True)  # a task as before builds them
    assert len(hnsw.indexes(model_id)) == 7


def test_indexes_after_needs_the_command_to_wait(model_id):
    with pytest.raises(CommandError, match="leave out --no-wait"):
        call_command("mmsearch_reindex", "--indexes-after", "--no-wait", stdout=io.StringIO())


def test_the_tasks_are_told_to_leave_the_indexes_only_when_asked():
    with mock.patch("multimodal_search.services.enqueue.current_app.send_task") as send:
        services.enqueue_index(["1", "2", "3"], batch_size=2, indexes_after=True)
        services.enqueue_index(["4"])
    kwargs = [call.kwargs["kwargs"] for call in send.call_args_list]
    # a task sent as before carries the message it always did, which workers of the code before still read
    assert kwargs == [{"force": False, "indexes_after": True}] * 2 + [{"force": False}]


def test_a_build_that_fails_says_the_products_are_indexed(model_id):
    ProductFactory.create_batch(2, photos=["red"])
    with (
        mock.patch.object(services, "rebuild_vector_indexes", side_effect=RuntimeError("another rebuild is running")),
        pytest.raises(CommandError, match=r"another rebuild is running\. The products are indexed; `mmsearch_indexes"),
    ):
        _reindex()
    assert services.count_indexed([p.pk for p in ProductFactory._meta.model.objects.all()], model_id) == 2


@pytest.mark.django_db  # the test's transaction: CREATE INDEX CONCURRENTLY cannot run in one
def test_a_reindex_called_inside_a_transaction_builds_the_indexes_in_it(model_id):
    ProductFactory.create_batch(2, photos=["red"])

    out = _reindex()

    assert "without HNSW indexes" in out and "Indexes built in" in out
    assert services.missing_vector_indexes(model_id) == [] and len(hnsw.indexes(model_id)) == 7
