"""``mmsearch_reconcile`` on a deliberately corrupted index: every kind of drift reported, ``--fix`` repairs all."""

from __future__ import annotations

import io
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from multimodal_search import services
from multimodal_search.models import ImageEmbedding, IndexState, ProductEmbedding
from shop.catalog.models import Product
from tests.factories import ProductFactory
from tests.test_durable_indexing import configure

pytestmark = pytest.mark.django_db


def reconcile(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("mmsearch_reconcile", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def row_of(output: str, problem: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(problem))


@pytest.fixture
def corrupted(settings):
    """Ten indexed products, then one of each kind of drift (name -> product pk)."""
    configure(settings)
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    products = [ProductFactory(title=f"Jacket {i}", photos=["red"]) for i in range(10)]
    services.index_products([p.pk for p in products])
    pk = {name: str(products[i].pk) for i, name in enumerate(["never", "old", "stale", "failed", "deleted", "off"])}
    ProductEmbedding.objects.filter(product_pk=pk["never"]).delete()  # a lost row
    ImageEmbedding.objects.filter(product_pk=pk["never"]).delete()
    ProductEmbedding.objects.filter(product_pk=pk["old"]).update(model_id="hash-v0")  # an older encoder
    ImageEmbedding.objects.filter(product_pk=pk["old"]).update(model_id="hash-v0")
    Product.objects.filter(pk=pk["stale"]).update(title="Raincoat")  # edited behind the signals' back
    IndexState.objects.filter(product_pk=pk["failed"]).update(
        dirty=True, attempts=3, failed_at=timezone.now(), next_attempt_at=timezone.now(), last_error="OSError: boom"
    )
    Product.objects.filter(pk=pk["deleted"]).delete()  # vectors of a deleted product
    Product.objects.filter(pk=pk["off"]).update(active=False)  # vectors of an inactive product
    return pk


def test_reconcile_reports_every_kind_of_drift_and_exits_non_zero(corrupted):
    code, out, err = reconcile()
    assert code == 1, out + err
    assert "problem(s) found; run with --fix" in err
    assert row_of(out, "never indexed").split()[2] == "1" and corrupted["never"] in row_of(out, "never indexed")
    assert corrupted["old"] in row_of(out, "old version")
    assert corrupted["stale"] in row_of(out, "stale")
    assert corrupted["failed"] in row_of(out, "failed") and "OSError: boom" in out
    orphaned = row_of(out, "orphaned")
    assert orphaned.split()[1] == "2" and corrupted["deleted"] in orphaned and corrupted["off"] in orphaned
    drift = services.find_drift()
    assert (drift.never_indexed, drift.old_version, drift.stale) == (
        [corrupted["never"]],
        [corrupted["old"]],
        [corrupted["stale"]],
    )


def test_reconcile_fix_sync_repairs_everything(corrupted):
    code, out, err = reconcile("--fix", "--sync")
    assert code == 0, out + err
    assert "Removed 2 orphaned row(s)" in out and "The index is current." in out
    assert services.find_drift().total == 0
    assert not ProductEmbedding.objects.filter(product_pk__in=[corrupted["deleted"], corrupted["off"]]).exists()
    current = ProductEmbedding.objects.filter(model_id="hash-v1")
    assert current.count() == 8
    assert "Raincoat" in current.get(product_pk=corrupted["stale"]).search_text
    assert IndexState.objects.filter(failed_at__isnull=False).count() == 0
    assert reconcile()[0] == 0


def test_reconcile_fix_sends_the_repairs_to_the_worker(corrupted):
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        code, out, _err = reconcile("--fix")
    assert code == 0 and "Sent 4 product(s)" in out
    sent = {pk for call in send.call_args_list for pk in call.args[0]}
    assert sent == {corrupted[name] for name in ("never", "old", "stale", "failed")}
    assert all(IndexState.objects.get(product_pk=pk).dirty for pk in sent)


def test_reconcile_on_a_current_index_exits_zero(settings):
    configure(settings)
    products = [ProductFactory(title=f"Belt {i}") for i in range(3)]
    services.index_products([p.pk for p in products])
    code, out, _err = reconcile()
    assert code == 0 and "The index is current: 3 product(s) checked." in out


def test_reconcile_rejects_bad_options(settings):
    configure(settings)
    with pytest.raises(CommandError, match="--sync only applies with --fix"):
        call_command("mmsearch_reconcile", "--sync")
    with pytest.raises(CommandError, match="--chunk must be at least 1"):
        call_command("mmsearch_reconcile", "--chunk", "0")


def test_reconcile_fix_without_a_broker_says_so(corrupted):
    with (
        mock.patch("multimodal_search.services.enqueue.send_index_task", side_effect=OSError("Connection refused")),
        pytest.raises(CommandError, match=r"could not reach the Celery broker.*use --fix --sync"),
    ):
        call_command("mmsearch_reconcile", "--fix", stdout=io.StringIO(), stderr=io.StringIO())
