"""The deep sweep's walk of the catalogue at large sizes: ``bench/sweep.py --products 100000,1000000``.

The deep sweep compares every searchable product's content hash (its text and its photos' bytes) with
the stored one, and looks for vectors of products that are gone. This bench fills its own data folder
(``--data-dir``, default ``.data/sweep-bench``) with shop products that have ``--photos`` photos each,
taken in turn from the Luma catalogue's photos (``--catalog``; the files stay there, the bench's media
folder links to them) and stored vectors whose content hashes are current (one-dimensional placeholder
vectors, no HNSW index: the walk reads none). One product in 100 is then changed behind the save
signals and one in 1,000 deleted. Per size it measures, each in a process of its own with ``DEBUG``
off (peak RSS, the encoder's models included):

* ``one walk``: ``services.find_drift()``, what ``mmsearch_reconcile`` and the health page run;
* ``in steps``: the deep sweep's steps (``services.sweeps.walk_step``) at ``--step-seconds`` each, until
  the walk ends, inside a transaction that is rolled back (the data folder stays as filled): how many
  steps, the longest, and the time in all.

Both must find the same drift. Results: ``bench/results/sweep-<sizes>.{json,md}``. The photos are read
from the page cache after the first walk, so the figures are of a warm machine; a shop whose photos are
on a network disk pays that disk's reads too.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

from search import ROOT, save, setup_django


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", default="100000,1000000", help="catalogue sizes, ascending")
    parser.add_argument("--catalog", default="../shared/datasets/magento-luma", help="the Luma catalogue (photos)")
    parser.add_argument("--data-dir", default=".data/sweep-bench", help="the bench's own data folder")
    parser.add_argument("--photos", type=int, default=4, help="photos per product (Luma has about 4)")
    parser.add_argument("--step-seconds", type=float, default=60.0, help="DURABILITY['STEP_SECONDS'] of the steps")
    parser.add_argument("--child", choices=["walk", "steps"], help=argparse.SUPPRESS)
    return parser.parse_args()


def link_photos(catalog: Path) -> list[str]:
    """The Luma photos as paths under the bench's media folder (a link to the catalogue's folder)."""
    from django.conf import settings

    source = (catalog / "pub" / "media" / "catalog" / "product").resolve()
    if not source.is_dir():
        sys.exit(f"no photos under {source}")
    media = Path(settings.MEDIA_ROOT)
    media.mkdir(parents=True, exist_ok=True)
    link = media / "luma"
    if not link.exists():
        link.symlink_to(source)
    return sorted(f"luma/{path.relative_to(source)}" for path in source.rglob("*.jpg"))


def fill(start: int, stop: int, photos: list[str], per_product: int) -> None:
    """Products ``start``..``stop - 1`` with their photos and current stored hashes, in chunks."""
    from multimodal_search.services import encoding
    from multimodal_search.services.query import current_encoder

    _encoder, model_id = current_encoder()
    chunk = 5000
    # the products share the catalogue's photo files: the fill reads each file once (the walks read them all)
    with mock.patch.object(encoding, "file_digest", functools.lru_cache(maxsize=None)(encoding.file_digest)):
        for first in range(start, stop, chunk):
            _fill_chunk(range(first, min(stop, first + chunk)), photos, per_product, model_id)


def _fill_chunk(ids: range, photos: list[str], per_product: int, model_id: str) -> None:
    from django.db import connection, transaction

    from multimodal_search.adapters import get_adapter
    from multimodal_search.services.indexing import current_hash
    from multimodal_search.store import sql
    from shop.catalog.models import Product, ProductImage

    adapter = get_adapter()
    with transaction.atomic():
        created = Product.objects.bulk_create(
            Product(sku=f"sweep-{i}", title=f"Product {i}", description=f"Walked product number {i}.") for i in ids
        )
        ProductImage.objects.bulk_create(
            ProductImage(product=product, image=photos[(i * per_product + n) % len(photos)], position=n)
            for i, product in zip(ids, created)
            for n in range(per_product)
        )
        products = adapter.get_queryset().filter(pk__in=[p.pk for p in created])
        rows = [(str(p.pk), model_id, current_hash(adapter, p, model_id)) for p in products]
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {sql.PRODUCT_TABLE} (product_pk, model_id, content_hash, text_vector, fused_vector, "
                "image_count, categories, fields, search_text, updated_at) "
                "VALUES (%s, %s, %s, '[1]', '[1]', 0, '{}', '{}', '', now())",
                rows,
            )
    print(f"  filled {ids[-1] + 1:,} products", flush=True)


def corrupt(after_pk: int) -> None:
    """Of the products after ``after_pk``, one in 100 changed behind the signals and one in 1,000 deleted
    (its vectors left behind)."""
    from shop.catalog.models import Product

    pks = list(Product.objects.filter(pk__gt=after_pk).order_by("pk").values_list("pk", flat=True))
    Product.objects.filter(pk__in=pks[50::100]).update(title="Changed behind the signals")
    Product.objects.filter(pk__in=pks[500::1000]).delete()


def child(kind: str, step_seconds: float) -> dict[str, Any]:
    """One measurement, in this process: seconds, the drift found, peak RSS."""
    from django.conf import settings
    from django.db import transaction

    from multimodal_search import services
    from multimodal_search.models import DriftCheck, DriftWalk
    from multimodal_search.services import sweeps
    from multimodal_search.services.query import current_encoder

    settings.DEBUG = False  # as in production: with DEBUG on, Django keeps the last 9,000 statements
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if kind == "walk":
        result["found"] = services.find_drift().counts()
    else:
        settings.MULTIMODAL_SEARCH = {
            **settings.MULTIMODAL_SEARCH,
            "DURABILITY": {**settings.MULTIMODAL_SEARCH.get("DURABILITY", {}), "STEP_SECONDS": step_seconds},
        }
        longest, steps = 0.0, 0
        with transaction.atomic():
            DriftWalk.objects.all().delete()  # a walk left under way: this one starts afresh
            more = True
            while more:
                began = time.perf_counter()
                more = sweeps.walk_step(resume=steps > 0).more
                longest = max(longest, time.perf_counter() - began)
                steps += 1
            check = DriftCheck.objects.get(model_id=current_encoder()[1])
            result["found"] = {name: getattr(check, name) for name in ("products", *services.Drift.COUNTED)}
            transaction.set_rollback(True)
        result.update(steps=steps, longest_step_s=round(longest, 2))
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def measure(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--data-dir", args.data_dir]
    command += ["--step-seconds", str(args.step_seconds)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), check=False)
    if done.returncode:
        sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def table(results: dict[str, Any]) -> str:
    lines = [
        "| products | one walk | peak RSS | in steps | steps (longest) | peak RSS | stale / orphans found |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, row in results["sizes"].items():
        walk, steps = row["walk"], row["steps"]
        lines.append(
            f"| {int(size):,} | {walk['seconds']:.0f} s | {walk['peak_rss_mb']} MB | {steps['seconds']:.0f} s "
            f"| {steps['steps']} ({steps['longest_step_s']:.0f} s) | {steps['peak_rss_mb']} MB "
            f"| {walk['found']['stale']} / {walk['found']['orphans']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    if args.child:
        print(json.dumps(child(args.child, args.step_seconds)))
        return
    from django.core.management import call_command

    from shop.catalog.models import Product

    sizes = [int(size) for size in args.products.split(",")]
    call_command("migrate", verbosity=0)
    photos = link_photos(Path(args.catalog))
    results: dict[str, Any] = {"args": vars(args), "sizes": {}}
    for size in sizes:
        have = Product.objects.filter(sku__startswith="sweep-").count()
        # deleted ones count: the next size starts after every product filled before
        filled = Product.objects.filter(sku__startswith="sweep-").order_by("-pk").values_list("sku", flat=True).first()
        start = int(filled.split("-")[1]) + 1 if filled else 0
        if start > size:
            sys.exit(f"{args.data_dir} already holds {have:,} products: remove it to bench {size:,}")
        print(f"{size:,} products", flush=True)
        before = Product.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        fill(start, size, photos, args.photos)
        corrupt(before)
        row = {"walk": measure(args, "walk")}
        row["steps"] = measure(args, "steps")
        if row["walk"]["found"] != row["steps"]["found"]:
            sys.exit(f"the steps found {row['steps']['found']}, one walk {row['walk']['found']}")
        results["sizes"][str(size)] = row
        print(table({"sizes": {str(size): row}}), flush=True)
    markdown = table(results)
    save(f"sweep-{'-'.join(str(size) for size in sizes)}", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
