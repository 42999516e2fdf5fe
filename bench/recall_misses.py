"""Why the default search's recall against its exact self falls short, on a database ``bench/search.py`` filled.

    .venv/bin/python bench/recall_misses.py --data-dir .data/scale-1m-blend --text-queries 100 \
        [--ef-search 500] [--ef-construction 256]

For each text query (a seeded sample of the source's, as ``bench/search.py`` takes them): the default
search's top 10 and candidate pool, then the same search with the HNSW indexes dropped in a
transaction that is rolled back (its exact self, as ``bench/search.py``'s recall). Each product of the
exact top 10 that the search lacks is either

* **in its pool**: retrieved, but ranked under the tenth place (the re-ranker standardises each signal
  within the pool, so a pool that differs in a few rows moves near-ties), or
* **not in its pool**: one of its HNSW reads did not return it.

Prints one line per query and the totals: recall@10, misses of each kind, and the share of the exact
pool's products the approximate pool holds. Results: ``bench/results/recall-misses-<products>.json``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from search import (
    RESULTS,
    database_parser,
    queries,
    setup_django,
    use_search_overrides,
    use_source_reranker,
    without_hnsw,
)


def parse() -> argparse.Namespace:
    return database_parser(__doc__ or "", text_queries=100).parse_args()


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    overrides = use_search_overrides(args)

    from multimodal_search import services
    from multimodal_search.encoders import get_encoder
    from multimodal_search.services import search as search_service
    from multimodal_search.store import get_store

    model_id = get_encoder().model_id
    products = get_store().count(model_id)
    use_source_reranker(args, model_id)
    texts, _photos = queries(args)
    pools: list[list[str]] = []
    collect = search_service.collect_signals

    def capture(*a: Any, **kw: Any) -> Any:
        pool, signals = collect(*a, **kw)
        pools.append(list(pool))
        return pool, signals

    search_service.collect_signals = capture
    rows = []
    for text in texts:
        got = [hit.product_pk for hit in services.search_products(text, k=10).hits]
        approximate = set(pools[-1])
        with without_hnsw(model_id):
            want = [hit.product_pk for hit in services.search_products(text, k=10).hits]
            exact = set(pools[-1])
        missing = [pk for pk in want if pk not in got]
        row = {
            "query": text,
            "missing": len(missing),
            "in_pool": sum(pk in approximate for pk in missing),
            "pool_overlap": round(len(approximate & exact) / max(len(exact), 1), 4),
        }
        rows.append(row)
        print(
            f"{text[:32]:32} lacks {row['missing']} of 10 ({row['in_pool']} in its pool); "
            f"its pool holds {row['pool_overlap']:.1%} of the exact pool",
            flush=True,
        )
    missing = sum(r["missing"] for r in rows)
    in_pool = sum(r["in_pool"] for r in rows)
    summary = {
        "products": products,
        "queries": len(rows),
        "settings": overrides,
        "recall_at_10": round(1 - missing / (10 * len(rows)), 4),
        "missing": missing,
        "in_pool": in_pool,
        "not_in_pool": missing - in_pool,
        "pool_overlap_mean": round(sum(r["pool_overlap"] for r in rows) / len(rows), 4),
    }
    print(
        f"\n{products:,} products, {len(rows)} queries: recall@10 {summary['recall_at_10']:.3f}; {missing} missing, "
        f"{in_pool} in the pool (near-ties), {missing - in_pool} not returned by an HNSW read; "
        f"the pool holds {summary['pool_overlap_mean']:.1%} of the exact pool's products"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"recall-misses-{products}.json").write_text(json.dumps({**summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
