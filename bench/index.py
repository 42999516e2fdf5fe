"""Indexing throughput: the full pipeline against the bare encoders, and a reindex for a new head.

``bench/index.py --products 300`` (``--products 0``: the whole Luma catalogue), in its own data folder
(``--data-dir``, default ``.data/index-bench``; never the demo's). It imports the first N Luma items
(``import_catalog --limit``) once, loads the configured encoder (warm-up, not timed) with the
indexing worker's torch threads (``INDEX_TORCH_THREADS``: every core unless set), then measures on the
same products, in one run:

Steps 1 and 2 alternate batch by batch (and which goes first), so both see the same load on a shared
machine and the same page cache.

1. **bare encoders**: decode every photo (``ImageRef.open``), ``encode_text`` of texts and title lines
   (one call) and ``encode_image_pair`` of the photos, batch by batch (``BATCH_SIZE``): the model work
   and nothing else;
2. **full pipeline, cold**: ``services.index_products(force=True)`` with no kept backbone outputs:
   claims, adapter reads, file digests, content hashes, encoding, colour palettes, attributes,
   fusion, writes (vectors, HNSW upkeep, the kept backbone outputs);
3. **reindex for a new head**: a new (random) head version published to a staging encoder, as
   ``mmsearch_train`` does before it publishes (``encoder.clone(head_path=...)``), then
   ``index_products`` of every product for the new ``model_id``: kept backbone outputs are reused,
   only the heads run; the new version's HNSW indexes are built after its rows are written
   (``services.indexes_built_after``, as ``mmsearch_train``), and the build is timed with the step.

``--train`` also runs the real ``mmsearch_train`` head stage (``projection.train_projection_head``,
``--epochs``) and times its "Indexing for the new head" step separately from the training.

Prints, and writes ``bench/results/index.json`` and ``index.md``: products/s and photos/s of each step,
the pipeline/bare ratio, the reindex/full-encode ratio, torch threads and the process's RSS (this
process is what a worker is: the same models and pipeline).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=300, help="Luma items to index (0: all; default 300)")
    parser.add_argument(
        "--catalog", default=os.environ.get("DEMO_CATALOG", str(ROOT.parent / "shared/datasets/magento-luma"))
    )
    parser.add_argument("--data-dir", default=".data/index-bench", help="the bench's own data folder")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: INDEX_TORCH_THREADS / all cores)"
    )
    parser.add_argument("--train", action="store_true", help="also time the real mmsearch_train head stage")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for --train (default 3)")
    parser.add_argument("--out", default="index", help="results file stem in bench/results (default %(default)s)")
    return parser.parse_args()


def setup_django(data_dir: str, threads: int) -> None:
    os.environ["MMSEARCH_DATA_DIR"] = str((ROOT / data_dir).resolve())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["MMSEARCH_AUTO_INDEX"] = "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        os.environ["MMSEARCH_INDEX_TORCH_THREADS"] = str(threads)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    current = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_catalogue(catalog: str, limit: int) -> None:
    from django.core.management import call_command

    from shop.catalog.models import Product

    call_command("migrate", verbosity=0)
    if not Product.objects.exists():
        args = [catalog] + (["--limit", str(limit)] if limit else [])
        call_command("import_catalog", *args, verbosity=0)


def products(limit: int) -> list[str]:
    from multimodal_search.adapters import get_adapter

    pks = [str(pk) for pk in get_adapter().get_queryset().order_by("pk").values_list("pk", flat=True)]
    return pks[:limit] if limit else pks


def bare_batch(adapter: Any, encoder: Any, chunk: list[Any]) -> int:
    """The encoders alone on a batch's texts, titles and photos (photos decoded as indexing does)."""
    texts = [adapter.get_text(p) for p in chunk] + [adapter.get_title(p) for p in chunk]
    images = []
    for product in chunk:
        for ref in adapter.get_images(product):
            try:
                images.append(ref.open())
            except Exception:
                continue
    encoder.encode_text(texts)
    if images:
        encoder.encode_image_pair(images)
    return len(images)


def bare_and_pipeline(encoder: Any, pks: list[str], batch: int) -> tuple[dict[str, float], dict[str, float]]:
    """Bare encoders and the full pipeline (nothing kept), batch after batch on the same products.

    Interleaved, so both see the same machine load (this bench shares its cores with other jobs).
    """
    from multimodal_search import services
    from multimodal_search.adapters import get_adapter
    from multimodal_search.models import ImageEmbedding

    adapter = get_adapter()
    rows = {str(p.pk): p for p in adapter.get_queryset().filter(pk__in=pks)}
    bare = {"seconds": 0.0, "photos": 0}
    full = {"seconds": 0.0, "indexed": 0, "failed_photos": 0}
    for number, start in enumerate(range(0, len(pks), batch)):
        chunk = pks[start : start + batch]
        # who goes first alternates: the second one finds the photo files in the page cache
        for step in ("bare", "pipeline") if number % 2 == 0 else ("pipeline", "bare"):
            began = time.perf_counter()
            if step == "bare":
                bare["photos"] += bare_batch(adapter, encoder, [rows[pk] for pk in chunk])
                bare["seconds"] += time.perf_counter() - began
            else:
                report = services.index_products(chunk, force=True)
                full["seconds"] += time.perf_counter() - began
                full["indexed"] += report.indexed
                full["failed_photos"] += len(report.failed_images)
        print(
            f"  {start + len(chunk)}/{len(pks)}: bare {bare['seconds']:.0f} s, pipeline {full['seconds']:.0f} s",
            flush=True,
        )
    full["photos"] = ImageEmbedding.objects.filter(model_id=encoder.model_id, product_pk__in=pks).count()
    return bare, full


