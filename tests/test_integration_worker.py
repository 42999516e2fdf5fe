"""End to end on real parts: ORM save -> Redis -> Celery worker process -> pgvector -> API."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from multimodal_search.models import ImageEmbedding, ProductEmbedding
from tests.factories import ProductFactory
from tests.worker import WorkerProcess, purge_broker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CATALOGUE = [
    ("BAG-1", "Trailblazer hiking backpack", "A roomy backpack with padded straps for day hikes.", "red"),
    ("BTL-1", "Steel water bottle", "Keeps drinks cold for 24 hours.", "blue"),
    ("MAT-1", "Cork yoga mat", "Non-slip mat for yoga and pilates.", "green"),
    ("WCH-1", "Digital sports watch", "Waterproof wrist watch with stopwatch.", "black"),
]


@pytest.fixture
def search_settings_packaged(settings):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "ENCODER": "packaged", "AUTO_INDEX": True}
    purge_broker()
    yield
    purge_broker()


@pytest.fixture
def worker(tmp_path):
    process = WorkerProcess(tmp_path / "worker.log")
    yield process
    process.stop()


def _search(client, q, k=3):
    response = client.get("/api/search/", {"q": q, "k": k})
    assert response.status_code == 200, response.content
    return [item["sku"] for item in response.json()["results"]]


def test_saved_product_is_indexed_by_a_real_worker_and_found(client, search_settings_packaged, worker, photo):
    # saved while no worker runs: the task waits in Redis, nothing is lost
    with transaction.atomic():
        for sku, title, description, colour in CATALOGUE:
            ProductFactory(sku=sku, title=title, description=description, photos=[colour])
    time.sleep(1)
    assert ProductEmbedding.objects.count() == 0

    worker.start()
    wait_for(lambda: ProductEmbedding.objects.count() == len(CATALOGUE), message="worker to index the catalogue")
    assert ImageEmbedding.objects.count() == len(CATALOGUE)

    assert _search(client, "backpack for hiking")[0] == "BAG-1"
    assert _search(client, "wrist watch")[0] == "WCH-1"

    response = client.post("/api/search/", {"image": photo("green"), "k": 2})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["results"][0]["sku"] == "MAT-1"
    assert {"sku", "title", "url", "image", "score", "explanation"} <= set(body["results"][0])

    # saved while the worker runs: an edit is picked up, a delete disappears
    bottle = ProductFactory._meta.model.objects.get(sku="BTL-1")
    bottle.title = "Insulated coffee thermos"
    bottle.save()
    wait_for(lambda: _search(client, "coffee thermos", k=1) == ["BTL-1"], message="edited product to be re-indexed")
    ProductFactory._meta.model.objects.get(sku="BAG-1").delete()
    wait_for(lambda: "BAG-1" not in _search(client, "backpack", k=4), message="deleted product to leave the index")
    assert "Traceback" not in worker.log()
