"""Admin: the index health page, its re-index actions and permissions, the vector rows, entity decoding."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from multimodal_search import services
from multimodal_search.conf import search_settings
from multimodal_search.models import IndexState, ProductEmbedding
from multimodal_search.services import outbox
from shop.catalog.models import Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

HEALTH = "/admin/multimodal_search/indexstate/"
REINDEX = "/admin/multimodal_search/indexstate/reindex/"
VECTORS = "/admin/multimodal_search/productembedding/"
TRY = "/admin/multimodal_search/productembedding/try/"


@pytest.fixture
def mixed_catalogue(indexed):
    """Three current products, one with changed content, one of an older encoder, one pending, one failed."""
    current = [ProductFactory(sku=f"OK-{n}", title=f"wool hat {n}", photos=["red"]) for n in range(3)]
    changed = ProductFactory(sku="CHANGED-1", title="old title")
    old = ProductFactory(sku="OLD-1", title="old encoder scarf")
    indexed(*current, changed, old)
    Product.objects.filter(pk=changed.pk).update(title="new title")  # bypasses the signals: only drift finds it
    ProductEmbedding.objects.filter(product_pk=str(old.pk)).update(model_id="an-older-encoder")
    pending = ProductFactory(sku="PENDING-1", title="new sock")
    outbox.mark_dirty([pending.pk])
    failed = ProductFactory(sku="FAILED-1", title="broken glove", photos=["blue"])
    outbox.mark_dirty([failed.pk])
    IndexState.objects.filter(product_pk=str(failed.pk)).update(
        failed_at=timezone.now(), attempts=3, last_error="OSError: cannot identify image file 'glove.jpg'"
    )
    return {"current": current, "changed": changed, "old": old, "pending": pending, "failed": failed}


def shown_counts(html: str) -> dict[str, int]:
    return {name: int(value) for name, value in re.findall(r'data-count="(\w+)">(\d+)<', html)}


@pytest.fixture
def viewer(django_user_model):
    """Staff who may view the vector rows but not re-index."""
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_productembedding"))
    return user


def test_health_counts_equal_the_database(admin_client, mixed_catalogue):
    model_id = services.current_model_id()
    response = admin_client.get(HEALTH)
    assert response.status_code == 200
    counts = shown_counts(response.content.decode())
    assert counts["products"] == Product.objects.filter(active=True).count() == 7
    current_rows = ProductEmbedding.objects.filter(model_id=model_id)
    assert counts["indexed"] == current_rows.count() == 4  # the changed product still has current-encoder vectors
    assert counts["pending"] == IndexState.objects.filter(dirty=True, failed_at__isnull=True).count() == 1
    assert counts["failed"] == IndexState.objects.filter(failed_at__isnull=False).count() == 1
    old_rows = ProductEmbedding.objects.exclude(model_id=model_id).count()
    assert counts["stale"] == old_rows + 1 == 2  # the older encoder's product and the changed one
    live = {str(pk) for pk in Product.objects.filter(active=True).values_list("pk", flat=True)}
    stored = set(ProductEmbedding.objects.values_list("product_pk", flat=True))
    assert counts["never_indexed"] == len(live - stored) == 2
    assert counts["orphans"] == 0


def test_health_page_shows_errors_versions_and_training(admin_client, mixed_catalogue, model_dir):
    model_dir.mkdir(parents=True)
    (model_dir / "reranker.json").write_text('{"model_id": "an-older-encoder"}')
    html = admin_client.get(HEALTH).content.decode()
    assert "broken glove" in html and "FAILED-1" in html and "cannot identify image file" in html
    assert services.current_model_id() in html and "an-older-encoder" in html
    assert "reranker.json" in html and "another version: ignored" in html
    assert "mmsearch_train" in html
    assert 'value="stale"' in html  # the re-index buttons


def test_health_page_is_linked_from_the_admin_index(admin_client):
    assert HEALTH in admin_client.get("/admin/").content.decode()


def test_reindex_stale_marks_pending_and_enqueues(admin_client, mixed_catalogue):
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        response = admin_client.post(REINDEX, {"scope": "stale"}, follow=True)
    sent = sorted(pk for call in send.call_args_list for pk in call.args[0])
    expected = [mixed_catalogue[name].pk for name in ("changed", "old", "pending", "failed")]
    assert sent == sorted(str(pk) for pk in expected)
    assert "Queued 4 product(s)" in response.content.decode()
    assert shown_counts(response.content.decode())["pending"] == 4  # progress: pending until the worker is done


def test_reindex_failed_gives_fresh_tries(admin_client, mixed_catalogue):
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        admin_client.post(REINDEX, {"scope": "failed"})
    assert send.call_args.args[0] == [str(mixed_catalogue["failed"].pk)]
    assert not IndexState.objects.filter(failed_at__isnull=False).exists()


@pytest.fixture
def test_queue(settings):
    """A queue of this test's own on the real broker, emptied after; skips when the broker cannot be used."""
    from celery import current_app

    name = "mmsearch-admin-health-test"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "QUEUE": name, "BULK_QUEUE": None}
    if services.queue_depth() is None:
        pytest.skip(f"the Celery broker {settings.CELERY_BROKER_URL} cannot be used")

    def purge() -> None:
        with current_app.connection_for_write() as connection, connection.channel() as channel:
            channel.queue_declare(queue=name)
            channel.queue_purge(name)

    purge()
    yield name
    purge()


