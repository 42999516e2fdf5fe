"""The keyword branch alone at catalogue sizes up to 1,000,000: ``bench/keywords.py --products 10000,100000,1000000``.

``bench/search.py`` cannot reach a million products on this machine (the photo-feature HNSW index
alone would take hours); the keyword branch needs no vectors, so this bench measures it where the
other cannot. Its own data folder (``--data-dir``, default ``.data/keyword-bench``) is filled with
copies of the Luma catalogue's keyword text, fields and categories (from ``--source``, as
``bench/search.py`` reads it), one-dimensional placeholder vectors and no HNSW index, under the
source's encoder version; the word table (migration 0016) is written by its triggers as in a shop.

Per size, for Luma's text queries as the search sends them (the shopper's synonyms and the
catalogue's expansions added; ``--queries``, each timed ``--repeat`` times, best kept), in one
transaction with the candidate statement's settings, p50 / p95 in ms of:

* ``branch``: ``store.sql.keyword_branch``, the statement's keyword branch as shipped;
* ``all words``: its half that takes the products having every typed word (``store.sql.all_words_matches``,
  with the common words the store sends it);
* ``all words, GIN only``: the same half always read from the GIN index (as before 2026-12-03);
* ``best matches``: its other half, the best matches of the OR query (``store.sql.best_matches``);

and how many products have every typed word (median and most, counted up to 100,000).
Results: ``bench/results/keywords-<sizes>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from search import ROOT, load_source, percentiles, prewarm, read_settings, save, setup_django

COUNT_CAP = 100_000


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", default="10000,100000,1000000", help="catalogue sizes, ascending")
    parser.add_argument("--source", default=".data/scale-luma", help="data folder of an indexed Luma catalogue")
    parser.add_argument("--data-dir", default=".data/keyword-bench", help="the bench's own data folder")
    parser.add_argument("--queries", type=int, default=60, help="Luma text queries timed (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="times each query is timed; the best is kept")
    parser.add_argument("--seed", type=int, default=5)
    return parser.parse_args()


def fill(meta: dict[str, Any], start: int, stop: int) -> None:
    """Rows ``start``..``stop - 1``: copies of the source's texts, fields and categories, in chunks."""
    from django.db import connection, transaction

    from multimodal_search.store import sql

    products = meta["products"]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS source (i int, text text, fields jsonb, categories varchar[])")
        cursor.execute("TRUNCATE source")
        cursor.executemany(
            "INSERT INTO source VALUES (%s, %s, %s, %s)",
            [(i, p["text"], json.dumps(p["fields"]), p["categories"]) for i, p in enumerate(products)],
        )
    chunk = 50_000
    for first in range(start, stop, chunk):
        last = min(stop, first + chunk) - 1
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {sql.PRODUCT_TABLE} (product_pk, model_id, content_hash, text_vector, fused_vector, "
                "image_count, categories, fields, search_text, updated_at) "
                "SELECT 'kw-' || g, %s, 'bench', '[1]', '[1]', 0, s.categories, s.fields, s.text, now() "
                "FROM generate_series(%s, %s) g JOIN source s ON s.i = g %% %s",
                [meta["model_id"], first, last, len(products)],
            )
        print(f"  filled {last + 1:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
    with connection.cursor() as cursor:
        for table in (sql.PRODUCT_TABLE, sql.TERM_TABLE):  # index-only scans need the visibility map
            cursor.execute(f"VACUUM ANALYZE {table}")


def searched_words(texts: list[str], model_id: str) -> list[tuple[str, str]]:
    """(words searched, words typed) of each query, as ``services.query.encode_query`` makes them."""
    from multimodal_search.ranking import expansion
    from multimodal_search.services import merchandising
    from multimodal_search.services.query import catalogue_expansions

    rules = merchandising.current_rules()
    found = []
    for text in texts:
        words = merchandising.expand(text, rules)
        words = expansion.expanded_text(words, catalogue_expansions(text, model_id, rules))
        found.append((words, text))
    return found


def statements(model_id: str, words: str, typed: str) -> dict[str, tuple[str, list[Any]]]:
    from multimodal_search.store import sql
    from multimodal_search.store.pgvector import common_words_in

    limit = 100  # the rows of a candidate branch (``FUSION["CANDIDATES"]``)
    rows = sql.KEYWORD_ALL_ROWS_FACTOR * limit
    common = common_words_in(typed)  # as the store sends them
    return {
        "branch": sql.keyword_branch(model_id, limit, [], words, typed, common),
        "all words": sql.all_words_matches(model_id, rows, [], words, typed, common),
        "all words, GIN only": sql.all_words_matches(model_id, rows, [], words, typed),
        "best matches": (sql.best_matches(model_id, rows), [words]),
    }


def time_queries(model_id: str, queries: list[tuple[str, str]], repeat: int) -> dict[str, dict[str, float]]:
    from django.db import connection, transaction

    best: dict[str, list[float]] = {}
    for words, typed in queries:
        for name, (statement, params) in statements(model_id, words, typed).items():
            times = []
            for _ in range(repeat):
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(read_settings(400))
                    started = time.perf_counter()
                    cursor.execute(statement, params)
                    cursor.fetchall()
                    times.append((time.perf_counter() - started) * 1000)
            best.setdefault(name, []).append(min(times))
    return {name: percentiles(values) for name, values in best.items()}


def matches_of_every_word(model_id: str, queries: list[tuple[str, str]]) -> dict[str, int]:
    from django.db import connection

    from multimodal_search.store import sql

    counts = []
    with connection.cursor() as cursor:
        for _, typed in queries:
            cursor.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {sql.PRODUCT_TABLE} WHERE model_id = %s "
                f"AND {sql.TSVECTOR} @@ {sql.TSQUERY_ALL} LIMIT {COUNT_CAP}) m",
                [model_id, typed],
            )
            counts.append(int(cursor.fetchone()[0]))
    return {"median": int(statistics.median(counts)), "most": max(counts)}


