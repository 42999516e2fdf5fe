"""Serving under load: bounded database connections, a statement timeout, gunicorn, one model copy per process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from tests.factories import photo_bytes

ROOT = Path(__file__).resolve().parent.parent

# Run in a subprocess with the test settings: 6 threads x 3 rounds of queries, then one slow statement.
PROBE = """
import json, threading
import django
django.setup()
from django.db import OperationalError, connection

pids, lock = set(), threading.Lock()

def work():
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.05)")
            pid = cursor.fetchone()[0]
        connection.close()  # back to the pool, or closed
        with lock:
            pids.add(pid)

threads = [threading.Thread(target=work) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with connection.cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    timeout = cursor.fetchone()[0]
try:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(3)")
    cancelled = ""
except OperationalError as error:
    cancelled = str(error).splitlines()[0]
print(json.dumps({"backends": len(pids), "timeout": timeout, "cancelled": cancelled}))
"""


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test settings, on this session's test database."""
    return {
        **{
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_POOL_SIZE", "DATABASE_STATEMENT_TIMEOUT") and not key.startswith("GUNICORN_")
        },
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJANGO_TEST_DB_NAME": connection.settings_dict["NAME"],
        "MMSEARCH_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        **extra,
    }


def probe(**env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=subprocess_env(**env), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_pool_bounds_connections_and_statements_time_out():
    pooled = probe(DATABASE_POOL_SIZE="2", DATABASE_STATEMENT_TIMEOUT="300ms")
    assert 1 <= pooled["backends"] <= 2  # 18 queries from 6 threads over at most 2 connections
    assert pooled["timeout"] == "300ms"
    assert "statement timeout" in pooled["cancelled"]
    unpooled = probe()  # no pool: a connection per use, closed after it (CONN_MAX_AGE=0)
    assert unpooled["backends"] > 2
    assert unpooled["timeout"] == "30s"  # the default


BEFORE_FORK = """
import json
import django
django.setup()
from django.db import connection
from multimodal_search import services

with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
pooled = bool(connection.pool)
services.before_fork()
print(json.dumps({"pooled": pooled, "pools_left": len(connection._connection_pools), "connection": repr(connection.connection)}))
"""


@pytest.mark.django_db
def test_before_fork_closes_the_connection_pool():
    result = subprocess.run(
        [sys.executable, "-c", BEFORE_FORK],
        cwd=ROOT,
        env=subprocess_env(DATABASE_POOL_SIZE="2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"pooled": True, "pools_left": 0, "connection": "None"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def database_connections(exclude: list[int]) -> int:
    """Client connections to the test database, less the test's own (an autovacuum or parallel worker on
    the same database is not one, and counting them could pass the bound the servers keep)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND NOT pid = ANY(%s)",
            [[*exclude, backend_pid()]],
        )
        return int(cursor.fetchone()[0])


@contextmanager
def gunicorn(tmp_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``shop/gunicorn_conf.py`` serving the test database on a free port (``env``: more settings), until it
    answers a search; its base URL and master process. Stopped afterwards."""
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 (open for the server's life)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "shop/gunicorn_conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=subprocess_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                if fetch(f"{base}/api/search/?q=warmup", timeout=60)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.5)
        yield base, server
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_concurrent_searches_within_the_connection_bound(tmp_path):
    media = Path(settings.MEDIA_ROOT) / "products"
    media.mkdir(parents=True, exist_ok=True)
    (media / "served.txt").write_text("a product photo")
    # the processes earlier tests started (workers, servers) may still be leaving: their connections would count
    deadline = time.monotonic() + 15
    while database_connections([]) and time.monotonic() < deadline:
        time.sleep(0.2)
    with gunicorn(tmp_path, GUNICORN_WORKERS="2", GUNICORN_THREADS="2", DEMO_SERVE_MEDIA="1") as (base, _server):
        peak, stop, own_pid = [0], threading.Event(), backend_pid()

        def watch() -> None:
            from django.db import connection as own

            while not stop.is_set():
                peak[0] = max(peak[0], database_connections([own_pid]))
                time.sleep(0.05)
            own.close()

        watcher = threading.Thread(target=watch)
        watcher.start()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: fetch(f"{base}/api/search/?q=hat+{i}")[0], range(48)))
        stop.set()
        watcher.join()

        assert Counter(statuses) == {200: 48}
        assert 1 <= peak[0] <= 4  # 2 workers x a pool of 2 (their thread count)
        status, body = fetch(f"{base}/static/admin/css/base.css")
        assert status == 200 and b"body" in body  # whitenoise, DEBUG off
        assert fetch(f"{base}/media/products/served.txt") == (200, b"a product photo")  # DEMO_SERVE_MEDIA
        assert fetch(f"{base}/media/../settings.py")[0] in (400, 404)  # never a file outside MEDIA_ROOT
        # a 5,000-character query reaches the API and gets its JSON answer, not gunicorn's HTML 414
        status, body = fetch(f"{base}/api/search/?q={'a' * 5000}")
        assert status == 400 and json.loads(body)["error"]["code"] == "max_length"


def shared_dirty_mb(pid: int) -> float:
    """Memory of a process that is written and shared with another process (for a gunicorn worker:
    pages of its master's, copy-on-write, that neither has written since the fork)."""
    lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    return sum(int(line.split()[1]) for line in lines if line.startswith("Shared_Dirty:")) / 1024


def post_photo(url: str, data: bytes) -> int:
    """POST a PNG as the form's ``image`` (multipart, as Django's test client writes it); the status."""
    body = encode_multipart(BOUNDARY, {"image": SimpleUploadedFile("q.png", data, "image/png")})
    request = urllib.request.Request(url, data=body, headers={"Content-Type": MULTIPART_CONTENT})
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status)


def worker_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The processes gunicorn's master forked (its workers)."""
    return [int(pid) for pid in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()]


#: gunicorn with the packaged models, loaded before the workers serve
PACKAGED = {"MMSEARCH_TEST_ENCODER": "packaged", "MMSEARCH_WARM_UP": "1"}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_share_the_models_their_master_loaded(tmp_path):
    real = {**PACKAGED, "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "2"}
    with gunicorn(tmp_path, **real) as (base, server):
        workers = worker_pids(server)
        with ThreadPoolExecutor(4) as pool:  # the CNN and MiniLM run in every forked worker
            photos = list(pool.map(lambda _: post_photo(f"{base}/api/search/", photo_bytes("red")), range(8)))
            texts = list(pool.map(lambda i: fetch(f"{base}/api/search/?q=red+hat+{i}")[0], range(8)))
        shared = [shared_dirty_mb(pid) for pid in workers]
    log = (tmp_path / "gunicorn.log").read_text()
    assert photos == [200] * 8 and texts == [200] * 8
    assert len(workers) == 2
    # torch and both models, written by the master before it forked, are still shared: 100 MB or
    # more each (about 500 with the packaged models); a worker that loads its own shares next to nothing
    assert min(shared) > 100, shared
    # loaded once, in the master; each worker then only runs them once (``post_worker_init``)
    assert re.search(rf"loaded on cpu in [\d.]+ s \(pid {server.pid}\)", log), log
    without = {**real, "GUNICORN_PRELOAD": "0", "GUNICORN_WORKERS": "1"}
    with gunicorn(tmp_path, **without) as (_base, server):
        workers = worker_pids(server)
        alone = shared_dirty_mb(workers[0])
    assert alone < 50, alone


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_preloaded_workers_that_run_torch_on_several_threads_answer(tmp_path):
    # torch's CPU threads are OpenMP's: a child forked from a master whose OpenMP threads had run blocks in
    # its first parallel operation, so with MMSEARCH_TORCH_THREADS above 1 every worker hung in its warm-up
    several = {**PACKAGED, "MMSEARCH_TORCH_THREADS": "2", "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "2"}
    with gunicorn(tmp_path, **several) as (base, server):
        photo = post_photo(f"{base}/api/search/", photo_bytes("red"))
        text = fetch(f"{base}/api/search/?q=red+hat")[0]
    log = (tmp_path / "gunicorn.log").read_text()
    assert (photo, text) == (200, 200)
    assert f"(pid {server.pid})" in log  # the models were still loaded in the master, and shared


@pytest.mark.slow
def test_concurrent_requests_share_one_copy_of_each_model(packaged_settings, pil_photo):
    from multimodal_search.encoders import get_encoder
    from multimodal_search.encoders.effnet import EfficientNetLite0
    from multimodal_search.encoders.text import MeanPooledText

    loads: Counter[str] = Counter()

    def counting(cls):
        original = cls._load

        def load(self):
            loads[cls.__name__] += 1
            return original(self)

        return mock.patch.object(cls, "_load", load)

    barrier = threading.Barrier(8)

    def search(_: int) -> int:
        barrier.wait()
        encoder = get_encoder()
        encoder.encode_image_pair([pil_photo("red")])
        encoder.encode_text(["red wool hat"])
        return id(encoder)

    with counting(EfficientNetLite0), counting(MeanPooledText), ThreadPoolExecutor(8) as pool:
        encoders = set(pool.map(search, range(8)))
    assert len(encoders) == 1
    assert loads == {"EfficientNetLite0": 1, "MeanPooledText": 1}