def test_reindex_all_reaches_the_broker_queue(admin_client, mixed_catalogue, test_queue):
    assert services.queue_depth() == {test_queue: 0}
    admin_client.post(REINDEX, {"scope": "all"})
    assert services.queue_depth() == {test_queue: 1}  # 7 products: one task of BATCH_SIZE
    assert f'data-count="queue">{test_queue}: 1<' in admin_client.get(HEALTH).content.decode()


def test_retrain_is_sent_to_the_worker_queue_and_needs_the_permission(admin_client, client, viewer, settings):
    from celery import current_app

    name = "mmsearch-admin-retrain-test"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "QUEUE": name, "BULK_QUEUE": None}
    if services.queue_depth() is None:
        pytest.skip(f"the Celery broker {settings.CELERY_BROKER_URL} cannot be used")
    with current_app.connection_for_write() as connection, connection.channel() as channel:
        channel.queue_declare(queue=name)
        channel.queue_purge(name)
        assert 'data-action="retrain"' in admin_client.get(HEALTH).content.decode()
        answer = admin_client.post("/admin/multimodal_search/indexstate/retrain/", follow=True)
        assert "Retraining was sent to the worker" in answer.content.decode()
        assert services.queue_depth() == {name: 1}
        client.force_login(viewer)
        assert client.post("/admin/multimodal_search/indexstate/retrain/").status_code == 403
        assert 'data-action="retrain"' not in client.get(HEALTH).content.decode()
        assert services.queue_depth() == {name: 1}
        channel.queue_purge(name)


def test_view_only_staff_may_look_but_not_reindex(client, viewer, mixed_catalogue):
    client.force_login(viewer)
    page = client.get(HEALTH)
    assert page.status_code == 200 and "You may look" in page.content.decode()
    assert client.get(VECTORS).status_code == 200
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        assert client.post(REINDEX, {"scope": "all"}).status_code == 403
        rows = list(ProductEmbedding.objects.values_list("pk", flat=True)[:2])
        action = client.post(VECTORS, {"action": "reindex_rows", "_selected_action": rows})
        assert action.status_code == 403
    assert send.call_count == 0


