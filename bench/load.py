"""Load test of a running store: N clients x T seconds of mixed text and photo searches while products are saved.

Usage (against the server ``make demo`` started, with the same MMSEARCH_DATA_DIR / DATABASE_URL):
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --clients 16 --seconds 60 [--photos DIR]

Each client thread loops: a text search (GET /api/search/?q=...) or, with probability --photo-share,
a photo search (multipart POST of a Luma photo, from --photos or DEMO_CATALOG). Meanwhile a saver
thread edits a product through the ORM every --save-interval seconds (its title gains or loses a
suffix, so the worker re-indexes it), and a poller counts PostgreSQL client connections
(pg_stat_activity) every 0.1 s, less this script's own. At the end the script prints requests/s,
p50/p95/max latency per kind, errors by status, saves made, the peak number of connections and the
server's max_connections, and the memory of the gunicorn processes serving --url (proportional and
resident, when found in /proc). Every edited title is restored. The exit status is 1 when any request failed.

API throttling counts every client of one IP address together: start the server with
DJANGO_API_THROTTLE_ANON=off DJANGO_API_THROTTLE_USER=off DJANGO_API_THROTTLE_PHOTO=off to measure capacity, not the limiter.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXT_QUERIES = [
    "red jacket",
    "women's yoga pants",
    "black running shorts",
    "hoodie with zipper",
    "blue tank top for men",
    "waterproof jacket",
    "green t-shirt",
    "gym bag",
    "white sneakers",
    "warm fleece pullover",
    "orange sports bra",
    "purple leggings",
]
SUFFIX = " (load test)"


class Results:
    """Latencies and statuses per kind of request, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, kind: str, status: str, seconds: float) -> None:
        with self.lock:
            self.statuses[kind][status] += 1
            if status == "200":
                self.latencies[kind].append(seconds)


