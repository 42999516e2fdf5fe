"""A first indexing's writes with the HNSW indexes kept up row by row, against the rows first and the
indexes built once after them: ``python bench/first_index.py --products 2000``.

What ``mmsearch_reindex`` does on a store that holds no vectors yet (``indexes_after``), measured where
the writes are most of the work: the encoder is the tests' hash encoder (no model: what is left is
what a GPU host's worker spends besides the models), each product has one small photo. Each round
deletes every stored vector and index of the version, then indexes all products in batches of
``--batch-size`` in this process:

* ``kept up``: the indexes are created on the empty tables by the first batch (as a first task did
  before) and every row is inserted into them;
* ``after``: the rows are written without them, then ``mmsearch_indexes --build`` builds them
  (``services.rebuild_vector_indexes``, ``maintenance_work_mem`` 1 GB), timed with the writes.

The two alternate ``--rounds`` times. Its own data folder (``--data-dir``); results printed and written
to ``bench/results/first-index.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", default=".data/first-index-bench")
    return parser.parse_args()


def setup(data_dir: str) -> None:
    os.environ["MMSEARCH_DATA_DIR"] = str(Path(data_dir).resolve())
    os.environ["MMSEARCH_MEDIA_ROOT"] = str(Path(data_dir).resolve() / "media")  # the photos outlive the run
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")  # the hash encoder
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def products(count: int) -> list[str]:
    from shop.catalog.models import Product
    from tests.factories import ProductFactory

    have = list(Product.objects.order_by("pk").values_list("pk", flat=True)[:count])
    for number in range(len(have), count):  # SKUs of their own: the factory's sequence starts again each run
        have.append(ProductFactory(sku=f"BENCH-{number:07d}", photos=["red"]).pk)
    return [str(pk) for pk in have]


def clear(model_id: str) -> None:
    from multimodal_search.models import IndexState
    from multimodal_search.store import get_store, hnsw

    get_store().drop_model(model_id)
    hnsw.drop(model_id)
    IndexState.objects.all().delete()


def one_round(pks: list[str], batch: int, after: bool) -> dict[str, float]:
    from multimodal_search import services

    model_id = services.current_model_id()
    clear(model_id)
    started = time.perf_counter()
    for start in range(0, len(pks), batch):
        services.index_products(pks[start : start + batch], indexes_after=after)
    written = time.perf_counter() - started
    built = 0.0
    if after:
        began = time.perf_counter()
        services.rebuild_vector_indexes(memory="1GB")
        built = time.perf_counter() - began
    assert not services.missing_vector_indexes(model_id) and services.count_indexed(pks, model_id) == len(pks)
    return {"writes_s": round(written, 2), "build_s": round(built, 2), "total_s": round(written + built, 2)}


def main() -> None:
    args = parse()
    setup(args.data_dir)
    import logging

    logging.getLogger("multimodal_search").setLevel(logging.WARNING)  # no line per batch
    pks = products(args.products)
    rows: dict[str, list[dict[str, float]]] = {"kept up": [], "after": []}
    for round_ in range(args.rounds):
        for name in rows:
            rows[name].append(one_round(pks, args.batch_size, after=name == "after"))
            print(f"round {round_ + 1}, indexes {name}: {rows[name][-1]}", flush=True)
    medians = {name: statistics.median(row["total_s"] for row in found) for name, found in rows.items()}
    ratio = medians["kept up"] / medians["after"]
    print(
        f"{len(pks)} products, batches of {args.batch_size}: indexes kept up {medians['kept up']:.1f} s, "
        f"built after {medians['after']:.1f} s (median of {args.rounds}): {ratio:.1f}x"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = {"products": len(pks), "batch_size": args.batch_size, "rounds": rows, "ratio": round(ratio, 2)}
    (results / "first-index.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
