"""Encoder throughput per batch size and precision, GPU or CPU: ``bench/gpu.py --device cuda``.

What an indexing worker's encoding step does, on the first ``--products`` Luma items (read from the
catalogue folder, no database): texts and title lines through MiniLM in one call, photos through
EfficientNet-Lite0 (with the mirrored view) and the trained heads (a random head of the same shape
unless ``--head``), colour descriptors. For each batch size (products per batch):

* photos are decoded off the critical path: a thread pool (``--decode-threads``) opens the next
  batch's photos (JPEG ``draft`` decoding at reduced scale, ``imaging.open_image``) and computes their
  colour palettes, as indexing does, while the model runs on the current one;
* the encoder is warmed up first (one batch, not timed);
* products/s and photos/s are printed, and the seconds of each step (waiting for the photos, the
  text model, the photos' preparation + CNN + colour histograms, the heads); with ``--precision fp16``
  / ``bf16`` (autocast, CUDA by default) the mean and minimum cosine of the vectors to the fp32 ones of
  the same products.

``--processes 1,4,8`` also runs the fp32 configurations in several processes at once, each with its own
models on the device, ``cores / N`` torch threads and its share of the products: what a Celery worker
with ``--concurrency N`` does on one GPU. A process's photos are prepared on the CPU (decoding,
padding, colour histograms) under one GIL, so one process leaves most of a GPU host's cores idle;
products/s there is all the processes' products over the time from the first one's start to the last
one's end.

The run stops starting new configurations after ``--seconds`` (default 270, so it ends in under five
minutes). ``--device cpu --products 16 --batch-sizes 4,16`` runs (slowly) on a CPU.

A GPU machine often holds torch and transformers but not the app's stack (Django, Celery) nor the
catalogue: ``--export-items DIR`` writes the products (``items.jsonl``) with copies of their photos to a
folder and stops; ``--items DIR`` then reads that folder on the GPU machine instead of the catalogue.
Results: ``bench/results/gpu-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    parser.add_argument(
        "--catalog", default=os.environ.get("DEMO_CATALOG", str(ROOT.parent / "shared/datasets/magento-luma"))
    )
    parser.add_argument("--products", type=int, default=512, help="products per configuration (default 512)")
    parser.add_argument("--batch-sizes", default="16,64,256", help="products per batch (default %(default)s)")
    parser.add_argument("--precision", default="", help="fp32,fp16,bf16 (default: all three on CUDA, fp32 on CPU)")
    parser.add_argument("--decode-threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--processes", default="1", help="encoding processes at once, e.g. 1,4,8 (default 1; >1 runs fp32 only)"
    )
    parser.add_argument("--head", help="a trained head file (default: a random head of the same shape)")
    parser.add_argument("--seconds", type=float, default=270.0, help="start no configuration after this")
    parser.add_argument("--items", help="read the products from a folder --export-items wrote (no catalogue needed)")
    parser.add_argument("--export-items", metavar="DIR", help="write the products and their photos to DIR, then stop")
    return parser.parse_args()


def read_products(catalog: str, limit: int) -> list[tuple[str, str, list[Path]]]:
    """(text, title line, photo paths) of the first ``limit`` Luma items with a photo."""
    from shop.catalog.importers.luma import read_luma

    items = []
    for record in read_luma(Path(catalog)):
        photos = [path for path, _kind in record.images]
        if photos:
            facts = ", ".join(part for part in (record.color, record.category or "", record.gender) if part)
            items.append((f"{record.title} {record.description}", f"{record.title}. {facts}", photos))
        if len(items) >= limit:
            break
    return items


def export_items(items: list[tuple[str, str, list[Path]]], folder: Path) -> None:
    """``folder/items.jsonl`` (text, title, photo names) and ``folder/photos/``: what ``--items`` reads."""
    import shutil

    (folder / "photos").mkdir(parents=True, exist_ok=True)
    with open(folder / "items.jsonl", "w") as out:
        for text, title, photos in items:
            names = []
            for path in photos:
                shutil.copyfile(path, folder / "photos" / path.name)
                names.append(path.name)
            out.write(json.dumps({"text": text, "title": title, "photos": names}) + "\n")
    print(f"{len(items)} products written to {folder}")


def load_items(folder: Path, limit: int) -> list[tuple[str, str, list[Path]]]:
    with open(folder / "items.jsonl") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    if len(rows) < limit:  # again from the start: nothing is kept between batches, every photo is decoded again
        print(f"{folder} holds {len(rows)} products: taking them again up to {limit}", flush=True)
    picked = [rows[index % len(rows)] for index in range(limit)] if rows else []
    return [(row["text"], row["title"], [folder / "photos" / name for name in row["photos"]]) for row in picked]


def open_photos(paths: list[Path]) -> list[Any]:
    """Each photo decoded, and its colour palette computed, as ``services.encoding`` does for every photo
    it has not kept yet (the palette is kept per photo; the bench throws it away)."""
    from multimodal_search.imaging import PhotoError, open_image
    from multimodal_search.ranking.colour import colour_distribution

    images = []
    for path in paths:
        try:
            image = open_image(str(path), max_pixels=40_000_000, max_aspect=20)
        except (OSError, PhotoError) as exc:  # indexing skips such photos too
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        colour_distribution(image)
        images.append(image)
    return images


def batches(
    items: list[tuple[str, str, list[Path]]],
    size: int,
    pool: ThreadPoolExecutor,
    stages: dict[str, float] | None = None,
) -> Iterator[tuple[list[str], list[Any]]]:
    """(texts + titles, decoded photos) per batch; the next batch's photos decode while this one is encoded.
    ``stages["decode wait"]`` adds up the time spent waiting for a batch's photos."""

    def submit(chunk: list[tuple[str, str, list[Path]]]) -> list[Future[list[Any]]]:
        # one task per product: the pool decodes several products' photos at once
        return [pool.submit(open_photos, photos) for _t, _ti, photos in chunk]

    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    pending = submit(chunks[0]) if chunks else []
    for index, chunk in enumerate(chunks):
        current = pending
        pending = submit(chunks[index + 1]) if index + 1 < len(chunks) else []
        waited = time.perf_counter()
        images = [image for future in current for image in future.result()]
        if stages is not None:
            stages["decode wait"] = stages.get("decode wait", 0.0) + time.perf_counter() - waited
        yield [text for text, _ti, _p in chunk] + [title for _t, title, _p in chunk], images