def multipart(fields: dict[str, str], file_field: str, path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{path.name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + path.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request(req: urllib.request.Request, timeout: float) -> str:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            response.read()
            return str(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return str(error.code)
    except (OSError, urllib.error.URLError) as error:
        return type(error).__name__


def client(url: str, photos: list[Path], share: float, deadline: float, results: Results, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        if photos and rng.random() < share:
            body, content_type = multipart({"k": "10"}, "image", rng.choice(photos))
            req = urllib.request.Request(
                f"{url}/api/search/", data=body, headers={"Content-Type": content_type}, method="POST"
            )
            kind = "photo"
        else:
            query = urllib.parse.urlencode({"q": rng.choice(TEXT_QUERIES), "k": 10})
            req = urllib.request.Request(f"{url}/api/search/?{query}")
            kind = "text"
        started = time.monotonic()
        status = request(req, timeout=60)
        results.add(kind, status, time.monotonic() - started)


def own_backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def poll_connections(stop: threading.Event, own: set[int], peak: dict[str, int]) -> None:
    from django.db import connection

    own.add(own_backend_pid())
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        peak["max_connections"] = int(cursor.fetchone()[0])
    while not stop.is_set():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND NOT pid = ANY(%s)",
                [sorted(own)],
            )
            total, active = cursor.fetchone()
        peak["connections"] = max(peak.get("connections", 0), int(total))
        peak["active"] = max(peak.get("active", 0), int(active))
        time.sleep(0.1)
    connection.close()


def save_products(stop: threading.Event, interval: float, own: set[int], saved: Counter[str], seed: int) -> None:
    from django.apps import apps
    from django.db import connection

    product_model = apps.get_model("catalog", "Product")
    own.add(own_backend_pid())
    rng = random.Random(seed)
    pks = list(product_model.objects.filter(active=True).values_list("pk", flat=True))
    touched: set[Any] = set()
    try:
        while pks and not stop.wait(interval):
            product = product_model.objects.get(pk=rng.choice(pks))
            if product.title.endswith(SUFFIX):
                product.title = product.title[: -len(SUFFIX)]
            else:
                product.title += SUFFIX
                touched.add(product.pk)
            product.save()
            saved["saves"] += 1
    finally:
        for product in product_model.objects.filter(pk__in=touched, title__endswith=SUFFIX):
            product.title = product.title[: -len(SUFFIX)]
            product.save()
        connection.close()


def gunicorn_memory_mb(url: str) -> tuple[float, float] | None:
    """Memory (MB) of the gunicorn processes bound to ``url``'s address, from /proc: the sum of their
    resident sets, which counts a page each of them shares once per process (a preloading master's
    models in every worker), and the sum of their proportional sets (``Pss``: a shared page split among
    the processes sharing it), the memory they really take."""
    address = urllib.parse.urlsplit(url).netloc
    masters = []
    processes: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        processes[int(entry.name)] = (parent, cmdline)
        if any("gunicorn" in part for part in cmdline) and any(address in part for part in cmdline):
            masters.append(int(entry.name))
    if not masters:
        return None
    group = set(masters) | {pid for pid, (parent, _) in processes.items() if parent in masters}
    totals = {"Rss:": 0, "Pss:": 0}
    for pid in group:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, *value = line.split()
                if name in totals:
                    totals[name] += int(value[0])
        except (OSError, ValueError, IndexError):
            continue
    return totals["Rss:"] / 1024, totals["Pss:"] / 1024


def find_photos(folder: Path, limit: int, seed: int) -> list[Path]:
    photos = sorted(path for path in folder.rglob("*.jpg") if path.is_file())
    random.Random(seed).shuffle(photos)
    return photos[:limit]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--photo-share", type=float, default=0.3, help="share of photo searches (0..1)")
    parser.add_argument(
        "--photos", type=Path, default=None, help="folder of JPEG photos (default: DEMO_CATALOG's Luma photos)"
    )
    parser.add_argument("--save-interval", type=float, default=0.5, help="seconds between product saves (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    import django

    django.setup()
    from django.conf import settings

    photo_dir = args.photos or Path(settings.DEMO_CATALOG)
    photos = find_photos(photo_dir, 200, args.seed) if args.photo_share > 0 else []
    if args.photo_share > 0 and not photos:
        print(f"error: no .jpg photos under {photo_dir}; pass --photos DIR or --photo-share 0", file=sys.stderr)
        return 2
    url = args.url.rstrip("/")
    if request(urllib.request.Request(f"{url}/api/search/?q=warmup"), timeout=120) != "200":
        print(f"error: {url}/api/search/ does not answer 200; is the server running?", file=sys.stderr)
        return 2

    results, stop = Results(), threading.Event()
    own: set[int] = set()
    peak: dict[str, int] = {}
    saved: Counter[str] = Counter()
    memory_before = gunicorn_memory_mb(url)
    helpers = [threading.Thread(target=poll_connections, args=(stop, own, peak))]
    if args.save_interval > 0:
        helpers.append(threading.Thread(target=save_products, args=(stop, args.save_interval, own, saved, args.seed)))
    for thread in helpers:
        thread.start()
    started = time.monotonic()
    deadline = started + args.seconds
    clients = [
        threading.Thread(target=client, args=(url, photos, args.photo_share, deadline, results, args.seed + i))
        for i in range(args.clients)
    ]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    elapsed = time.monotonic() - started
    stop.set()
    for thread in helpers:
        thread.join()
    memory_after = gunicorn_memory_mb(url)

    total = sum(sum(counter.values()) for counter in results.statuses.values())
    print(f"{args.clients} clients x {args.seconds:.0f} s against {url}: {total} requests, {total / elapsed:.1f} req/s")
    errors: Counter[str] = Counter()
    for kind in sorted(results.statuses):
        counter = results.statuses[kind]
        ok = results.latencies[kind]
        errors.update({f"{kind} {status}": n for status, n in counter.items() if status != "200"})
        print(
            f"  {kind:5s} {sum(counter.values()):6d} requests  {len(ok) / elapsed:6.1f}/s  "
            f"p50 {percentile(ok, 0.5) * 1000:7.0f} ms  p95 {percentile(ok, 0.95) * 1000:7.0f} ms  "
            f"max {max(ok, default=float('nan')) * 1000:7.0f} ms  mean {statistics.fmean(ok or [0]) * 1000:6.0f} ms"
        )
    print("  errors: " + (", ".join(f"{key}: {n}" for key, n in sorted(errors.items())) or "none"))
    print(f"  product saves during the run: {saved['saves']}")
    print(
        f"  PostgreSQL client connections (less this script's): peak {peak.get('connections', 0)}, "
        f"peak active {peak.get('active', 0)}, max_connections {peak.get('max_connections', '?')}"
    )
    if memory_before is not None and memory_after is not None:
        print(
            f"  gunicorn memory, proportional (resident): {memory_before[1]:.0f} ({memory_before[0]:.0f}) MB before, "
            f"{memory_after[1]:.0f} ({memory_after[0]:.0f}) MB after"
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
