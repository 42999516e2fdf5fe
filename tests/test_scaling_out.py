"""Scaling out (README "Scaling out"): queue routing on one broker, and search reads from a read replica.

Queue routing is checked in the broker itself (the Redis lists kombu writes, one per queue) and with a
real worker process that consumes only the bulk queue. The replica is a second database alias that
mirrors ``default`` (Django's ``TEST["MIRROR"]``, as ``DATABASE_REPLICA_URLS`` aliases are in tests):
a separate connection, so the queries each alias ran are told apart by their connection's log.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connections
from django.test.utils import CaptureQueriesContext

from multimodal_search import services
from multimodal_search.models import IndexState, ProductEmbedding
from multimodal_search.store import sql
from shop.routers import ReplicaRouter, replica_databases
from tests.factories import ProductFactory
from tests.worker import WorkerProcess, wait_for

ROOT = Path(__file__).resolve().parent.parent
CPU_QUEUE = "scaling-test-cpu"
GPU_QUEUE = "scaling-test-gpu"
REPLICA = "replica_test"


def _broker() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CELERY_BROKER_URL)


def _queued(queue: str) -> list[tuple[str, list[str]]]:
    """(task name, product pks) of each message waiting in ``queue`` (kombu's Redis list of that name)."""
    found = []
    for raw in reversed(_broker().lrange(queue, 0, -1)):  # LPUSH: oldest last
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], list(args[0])))
    return found


@pytest.fixture
def queues(settings: Any) -> Iterator[None]:
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "QUEUE": CPU_QUEUE, "BULK_QUEUE": GPU_QUEUE}
    _broker().delete(CPU_QUEUE, GPU_QUEUE)
    yield
    _broker().delete(CPU_QUEUE, GPU_QUEUE)


# --- queue routing ----------------------------------------------------------------------------------


def test_saves_go_to_the_queue_and_bulk_work_to_the_bulk_queue(queues: None) -> None:
    services.enqueue_index(["1", "2"], track=False)
    services.enqueue_index(["3", "4", "5"], batch_size=2, bulk=True)

    assert _queued(CPU_QUEUE) == [(services.enqueue.INDEX_TASK, ["1", "2"])]
    assert _queued(GPU_QUEUE) == [(services.enqueue.INDEX_TASK, ["3", "4"]), (services.enqueue.INDEX_TASK, ["5"])]


def test_bulk_work_falls_back_to_the_queue_without_a_bulk_queue(settings: Any, queues: None) -> None:
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "BULK_QUEUE": None}

    services.enqueue_index(["7"], bulk=True)

    assert _queued(CPU_QUEUE) == [(services.enqueue.INDEX_TASK, ["7"])]
    assert _queued(GPU_QUEUE) == []