def test_staff_without_any_index_permission_get_403(client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(clerk)
    assert client.get(HEALTH).status_code == 403
    assert client.post(REINDEX, {"scope": "all"}).status_code == 403


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", HEALTH),
        ("post", REINDEX),
        ("get", REINDEX),
        ("get", VECTORS),
        ("get", TRY),
        ("get", f"{VECTORS}1/change/"),
    ],
)
def test_anonymous_users_are_sent_to_the_login_page(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login/")


def test_vector_rows_show_products_in_order_without_delete(admin_client, indexed):
    products = [ProductFactory(sku=f"ROW-{n:02d}", title=f"row product {n}") for n in range(12)]
    indexed(*products)
    html = admin_client.get(VECTORS).content.decode()
    assert "row product 0" in html and "ROW-11" in html
    assert "delete_selected" not in html and "reindex_rows" in html
    positions = [html.index(f"row product {n}<") for n in range(12)]
    assert positions == sorted(positions)  # by product: 2 before 10, not text order
    found = admin_client.get(VECTORS, {"q": "ROW-07"}).content.decode()
    assert "row product 7<" in found and "row product 3<" not in found
    # words of the indexed text through its full-text index, the last one also as a prefix
    found = admin_client.get(VECTORS, {"q": "row produ"}).content.decode()
    assert all(f"row product {n}<" in found for n in range(12))
    assert "row product 7<" not in admin_client.get(VECTORS, {"q": "hoodie"}).content.decode()
    found = admin_client.get(VECTORS, {"q": str(products[3].pk)}).content.decode()  # the product's pk
    assert "row product 3<" in found and "row product 7<" not in found


def test_vector_rows_action_enqueues_their_products(admin_client, indexed):
    products = [ProductFactory(sku="A-1"), ProductFactory(sku="B-1")]
    indexed(*products)
    rows = list(ProductEmbedding.objects.values_list("pk", flat=True))
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        response = admin_client.post(VECTORS, {"action": "reindex_rows", "_selected_action": rows}, follow=True)
    assert sorted(send.call_args.args[0]) == sorted(str(p.pk) for p in products)
    assert "Queued 2 product(s)" in response.content.decode()


def test_indexed_text_has_html_entities_decoded(indexed):
    product = ProductFactory(title="Comfy&reg; hoodie", description="<p>Soft &bull; warm &amp; cosy</p>")
    indexed(product)
    row = ProductEmbedding.objects.get(product_pk=str(product.pk))
    assert "Comfy® hoodie" in row.search_text and "Soft • warm & cosy" in row.search_text
    assert "&reg;" not in row.search_text and "&bull;" not in row.search_text
    assert row.fields["title"] == "Comfy® hoodie"


def test_playground_compares_methods_with_a_photo_category_and_synonyms(admin_client, indexed, settings, photo):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "SYNONYMS": [["widget", "gizmo"]]}
    products = [
        ProductFactory(sku="GIZMO-1", title="red gizmo", photos=["red"]),
        ProductFactory(sku="LAMP-1", title="blue lamp", photos=["blue"]),
    ]
    indexed(*products)
    response = admin_client.post(TRY, {"q": "widget", "method": "lexical", "photo": photo("red")})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="playground-column"') == 2
    default = search_settings.FUSION["METHOD"]
    assert f"<h2>{default}" in html and "<h2>lexical</h2>" in html
    assert "expanded by synonyms to <strong>“widget gizmo”" in html and "+ photo" in html
    assert html.index("GIZMO-1") < html.index("LAMP-1")
    # each signal's value and its share of the score, in one cell, the largest share first
    cells = re.findall(r'<td style="white-space: nowrap;">(.*?)</td>', html, re.S)
    assert cells and all(cell.endswith("<br>") for cell in cells)
    assert re.search(r"lexical (\d\.\d{3}|–) <strong>\d+%</strong><br>", cells[-1])
    shares = [int(share) for share in re.findall(r"<strong>(\d+)%</strong>", cells[0])]
    assert shares and shares == sorted(shares, reverse=True)


def test_playground_is_open_to_view_only_staff(client, viewer, indexed):
    indexed(ProductFactory(sku="HAT-1", title="wool hat"))
    client.force_login(viewer)
    response = client.get(TRY, {"q": "hat", "category": "Nowhere"})
    assert response.status_code == 200 and "No results." in response.content.decode()


def test_health_page_lists_the_vector_indexes_and_says_when_they_differ_from_the_settings(
    admin_client, mixed_catalogue, settings
):
    from multimodal_search.store import hnsw

    encoder, model_id = services.query.current_encoder()
    hnsw.ensure(model_id, encoder.dimensions, encoder.feature_dimensions)  # the store's own call is once per process
    html = admin_client.get(HEALTH).content.decode()
    table = html[html.index('id="health-indexes"') :]
    table = table[: table.index("</table>")]
    assert table.count("<td>32</td><td>128</td>") == 7 and table.count(">current</td>") == 7
    assert "<code>pool_vector</code>" in table and "mmsearch_indexes --build" not in html
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "HNSW_M": 16, "HNSW_EF_CONSTRUCTION": 64}
    html = admin_client.get(HEALTH).content.decode()
    assert html.count(">other build parameters</td>") == 7
    assert "<code>python manage.py mmsearch_indexes --build</code> rebuilds them" in html


