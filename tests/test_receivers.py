"""Saving or deleting products enqueues one indexing task per committed transaction."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import transaction

from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def auto_index(settings):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": True}
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as enqueue:
        yield enqueue


def test_save_enqueues_on_commit(auto_index, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        product = ProductFactory(title="x", photos=["red", "blue"])
    assert auto_index.call_count == 1
    assert auto_index.call_args.args[0] == [str(product.pk)]


def test_many_saves_in_one_transaction_are_one_task(auto_index, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        products = [ProductFactory(title=f"p{i}") for i in range(5)]
    assert auto_index.call_count == 1
    assert sorted(auto_index.call_args.args[0]) == sorted(str(p.pk) for p in products)


def test_rolled_back_saves_send_nothing(auto_index, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        ProductFactory(title="gone")
        raise RuntimeError
    assert auto_index.call_count == 0


def test_delete_enqueues(auto_index, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        product = ProductFactory(title="to delete")
    pk = product.pk
    auto_index.reset_mock()
    with django_capture_on_commit_callbacks(execute=True):
        product.delete()
    assert [str(pk)] == auto_index.call_args.args[0]


def test_raw_fixture_loading_is_ignored(auto_index, django_capture_on_commit_callbacks):
    from multimodal_search.receivers import product_changed
    from shop.catalog.models import Product

    with django_capture_on_commit_callbacks(execute=True):
        product_changed(sender=Product, instance=Product(pk=1), raw=True)
    assert auto_index.call_count == 0


def test_auto_index_off_sends_nothing(settings, django_capture_on_commit_callbacks):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    with (
        mock.patch("multimodal_search.services.enqueue.send_index_task") as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        ProductFactory(title="quiet")
    assert enqueue.call_count == 0