def pipeline(pks: list[str], batch: int, encoder: Any) -> dict[str, float]:
    from multimodal_search import services
    from multimodal_search.models import ImageEmbedding

    started = time.perf_counter()
    report = services.IndexReport()
    for start in range(0, len(pks), batch):
        report.merge(services.index_products(pks[start : start + batch], force=True, encoder=encoder))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "indexed": report.indexed,
        "photos": ImageEmbedding.objects.filter(model_id=encoder.model_id, product_pk__in=pks).count(),
        "failed_photos": len(report.failed_images),
    }


def random_head(encoder: Any, folder: Path) -> Any:
    """A staging encoder with a new head version (random weights: indexing cost does not depend on them)."""
    import torch

    from multimodal_search.encoders.heads import ProjectionHead, save_head

    torch.manual_seed(int(time.time()))
    folder.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("bench-%Y%m%dT%H%M%S")
    path = folder / f"packaged-head-{version}.pt"
    save_head(path, ProjectionHead(out_dim=encoder.dimensions), version=version, config={})
    return encoder.clone(head_path=str(path), head_check_interval=3600)


def train(pks_total: int, epochs: int) -> dict[str, float]:
    """The real head stage of mmsearch_train; its reindex step timed apart from the training."""
    from multimodal_search import services
    from multimodal_search.learning import projection

    timing: dict[str, float] = {}

    def reindex(staging: Any) -> None:
        started = time.perf_counter()
        with services.indexes_built_after(staging):  # as the command's own reindex step
            for chunk in services.chunked_pks(missing_only=True, model_id=staging.model_id):
                services.index_products(chunk, encoder=staging)
        timing["reindex_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    projection.train_projection_head(epochs=epochs, reindex=reindex)
    timing["total_seconds"] = time.perf_counter() - started
    timing["products_per_s"] = pks_total / timing["reindex_seconds"]
    return timing


def main() -> None:
    args = parse()
    setup_django(args.data_dir, args.threads)
    from multimodal_search import services
    from multimodal_search.conf import search_settings
    from multimodal_search.store import get_store

    ensure_catalogue(args.catalog, args.products)
    threads = services.use_indexing_threads()
    import torch

    encoder, _ = services.query.current_encoder()
    warm = services.warm_up(force=True)
    pks = products(args.products)
    batch = int(search_settings.BATCH_SIZE)
    print(f"{len(pks)} products, batch {batch}, {threads} torch thread(s), warm-up {warm:.1f} s", flush=True)

    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "products": len(pks),
        "batch_size": batch,
        "torch_threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "model_id": encoder.model_id,
        "warm_up_seconds": warm,
    }
    get_store().drop_backbones(keep=[])  # a full encode: nothing kept yet
    result["bare"], result["pipeline"] = bare_and_pipeline(encoder, pks, batch)
    staging = random_head(encoder, ROOT / args.data_dir / "bench-heads")
    started = time.perf_counter()
    with services.indexes_built_after(staging):  # as mmsearch_train writes a new head's version
        result["new_head"] = {**pipeline(pks, batch, staging), "model_id": staging.model_id}
    result["new_head"]["seconds"] = time.perf_counter() - started  # the index build included
    print(f"reindex for a new head: {len(pks) / result['new_head']['seconds']:.2f} products/s", flush=True)
    get_store().drop_model(staging.model_id)
    if args.train:
        result["train"] = train(len(products(0)), args.epochs)
        print(f"mmsearch_train head stage: {result['train']}", flush=True)
    result["rss_mb"], result["peak_rss_mb"] = rss_mb()
    for step in ("bare", "pipeline", "new_head"):
        row = result[step]
        row["products_per_s"] = len(pks) / row["seconds"]
        row["photos_per_s"] = row["photos"] / row["seconds"]
    result["pipeline_vs_bare"] = result["pipeline"]["products_per_s"] / result["bare"]["products_per_s"]
    result["new_head_vs_full"] = result["new_head"]["seconds"] / result["pipeline"]["seconds"]
    report(result, args.out)


def report(result: dict[str, Any], stem: str) -> None:
    lines = [
        f"{result['products']} Luma products, batch {result['batch_size']}, {result['torch_threads']} torch "
        f"thread(s) on {result['cores']} cores (load average at start {result['load_average'][0]:.1f}), "
        f"{result['date']}, `{result['model_id']}`",
        "",
        "| Step | Seconds | Products/s | Photos/s |",
        "|---|---|---|---|",
    ]
    names = {
        "bare": "bare encoders (decode + text + photos)",
        "pipeline": "full indexing pipeline, nothing kept",
        "new_head": "reindex for a new head (kept backbones)",
    }
    for step, name in names.items():
        row = result[step]
        lines.append(f"| {name} | {row['seconds']:.1f} | {row['products_per_s']:.2f} | {row['photos_per_s']:.2f} |")
    lines += [
        "",
        f"* pipeline / bare encoders: **{result['pipeline_vs_bare']:.2f}**",
        f"* reindex for a new head / full encode: **{result['new_head_vs_full']:.1%}**",
        f"* worker RSS: {result['rss_mb']:.0f} MB (peak {result['peak_rss_mb']:.0f} MB); "
        f"warm-up {result['warm_up_seconds']:.1f} s",
    ]
    if "train" in result:
        t = result["train"]
        lines.append(
            f"* `mmsearch_train` head stage: {t['total_seconds']:.0f} s in all, of which indexing for the new "
            f"head {t['reindex_seconds']:.1f} s ({t['products_per_s']:.1f} products/s)"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float))
    (RESULTS / f"{stem}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