def test_health_page_says_when_an_index_is_missing(admin_client, mixed_catalogue):
    """A column with rows but no index (left for ``mmsearch_indexes --build`` over a large table) is
    listed as missing, with the command."""
    from django.db import connection

    from multimodal_search.store import hnsw, sql

    encoder, model_id = services.query.current_encoder()
    hnsw.ensure(model_id, encoder.dimensions, encoder.feature_dimensions)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {sql.index_name(sql.PRODUCT_TABLE, 'pool_vector', model_id)}")
    html = admin_client.get(HEALTH).content.decode()
    assert html.count("<strong>missing</strong>: searches read the column whole") == 1
    assert html.count(">current</td>") == 6
    assert (
        "Some indexes are missing" in html
        and "<code>python manage.py mmsearch_indexes --build</code> builds them" in html
    )


def test_a_large_catalogue_shows_the_last_walk_instead_of_walking_per_view(admin_client, mixed_catalogue, settings):
    """Walking the catalogue took 12-20 s at 100,000 products: above ``LIVE_CHECK_PRODUCTS`` the page
    does not walk it, and shows what the last walk (the deep sweep, ``mmsearch_reconcile``) found, and when."""
    from io import StringIO

    from django.core.management import call_command

    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "DURABILITY": {**settings.MULTIMODAL_SEARCH.get("DURABILITY", {}), "LIVE_CHECK_PRODUCTS": 6},
    }
    with mock.patch("multimodal_search.services.health.find_drift", side_effect=AssertionError("walked")):
        html = admin_client.get(HEALTH).content.decode()
    counts = shown_counts(html)
    assert counts["products"] == 7 and counts["pending"] == 1 and counts["failed"] == 1
    assert counts["indexed"] == ProductEmbedding.objects.filter(model_id=services.current_model_id()).count() == 4
    assert html.count(">not checked<") == 3 and "the catalogue has not been walked yet" in html
    assert "<code>python manage.py mmsearch_reconcile</code> walks it now" in html

    with pytest.raises(SystemExit):  # exits 1: problems found (and recorded)
        call_command("mmsearch_reconcile", stdout=StringIO(), stderr=StringIO())
    with mock.patch("multimodal_search.services.health.find_drift", side_effect=AssertionError("walked")):
        html = admin_client.get(HEALTH).content.decode()
    counts = shown_counts(html)
    assert (counts["stale"], counts["never_indexed"], counts["orphans"]) == (2, 2, 0)  # as the live walk says
    assert (
        "not checked" not in html
        and "as the last walk of the catalogue found them, 0\xa0minutes ago (7 products" in html
    )

    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "DURABILITY": {**settings.MULTIMODAL_SEARCH["DURABILITY"], "LIVE_CHECK_PRODUCTS": 7},
    }
    html = admin_client.get(HEALTH).content.decode()
    assert 'id="health-checked"' not in html and shown_counts(html)["stale"] == 2  # walked for this view


def test_reindex_stale_in_a_large_catalogue_sends_the_walk_to_the_worker(
    admin_client, mixed_catalogue, test_queue, settings
):
    """Above ``LIVE_CHECK_PRODUCTS`` the button does not walk the catalogue in the request (17 s at
    100,000 products here): it sends one deep sweep to the worker's queue, which walks and queues."""
    from celery import current_app

    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "DURABILITY": {**settings.MULTIMODAL_SEARCH.get("DURABILITY", {}), "LIVE_CHECK_PRODUCTS": 6},
    }
    with mock.patch("multimodal_search.services.health.find_drift", side_effect=AssertionError("walked")):
        answer = admin_client.post(REINDEX, {"scope": "stale"}, follow=True)
    assert "The worker walks the catalogue (a deep sweep)" in answer.content.decode()
    assert services.queue_depth() == {test_queue: 1}
    with current_app.connection_for_write() as connection, connection.channel() as channel:
        message = channel.basic_get(test_queue, no_ack=True)
    assert message.headers["task"] == "multimodal_search.tasks.sweep_index_task"
    assert message.decode()[1] == {"deep": True}  # (args, kwargs, embed)
    assert IndexState.objects.filter(dirty=True, failed_at__isnull=True).count() == 1  # nothing marked here
