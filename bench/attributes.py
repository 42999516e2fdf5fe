"""What a retrain's attribute stage writes on a large catalogue: ``bench/attributes.py --products 5000``.

It runs on a database ``bench/search.py`` filled (``--data-dir``: copies of the Luma products with their
HNSW indexes built), with the attribute classifiers ``mmsearch_train`` fitted on the source catalogue
(``--source``, the same encoder version; copied in when the bench has none). For the first ``--products``
stored products, ``learning.attributes.APPLY_CHUNK`` at a time, it times the parts of the stage's last
step (``learning.attributes.apply_to_index``), which infers and writes every product's facets:

* ``read``: the chunk's stored rows, text vectors and photo vectors;
* ``infer``: the classifiers over them;
* ``write facets``: the facets into their own narrow table (``store.update_inferred``), as the code does;
* ``write rows``: the same facets merged into each product row's ``fields`` with ``bulk_update``, as the
  code before migration 0020 did: each row gets a new version, and each of its HNSW indexes a new entry.
  In a transaction that is rolled back, after the facets' write of the same chunk.

Results: ``bench/results/attributes-<products>.{json,md}``: products/s of each part, and the stage's
hours at 1,000,000 products at those rates.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from typing import Any

from search import ROOT, save, setup_django

MILLION = 1_000_000


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=5000, help="products to infer and write (default %(default)s)")
    parser.add_argument("--data-dir", default=".data/scale-bench", help="a data folder bench/search.py filled")
    parser.add_argument("--source", default=".data/scale-luma", help="the indexed Luma catalogue, trained")
    return parser.parse_args()


class _RolledBack(Exception):
    pass


def use_source_attributes(args: argparse.Namespace, model_id: str) -> Any:
    """The attribute classifiers of the source folder (same encoder version), copied in when the bench has none."""
    from multimodal_search import artefacts
    from multimodal_search.ranking import attributes

    target = artefacts.artefact_path(attributes.ARTEFACT)
    trained = ROOT / args.source / "models" / target.name
    if not target.exists() and trained.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trained, target)
    model = attributes.get_model(model_id)
    if model is None:
        raise SystemExit(f"No attribute classifiers for {model_id}: run mmsearch_train in {args.source} first.")
    return model


def write_rows(model_id: str, updated: dict[str, dict[str, Any]], fields: dict[str, dict[str, Any]]) -> None:
    """The write before migration 0020: the facets merged into the rows' fields (rolled back)."""
    from django.db import transaction

    from multimodal_search.models import ProductEmbedding
    from multimodal_search.store.pgvector import merged_fields

    try:
        with transaction.atomic():
            rows = list(
                ProductEmbedding.objects.filter(model_id=model_id, product_pk__in=list(updated)).only(
                    "pk", "product_pk"
                )
            )
            for row in rows:
                row.fields = merged_fields(fields[row.product_pk], updated[row.product_pk])
            ProductEmbedding.objects.bulk_update(rows, ["fields"], batch_size=500)
            raise _RolledBack
    except _RolledBack:
        pass


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from multimodal_search import services
    from multimodal_search.learning import attributes as learning
    from multimodal_search.ranking import attributes
    from multimodal_search.store import get_store

    store = get_store()
    model_id = services.current_model_id()
    model = use_source_attributes(args, model_id)
    pks = sorted(store.stored_pks(model_id))[: args.products]
    seconds: dict[str, list[float]] = {"read": [], "infer": [], "write facets": [], "write rows": []}
    for start in range(0, len(pks), learning.APPLY_CHUNK):
        chunk = pks[start : start + learning.APPLY_CHUNK]
        began = time.perf_counter()
        vectors = learning._photo_vectors(model_id, chunk)
        texts = store.text_vectors(model_id, chunk)
        rows = store.product_rows(model_id, chunk)
        read = time.perf_counter()
        empty = np.zeros((0, learning._photo_width(vectors)))
        updated = {
            pk: attributes.enrichment(fields, model.infer(vectors.get(pk, empty), texts.get(pk)), categories)
            for pk, (fields, categories) in rows.items()
        }
        inferred = time.perf_counter()
        store.update_inferred(model_id, updated)
        written = time.perf_counter()
        write_rows(model_id, updated, {pk: fields for pk, (fields, _) in rows.items()})
        done = time.perf_counter()
        for name, spent in zip(seconds, (read - began, inferred - read, written - inferred, done - written)):
            seconds[name].append(spent)
        print(
            f"  {start + len(chunk):,} of {len(pks):,}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items())
        )
    count = len(pks)
    rates = {name: count / sum(values) for name, values in seconds.items()}
    per_product = {name: sum(values) / count for name, values in seconds.items()}
    stage_now = per_product["read"] + per_product["infer"] + per_product["write facets"]
    stage_before = per_product["read"] + per_product["infer"] + per_product["write rows"]
    return {
        "products": count,
        "catalogue": store.count(model_id),
        "chunk": learning.APPLY_CHUNK,
        "products_per_second": {name: round(rate, 1) for name, rate in rates.items()},
        "chunk_seconds_median": {name: round(statistics.median(values), 3) for name, values in seconds.items()},
        "hours_at_a_million": {
            "stage now": round(stage_now * MILLION / 3600, 2),
            "stage before": round(stage_before * MILLION / 3600, 2),
        },
        "write_rows_over_write_facets": round(per_product["write rows"] / per_product["write facets"], 1),
    }


def table(results: dict[str, Any]) -> str:
    rates, hours = results["products_per_second"], results["hours_at_a_million"]
    lines = [
        f"{results['products']:,} of {results['catalogue']:,} products, chunks of {results['chunk']:,}",
        "",
        "| part | products/s |",
        "|---|---|",
        *(f"| {name} | {rate:,} |" for name, rate in rates.items()),
        "",
        f"Writing into the rows / into the facets' table: {results['write_rows_over_write_facets']}x. "
        f"The stage at 1,000,000 products: {hours['stage now']} h now, {hours['stage before']} h writing the rows.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    results = measure(args)
    markdown = table(results)
    save(f"attributes-{args.products}", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
