"""HNSW build parameters of the candidate pool's index: ``bench/hnsw_build.py --variants 16/128,32/128,32/256``.

The default search's recall against its exact self rests on the pool column's branch (300 rows,
``store.sql.POOL_ROWS_FACTOR``) searched at ``store.sql.POOL_EF_FACTOR`` x ``HNSW_EF_SEARCH``. A better
graph (larger ``m`` or ``ef_construction``) reaches the same recall at a smaller ``ef_search``, for a
longer build. This bench measures that trade on a database ``bench/search.py`` filled (``--data-dir``,
default ``.data/scale-bench``), without changing it: each ``m/ef_construction`` variant replaces the
pool column's index inside a transaction that is rolled back. The shipped parameters
(``store.sql.HNSW_M`` / ``HNSW_EF_CONSTRUCTION``) are rebuilt the same way first, so every build time
is of the same run.

Per variant and per pool depth factor (``--factors``), for ``--queries`` of Luma's text queries:

* ``build s`` and the index's size;
* ``pool recall``: the branch's rows (300) against the same read with index scans off;
* ``agreement``: the default search's top 10 against the same search with every HNSW index dropped
  (``bench/search.py``'s recall of the default search);
* p50 / p95 ms of the branch alone and of the default search (each query timed ``--repeat`` times).

Results: ``bench/results/hnsw-build-<size>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from search import K, load_source, percentiles, prewarm, queries, read_settings, save, setup_django, without_hnsw


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=".data/scale-luma", help="data folder of an indexed Luma catalogue")
    parser.add_argument("--data-dir", default=".data/scale-bench", help="a database bench/search.py filled")
    parser.add_argument("--variants", default="16/128,32/256,48/200", help="m/ef_construction pairs to compare")
    parser.add_argument("--factors", default="1,1.5,2", help="pool depth factors (POOL_EF_FACTOR) to measure")
    parser.add_argument("--queries", type=int, default=40, help="Luma text queries (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="times each query is timed")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.text_queries, args.photo_queries = args.queries, 0  # for bench/search.py's queries()
    return args


def pool_rows(vector: Any, model_id: str, ef_search: int | None) -> list[str]:
    """The pool column's branch as the candidate statement reads it (None: exact, index scans off)."""
    from django.db import connection, transaction

    from multimodal_search.conf import search_settings
    from multimodal_search.store import sql
    from multimodal_search.store.base import POOL_COLUMN

    rows = sql.branch_rows(POOL_COLUMN, int(search_settings.FUSION["CANDIDATES"]))
    statement = sql.nearest_branch(POOL_COLUMN, len(vector), model_id, rows, False)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(read_settings(ef_search))
        cursor.execute(statement, [sql.to_literal(vector)])
        return [row[0] for row in cursor.fetchall()]


def top(text: str) -> list[str]:
    from multimodal_search import services

    return [hit.product_pk for hit in services.search_products(text, k=K).hits]


def measure(texts: list[str], vectors: dict[str, Any], truth: dict[str, Any], model_id: str, args: Any) -> dict:
    from multimodal_search.conf import search_settings
    from multimodal_search.store import sql

    shipped, out = sql.POOL_EF_FACTOR, {}
    try:
        for factor in [float(f) for f in args.factors.split(",")]:
            sql.POOL_EF_FACTOR = factor
            ef = sql.branch_ef_search(1, 1, int(search_settings.HNSW_EF_SEARCH))
            pool = [
                len(set(pool_rows(vectors[t], model_id, ef)) & truth["pool"][t]) / len(truth["pool"][t]) for t in texts
            ]
            agree = [len(set(top(t)) & truth["search"][t]) / K for t in texts]
            branch, search = [], []
            for _ in range(args.repeat):
                for text in texts:
                    started = time.perf_counter()
                    pool_rows(vectors[text], model_id, ef)
                    branch.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    top(text)
                    search.append((time.perf_counter() - started) * 1000)
            out[str(factor)] = {
                "ef_search": ef,
                "pool_recall": statistics.mean(pool),
                "agreement": statistics.mean(agree),
                "branch": percentiles(branch),
                "search": percentiles(search),
            }
            print(f"    factor {factor}: " + json.dumps(out[str(factor)]), flush=True)
    finally:
        sql.POOL_EF_FACTOR = shipped
    return out