@pytest.mark.django_db
def test_a_save_is_sent_to_the_latency_queue(
    settings: Any, queues: None, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": True}
    with django_capture_on_commit_callbacks(execute=True):
        product = ProductFactory(title="Trail backpack")

    assert _queued(CPU_QUEUE) == [(services.enqueue.INDEX_TASK, [str(product.pk)])]
    assert _queued(GPU_QUEUE) == []


@pytest.mark.django_db
def test_the_sweep_sends_to_the_latency_queue(queues: None) -> None:
    product = ProductFactory(title="Never indexed")  # AUTO_INDEX is off: only the deep sweep finds it

    report = services.sweep(deep=True)

    assert report.sent == 1
    assert _queued(CPU_QUEUE) == [(services.enqueue.INDEX_TASK, [str(product.pk)])]
    assert _queued(GPU_QUEUE) == []


@pytest.mark.django_db
def test_reindex_sends_the_catalogue_to_the_bulk_queue(queues: None) -> None:
    products = ProductFactory.create_batch(3)
    out = io.StringIO()

    call_command("mmsearch_reindex", "--no-wait", "--batch-size", "2", stdout=out)

    sent = [pk for _task, pks in _queued(GPU_QUEUE) for pk in pks]
    assert sorted(sent) == sorted(str(p.pk) for p in products)
    assert _queued(CPU_QUEUE) == []
    assert f"on queue {GPU_QUEUE!r}" in out.getvalue()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_bulk_queue_takes_only_bulk_work(queues: None, tmp_path: Path) -> None:
    """A worker started with ``-Q <bulk queue>`` (the GPU host) indexes a reindex and leaves saves alone."""
    first, *_others = ProductFactory.create_batch(4)
    services.enqueue_index([first.pk])  # a save's task: for the CPU workers
    worker = WorkerProcess(tmp_path / "gpu-worker.log", encoder="hash", args=("-Q", GPU_QUEUE)).start()
    try:
        out = io.StringIO()
        call_command("mmsearch_reindex", "--batch-size", "2", "--timeout", "120", stdout=out, stderr=io.StringIO())
        log = worker.log()
    finally:
        worker.stop()

    assert "Indexed 4 product(s) through the worker." in out.getvalue()
    assert ProductEmbedding.objects.filter(model_id=services.current_model_id()).count() == 4
    assert f".> {GPU_QUEUE} " in log and f".> {CPU_QUEUE} " not in log and ".> embeddings " not in log
    assert len(re.findall(r"index_products_task\[[^\]]+\] received", log)) == 2  # the two reindex tasks
    assert _queued(CPU_QUEUE) == [(services.enqueue.INDEX_TASK, [str(first.pk)])]  # still waiting


# --- read replicas ----------------------------------------------------------------------------------


def test_replica_databases_are_configured_like_default_and_mirror_it_in_tests() -> None:
    found = replica_databases(["postgres://shop:pw@replica-a:5432/shop", "postgres://shop:pw@replica-b:5433/shop"])

    assert list(found) == ["replica1", "replica2"]
    assert (found["replica1"]["HOST"], found["replica2"]["PORT"]) == ("replica-a", 5433)
    assert found["replica1"]["TEST"] == {"MIRROR": "default"}
    assert found["replica1"]["CONN_MAX_AGE"] == 0 and "statement_timeout" in found["replica1"]["OPTIONS"]["options"]


def test_router_reads_only_the_vector_tables_from_replicas(settings: Any) -> None:
    router = ReplicaRouter()
    settings.DATABASE_REPLICAS = []
    assert router.db_for_read(ProductEmbedding) is None  # no replicas: default

    settings.DATABASE_REPLICAS = ["replica1", "replica2"]
    assert {router.db_for_read(ProductEmbedding) for _ in range(50)} == {"replica1", "replica2"}
    assert router.db_for_read(IndexState) is None  # the outbox: the indexing path, on the primary
    assert router.db_for_write(ProductEmbedding) == "default"
    assert router.allow_migrate("replica1", "multimodal_search") is False
    assert router.allow_migrate("default", "multimodal_search") is None


def test_the_shop_settings_turn_the_router_on_from_the_environment(tmp_path: Path) -> None:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.DATABASE_REPLICAS, s.DATABASE_ROUTERS, s.DATABASES['replica2']['NAME']]))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "DJANGO_SECRET_KEY": "x",
        "MMSEARCH_DATA_DIR": str(tmp_path),
        "DATABASE_REPLICA_URLS": "postgres://a:b@r1/shop, postgres://a:b@r2/shop2",
    }
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [["replica1", "replica2"], ["shop.routers.ReplicaRouter"], "shop2"]


@pytest.fixture
def replica(settings: Any, transactional_db: None) -> Iterator[str]:
    """A second connection to the test database, as a ``TEST["MIRROR"]`` replica alias has, with the router on.

    The alias is created for this test only; it is left out of ``connections.settings`` once its
    connection exists, so Django's test case treats it as a dynamically created connection (allowed)
    rather than a configured alias the test did not ask for.
    """
    connections.settings[REPLICA] = {**connections["default"].settings_dict, "TEST": {"MIRROR": "default"}}
    connection = connections[REPLICA]
    del connections.settings[REPLICA]
    settings.DATABASE_REPLICAS = [REPLICA]
    settings.DATABASE_ROUTERS = ["shop.routers.ReplicaRouter"]
    yield REPLICA
    connection.close()
    del connections[REPLICA]


def _touches_vectors(queries: list[dict[str, Any]]) -> list[str]:
    return [q["sql"] for q in queries if sql.PRODUCT_TABLE in q["sql"] or sql.IMAGE_TABLE in q["sql"]]