def table(results: dict[str, Any]) -> str:
    lines = [
        f"`{results['command']}` ({results['date']}; {results['queries']} queries, each the best of {results['repeat']})",
        "",
        "| products | branch p50 / p95 ms | all words | all words, GIN only | best matches "
        "| products having every typed word (median, most) |",
        "|---|---|---|---|---|---|",
    ]
    for size, run in results["sizes"].items():
        cells = [f"{run['timings'][n]['p50']:.1f} / {run['timings'][n]['p95']:.1f}" for n in run["timings"]]
        every = run["every_word"]
        lines.append(f"| {int(size):,} | {' | '.join(cells)} | {every['median']:,}, {every['most']:,} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    meta, _ = load_source(args)
    setup_django(args.data_dir)
    from django.core.management import call_command

    from multimodal_search.models import ProductEmbedding

    call_command("migrate", verbosity=0)
    model_id = meta["model_id"]
    rows = [json.loads(line) for line in (ROOT / args.source / "eval" / "queries.jsonl").open()]
    texts = sorted({r["query"] for r in rows if r["kind"] == "text"})
    texts = random.Random(args.seed).sample(texts, min(args.queries, len(texts)))
    results: dict[str, Any] = {
        "command": " ".join(["bench/keywords.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "queries": len(texts),
        "repeat": args.repeat,
        "sizes": {},
    }
    sizes = [int(s) for s in args.products.split(",")]
    name = "keywords-" + args.products.replace(",", "-")
    for size in sizes:
        have = ProductEmbedding.objects.filter(model_id=model_id).count()
        if have > size:
            sys.exit(f"{args.data_dir} already holds {have:,} rows: remove it to bench {size:,}")
        print(f"==> {size:,} products", flush=True)
        fill(meta, have, size)
        prewarm()  # bench/search.py's: the product and word tables and their indexes (no photos here)
        queries = searched_words(texts, model_id)
        time_queries(model_id, queries[:5], 1)  # warm up
        run = {
            "timings": time_queries(model_id, queries, args.repeat),
            "every_word": matches_of_every_word(model_id, queries),
        }
        results["sizes"][str(size)] = run
        print("  " + json.dumps(run), flush=True)
        save(name, results, table(results))
    print(table(results))


if __name__ == "__main__":
    main()