def rebuilt(model_id: str, dims: int, m: int, ef_construction: int) -> tuple[float, int]:
    """Inside the caller's transaction: the pool column's index rebuilt with these parameters (seconds, bytes)."""
    from django.db import connection

    from multimodal_search.store import sql
    from multimodal_search.store.base import POOL_COLUMN

    shipped = sql.index_name(sql.PRODUCT_TABLE, POOL_COLUMN, model_id)
    name = sql.index_name(sql.PRODUCT_TABLE, POOL_COLUMN, model_id, m=m, ef_construction=ef_construction)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '2GB'; SET LOCAL max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        cursor.execute(f"DROP INDEX {shipped}")
        cursor.execute(sql.index_statement(sql.PRODUCT_TABLE, POOL_COLUMN, model_id, dims, m, ef_construction))
        seconds = time.perf_counter() - started
        cursor.execute("SELECT pg_relation_size(%s)", [name])
        return seconds, int(cursor.fetchone()[0])


def table(results: dict[str, Any]) -> str:
    lines = [
        f"`{results['command']}` ({results['date']}; {results['products']:,} products, {results['queries']} "
        f"queries, each timed {results['repeat']} times)",
        "",
        "| m / ef_construction | build s | size MB | factor (ef_search) | pool recall | agreement "
        "| branch p50 / p95 ms | default search p50 / p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, run in results["variants"].items():
        for factor, row in run["factors"].items():
            lines.append(
                f"| {label} | {run['build_s']:.0f} | {run['bytes'] / 2**20:.0f} | {factor} ({row['ef_search']}) "
                f"| {row['pool_recall']:.3f} | {row['agreement']:.3f} "
                f"| {row['branch']['p50']:.1f} / {row['branch']['p95']:.1f} "
                f"| {row['search']['p50']:.1f} / {row['search']['p95']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    meta, _ = load_source(args)
    setup_django(args.data_dir)
    import torch
    from django.conf import settings
    from django.db import transaction
    from django.test.utils import override_settings

    from multimodal_search import services
    from multimodal_search.encoders import get_encoder
    from multimodal_search.models import ProductEmbedding
    from multimodal_search.store import sql

    torch.set_num_threads(1)
    override_settings(MULTIMODAL_SEARCH={**settings.MULTIMODAL_SEARCH, "QUERY_VECTORS": 0}).enable()
    model_id = meta["model_id"]
    products = ProductEmbedding.objects.filter(model_id=model_id).count()
    if not products:
        sys.exit(f"{args.data_dir} holds no products of {model_id}: fill it with bench/search.py first")
    texts, _ = queries(args)
    prewarm()
    services.warm_up(force=True)
    encoder = get_encoder()
    vectors = {text: encoder.encode_text([text])[0] for text in texts}
    dims = len(next(iter(vectors.values())))
    print(f"==> {products:,} products, {len(texts)} queries: the exact truths", flush=True)
    for text in texts[:3]:  # warm up: connections, caches
        top(text)
    truth: dict[str, Any] = {"pool": {t: set(pool_rows(vectors[t], model_id, None)) for t in texts}}
    with without_hnsw(model_id):
        truth["search"] = {t: set(top(t)) for t in texts}
    results: dict[str, Any] = {
        "command": " ".join(["bench/hnsw_build.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "products": products,
        "queries": len(texts),
        "repeat": args.repeat,
        "shipped": f"{sql.HNSW_M}/{sql.HNSW_EF_CONSTRUCTION}",
        "variants": {},
    }
    variants = [results["shipped"]] + [v for v in args.variants.split(",") if v != results["shipped"]]
    for variant in variants:
        m, ef_construction = (int(part) for part in variant.split("/"))
        label = f"{m} / {ef_construction}" + (" (shipped)" if variant == results["shipped"] else "")
        with transaction.atomic():
            seconds, size = rebuilt(model_id, dims, m, ef_construction)
            print(f"  {label}: built in {seconds:.0f} s ({size / 2**20:.0f} MB)", flush=True)
            run = {"build_s": seconds, "bytes": size, "factors": measure(texts, vectors, truth, model_id, args)}
            transaction.set_rollback(True)  # the database keeps its own index
        results["variants"][label] = run
        save(f"hnsw-build-{products}", results, table(results))
    print(table(results))


if __name__ == "__main__":
    main()