def test_searches_read_the_vectors_from_the_replica(replica: str, pil_photo: Any) -> None:
    bag = ProductFactory(title="Trailblazer hiking backpack", description="Padded straps.", photos=["red"])
    bottle = ProductFactory(title="Steel water bottle", description="Keeps drinks cold.", photos=["blue"])
    services.index_products([bag.pk, bottle.pk])

    with (
        CaptureQueriesContext(connections[replica]) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        by_text = services.search_products("hiking backpack", k=2)
        by_photo = services.search_products(image=pil_photo("blue"), k=2)
        similar = services.similar_products(bag, k=1)

    assert by_text.hits[0].product_pk == str(bag.pk)
    assert by_photo.hits[0].product_pk == str(bottle.pk)
    assert [hit.product_pk for hit in similar] == [str(bottle.pk)]
    on_replica_sql = " ".join(_touches_vectors(on_replica.captured_queries))
    assert "SET LOCAL hnsw.ef_search" in " ".join(q["sql"] for q in on_replica.captured_queries)
    assert sql.PRODUCT_TABLE in on_replica_sql and sql.IMAGE_TABLE in on_replica_sql
    assert _touches_vectors(on_primary.captured_queries) == []  # the primary only served the product rows


def test_indexing_reads_and_writes_on_the_primary(replica: str) -> None:
    product = ProductFactory(title="Cork yoga mat")
    services.index_products([product.pk])
    product.title = "Cork yoga mat, 6 mm"
    product.save()

    with (
        CaptureQueriesContext(connections[replica]) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        report = services.index_products([product.pk])

    assert report.indexed == 1
    assert on_replica.captured_queries == []
    assert any("content_hash" in query for query in _touches_vectors(on_primary.captured_queries))


def test_behind_a_transaction_pooler_no_server_side_cursors_nor_startup_options(monkeypatch: Any) -> None:
    from shop import runtime

    monkeypatch.setenv("DATABASE_TRANSACTION_POOLER", "1")
    config = runtime.database_config("postgres://shop:pw@pgbouncer:6432/shop")

    assert config["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert "options" not in config["OPTIONS"]  # PgBouncer refuses an untracked `-c statement_timeout`
    monkeypatch.delenv("DATABASE_TRANSACTION_POOLER")
    assert not runtime.database_config("postgres://shop:pw@db/shop").get("DISABLE_SERVER_SIDE_CURSORS")


def test_the_compose_scale_profile_has_a_bulk_worker_and_a_replica() -> None:
    """docker-compose.yml parses, and its scale profile wires the queues (no Docker here to run it)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services_ = compose["services"]
    scale = sorted(name for name, service in services_.items() if "scale" in service.get("profiles", []))

    assert scale == ["db-replica", "worker-bulk"]
    assert "-Q embeddings,default" in services_["worker"]["command"]  # the latency-bound queue: CPU
    assert "-Q ${MMSEARCH_BULK_QUEUE:-embeddings-gpu}" in services_["worker-bulk"]["command"]
    assert services_["worker-bulk"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert "pg_basebackup -h db" in services_["db-replica"]["command"]
    assert "DATABASE_REPLICA_URLS" in services_["web"]["environment"]
    beats = [name for name, service in services_.items() if " beat " in str(service.get("command", ""))]
    assert beats == ["beat"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_children_of_a_worker_share_its_cores(tmp_path):
    """``--concurrency 2``: each prefork child gives torch half the cores (``services.prepare_pool``, from
    Celery's ``worker_init``), not every core each."""
    worker = WorkerProcess(tmp_path / "worker.log", encoder="hash", pool="prefork", args=("--concurrency", "2"))
    worker.start()
    try:
        threads = wait_for(lambda: _threads_logged(worker, 2), timeout=60, message="each child's torch threads")
    finally:
        worker.stop()
    assert threads == [max(1, len(os.sched_getaffinity(0)) // 2)] * 2, worker.log()


def _threads_logged(worker: WorkerProcess, children: int) -> list[int] | None:
    """Each child's torch threads, once ``children`` children have logged them (by pid)."""
    found = {pid: int(n) for n, pid in re.findall(r"indexing with (\d+) torch thread\(s\) \(pid (\d+)\)", worker.log())}
    return list(found.values()) if len(found) >= children else None