def encode(
    encoder: Any, texts: list[str], images: list[Any], stages: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Text vectors and photo vectors; ``stages`` adds up the seconds of each step (each ends with its
    results copied to the host, so a GPU's work is counted in the step that queued it)."""
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        if stages is not None:
            stages[name] = stages.get(name, 0.0) + now - clock[0]
        clock[0] = now

    text_vectors = encoder.encode_text(texts)
    lap("text")
    backbone = encoder.encode_image_backbone(images)
    lap("photos: prepare + CNN + colour")
    shared, features = encoder.project_images(backbone)
    lap("heads")
    return text_vectors, shared, features


def cosine(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    values = (a * b).sum(axis=1)
    return float(values.mean()), float(values.min())


def random_head() -> str:
    """A head file of the packaged shape with random weights (seed 0), in a temporary folder: its path."""
    import torch

    from multimodal_search.encoders.heads import ProjectionHead, save_head

    torch.manual_seed(0)
    head = str(Path(tempfile.mkdtemp()) / "random-head.pt")
    save_head(head, ProjectionHead(), version="bench-random", config={})
    return head


def make_encoder(device: str, head: str, precision: str, sizes: list[int]) -> Any:
    from multimodal_search.encoders.packaged import PackagedEncoder

    largest = max(sizes)
    return PackagedEncoder(
        device=device,
        head_path=head,
        precision=precision,
        batch_size=max(32, 2 * largest),
        image_batch_size=max(16, 4 * largest),
    )


def warm_up(encoder: Any, items: list[tuple[str, str, list[Path]]], size: int, pool: ThreadPoolExecutor) -> None:
    for texts, images in batches(items[:size], size, pool):
        encode(encoder, texts, images)  # weights, kernels, allocator


def timed_run(
    encoder: Any, items: list[tuple[str, str, list[Path]]], size: int, pool: ThreadPoolExecutor, cuda: bool
) -> tuple[float, float, int, dict[str, float]]:
    """(wall-clock start, end, photos, seconds per step) of encoding ``items`` in batches of ``size``."""
    import torch

    photos = 0
    stages: dict[str, float] = {}
    if cuda:
        torch.cuda.synchronize()
    begin = time.time()
    for texts, images in batches(items, size, pool, stages):
        encode(encoder, texts, images, stages)
        photos += len(images)
    if cuda:
        torch.cuda.synchronize()
    return begin, time.time(), photos, stages


def make_row(
    precision: str, size: int, products: int, seconds: float, photos: int, stages: dict[str, float]
) -> dict[str, Any]:
    return {
        "precision": precision,
        "batch_size": size,
        "products": products,
        "seconds": round(seconds, 2),
        "products_per_s": round(products / seconds, 2),
        "photos_per_s": round(photos / seconds, 2),
        "stage_seconds": {name: round(value, 2) for name, value in stages.items()},
    }


def process_worker(
    index: int, count: int, items: list[Any], sizes: list[int], device: str, head: str, decode_threads: int,
    start: Any, results: Any,
) -> None:  # fmt: skip
    """One of ``count`` encoding processes (started with spawn: CUDA is initialised here, never inherited)."""
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // count))
    encoder = make_encoder(device, head, "fp32", sizes)
    share = items[index::count]
    with ThreadPoolExecutor(max_workers=max(1, decode_threads // count), thread_name_prefix="decode") as pool:
        warm_up(encoder, share, min(sizes), pool)
        for size in sizes:
            start.wait()  # every process starts each batch size together
            results.put((index, size, *timed_run(encoder, share, size, pool, device.startswith("cuda"))))


def run_processes(
    count: int, items: list[Any], sizes: list[int], device: str, head: str, decode_threads: int
) -> list[dict[str, Any]]:
    """``count`` processes encoding their shares of ``items`` at once: one row per batch size."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(count), context.Queue()
    workers = [
        context.Process(
            target=process_worker, args=(index, count, items, sizes, device, head, decode_threads, start, results)
        )
        for index in range(count)
    ]
    for worker in workers:
        worker.start()
    rows = []
    try:
        for size in sizes:
            runs = [results.get(timeout=600) for _ in workers]
            stages: dict[str, float] = {}
            for *_head, run_stages in runs:  # each step's seconds, summed over the processes
                for name, value in run_stages.items():
                    stages[name] = stages.get(name, 0.0) + value
            seconds = max(run[3] for run in runs) - min(run[2] for run in runs)
            row = make_row("fp32", size, len(items), seconds, sum(run[4] for run in runs), stages)
            row["processes"] = count
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
    return rows


def main() -> None:
    args = parse()
    if args.export_items:
        export_items(read_products(args.catalog, args.products), Path(args.export_items))
        return
    import torch

    from multimodal_search.encoders.base import resolve_device

    device = resolve_device(None if args.device == "auto" else args.device)
    cuda = device.startswith("cuda")
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    precisions = args.precision.split(",") if args.precision else (["fp32", "fp16", "bf16"] if cuda else ["fp32"])
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    counts = [int(count) for count in args.processes.split(",")]
    head = args.head or random_head()
    items = load_items(Path(args.items), args.products) if args.items else read_products(args.catalog, args.products)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    print(
        f"{len(items)} products, device {device} ({name}), precisions {precisions}, batch sizes {sizes}, "
        f"processes {counts}",
        flush=True,
    )

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    reference: dict[int, tuple[np.ndarray, ...]] = {}
    with ThreadPoolExecutor(max_workers=args.decode_threads, thread_name_prefix="decode") as pool:
        for precision in precisions if 1 in counts else []:
            encoder = make_encoder(device, head, precision, sizes)
            warm = time.perf_counter()
            warm_up(encoder, items, min(sizes), pool)
            print(f"{precision}: warm-up {time.perf_counter() - warm:.1f} s", flush=True)
            # the same first products in every precision: their vectors are compared with fp32's
            check = encode(encoder, *next(batches(items[: min(sizes)], min(sizes), pool)))
            if precision == "fp32":
                reference[0] = check
            for size in sizes:
                if time.perf_counter() - started > args.seconds:
                    print(f"time budget spent: batch size {size} ({precision}) skipped", flush=True)
                    continue
                begin, end, photos, stages = timed_run(encoder, items, size, pool, cuda)
                row = make_row(precision, size, len(items), end - begin, photos, stages)
                row["processes"] = 1
                if precision != "fp32" and 0 in reference:
                    for label, ours, theirs in zip(("text", "shared", "features"), check, reference[0]):
                        row[f"cos_{label}"] = [round(value, 5) for value in cosine(ours, theirs)]
                if cuda:
                    row["max_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
                rows.append(row)
                print(json.dumps(row), flush=True)
            del encoder
    for count in counts:
        if count == 1:
            continue
        if time.perf_counter() - started > args.seconds:
            print(f"time budget spent: {count} processes skipped", flush=True)
            continue
        rows += run_processes(count, items, sizes, device, head, args.decode_threads)
    report(rows, device, name)


def report(rows: list[dict[str, Any]], device: str, name: str) -> None:
    lines = [
        f"`bench/gpu.py` on {name}, {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        "| Processes | Precision | Batch (products) | Products/s | Photos/s "
        "| cos to fp32 (text / shared / features: mean, min) | Seconds: decode wait / text / photos / heads |",
        "|---|---|---|---|---|---|---|",
    ]
    stage_names = ("decode wait", "text", "photos: prepare + CNN + colour", "heads")
    for row in rows:
        cos = " / ".join(
            f"{row[key][0]:.4f}, {row[key][1]:.4f}" for key in ("cos_text", "cos_shared", "cos_features") if key in row
        )
        stages = " / ".join(f"{row['stage_seconds'].get(name, 0.0):.2f}" for name in stage_names)
        lines.append(
            f"| {row['processes']} | {row['precision']} | {row['batch_size']} | {row['products_per_s']} | {row['photos_per_s']} "
            f"| {cos or '–'} | {stages} |"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "gpu-" + ("cuda" if device.startswith("cuda") else "cpu")
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / f"{stem}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
