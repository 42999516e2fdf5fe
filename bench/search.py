"""Search latency and recall at catalogue sizes a shop has: ``bench/search.py --products 10000,100000``.

1. Source vectors: the Luma catalogue indexed with the configured (packaged) encoder in its own data
   folder (``--source``, default ``.data/scale-luma``; see README "Performance" for the three commands
   that make it). They are read once into ``<data-dir>/source.npz``.
2. Per size, the bench's own data folder (``--data-dir``, default ``.data/scale-bench``; never the
   demo's) is filled with perturbed copies of those products (each vector a mix of two real ones plus
   noise, renormalised; the real keyword text, fields and categories, plus one category holding 1% of
   the products and one holding 0.1%), with one shop product per row, and the HNSW indexes are built.
3. For Luma's text queries and photo queries, with 1, 4 and 16 clients (threads): the query encoder
   alone, one raw HNSW query (``store.nearest``), an exact scan (the same with index scans off), the
   plain kNN and every method of the search service, and the HTTP API (Django test client). p50/p95
   in ms and as ratios to raw HNSW p95 + encoder p95 of the same run.
4. Recall@10 against exact for the raw HNSW query (the same read with index scans off) and for the
   default search (the same search with the HNSW indexes dropped in a rolled-back transaction, so only
   the vector branches change), overall and inside the 1% and 0.1% categories, and whether every
   filtered query returned a full page. ``EXPLAIN ANALYZE`` of the first-stage statement of the default search.
5. Judged relevance at the bench's size: nDCG@10 and P@10 of the default search for Luma's judged text
   queries (``--judged-queries`` of them), a copy counting as relevant as the product it copies, so a
   change of the candidate pool can be judged where the pool is a small part of the catalogue (on
   Luma's 463 products it is most of it).

At 1,000,000 products this machine builds a text search only: ``--hnsw-columns title_vector,pool_vector``
(the two columns the default text search reads; the photo features' index alone would take hours),
``--raw-column pool_vector`` as the baseline's read, ``--modes text`` and ``--jobs`` without the methods
whose columns stay unindexed; ``--blend`` makes rows that do not gather in tight groups of copies (README
"Performance"). Tables larger than the server's shared buffers are read into the page cache, their
indexes into the buffers.

Results: ``bench/results/search-<sizes>[-blend].json``, ``.md`` (the README table) and
``search-explain-<size>.txt``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
K = 10
NOISE = 0.5  # cos(copy, its mix of two real products) is about 1 / sqrt(1 + NOISE^2) = 0.89
PRODUCT_COLUMNS = ("text_vector", "title_vector", "image_vector", "fused_vector")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--products", default="10000,100000", help="catalogue sizes, ascending (default %(default)s)")
    parser.add_argument("--source", default=".data/scale-luma", help="data folder of an indexed Luma catalogue")
    parser.add_argument("--data-dir", default=".data/scale-bench", help="the bench's own data folder")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--repeat", type=int, default=1, help="time each query this many times (steadier p95)")
    parser.add_argument("--text-queries", type=int, default=20)
    parser.add_argument("--photo-queries", type=int, default=10)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--m", type=int, help="override MULTIMODAL_SEARCH['HNSW_M'] (indexes built by the bench)")
    parser.add_argument(
        "--ef-construction", type=int, help="override MULTIMODAL_SEARCH['HNSW_EF_CONSTRUCTION'] (as --m)"
    )
    parser.add_argument("--ef-search", type=int, help="override MULTIMODAL_SEARCH['HNSW_EF_SEARCH']")
    parser.add_argument(
        "--judged-queries", type=int, default=400, help="judged text queries for nDCG@10 at each size (0: none)"
    )
    parser.add_argument("--fill-only", action="store_true", help="fill and index, measure nothing")
    parser.add_argument(
        "--blend",
        action="store_true",
        help="each row's vectors mix its product with two random others (random weights, its own the largest): "
        "no tight group of copies per product, which HNSW finds hard to tell apart at 1,000,000 (a fresh --data-dir)",
    )
    parser.add_argument(
        "--hnsw-columns",
        help="build only these HNSW indexes, e.g. text_vector,title_vector,pool_vector (those a text search "
        "reads): the photo features' index alone takes hours at 1,000,000 here (default: all)",
    )
    parser.add_argument("--modes", default="text,photo", help="query kinds timed (default %(default)s)")
    parser.add_argument(
        "--warm-pass",
        action="store_true",
        help="run every timed job once on every query before timing: the pages they read are then cached, as "
        "on a server that has been answering them (where the tables and indexes exceed the memory)",
    )
    parser.add_argument(
        "--raw-column",
        default="text_vector",
        help="the column of the text queries' raw HNSW read, the baseline (default %(default)s; pool_vector is "
        "the default search's first branch)",
    )
    parser.add_argument(
        "--jobs",
        help="what is timed, e.g. encoder,hnsw,plain,rerank,lexical,api (default: all; leave out the methods "
        "whose columns --hnsw-columns leaves unindexed, and exact, which scans every row each time)",
    )
    parser.add_argument("--export", metavar="NPZ", help=argparse.SUPPRESS)  # internal: runs in the source folder
    return parser.parse_args()


def use_search_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Apply, for the rest of the process, the search settings a bench run uses, and return them: every
    query encoded every time, as a query new to the process is (no query-vector memo), and the
    ``--ef-search`` / ``--m`` / ``--ef-construction`` given. Django must be set up."""
    from django.conf import settings
    from django.test.utils import override_settings

    overrides: dict[str, Any] = {"QUERY_VECTORS": 0}
    for name, value in (
        ("HNSW_EF_SEARCH", args.ef_search),
        ("HNSW_M", args.m),
        ("HNSW_EF_CONSTRUCTION", args.ef_construction),
    ):
        if value:
            overrides[name] = value
    override_settings(MULTIMODAL_SEARCH={**settings.MULTIMODAL_SEARCH, **overrides}).enable()
    return overrides


def database_parser(doc: str, text_queries: int) -> argparse.ArgumentParser:
    """The arguments of a script that reads a database this bench filled (``bench/search_phases.py``,
    ``bench/recall_misses.py``): its folder, the source's queries and the settings it was built with."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data-dir", default=".data/scale-bench", help="a data folder bench/search.py filled")
    parser.add_argument("--source", default=".data/scale-luma", help="the indexed Luma catalogue (queries)")
    parser.add_argument("--text-queries", type=int, default=text_queries)
    parser.add_argument("--photo-queries", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=5, help="the query sample's seed (as bench/search.py)")
    parser.add_argument("--ef-search", type=int, help="override MULTIMODAL_SEARCH['HNSW_EF_SEARCH']")
    parser.add_argument("--m", type=int, help="as the bench run that built the indexes")
    parser.add_argument("--ef-construction", type=int, help="as the bench run that built the indexes")
    return parser


def setup_django(data_dir: str) -> None:
    os.environ["MMSEARCH_DATA_DIR"] = str((ROOT / data_dir).resolve())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["MMSEARCH_AUTO_INDEX"] = "0"
    os.environ.setdefault("DATABASE_STATEMENT_TIMEOUT", "0")  # index builds and exact scans at 1M take long
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the embedded server this starts holds the hot set of 100,000 products (tables, HNSW indexes and
    # the keyword branch's word table, about 3.9 GB): the machine's page cache does not keep it between
    # runs here (see prewarm)
    os.environ.setdefault("MMSEARCH_PG_SHARED_BUFFERS", "5GB")
    for scope in ("ANON", "USER", "PHOTO"):  # the bench measures the search, not the rate limits
        os.environ[f"DJANGO_API_THROTTLE_{scope}"] = "off"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- 1. source vectors --------------------------------------------------------------------------


def export(path: Path) -> None:
    """Every stored product and photo of the current encoder version, as arrays."""
    from multimodal_search.encoders import get_encoder
    from multimodal_search.models import ImageEmbedding, ProductEmbedding
    from multimodal_search.store import get_store
    from multimodal_search.store.pgvector import as_array

    model_id = get_encoder().model_id
    merged = get_store().product_rows(model_id)  # the fields with the inferred facets over them
    rows = list(ProductEmbedding.objects.filter(model_id=model_id).order_by("product_pk"))
    if not rows:
        sys.exit(f"No vectors for {model_id} in {os.environ['MMSEARCH_DATA_DIR']}: index the Luma catalogue first.")
    dims = as_array(rows[0].text_vector).size
    arrays: dict[str, Any] = {}
    for column in PRODUCT_COLUMNS:
        vectors = [getattr(row, column) for row in rows]
        arrays[column] = np.stack([as_array(v) if v is not None else np.full(dims, np.nan) for v in vectors])
    photos = {pk: [] for pk in (row.product_pk for row in rows)}  # type: dict[str, list[ImageEmbedding]]
    for photo in ImageEmbedding.objects.filter(model_id=model_id).order_by("product_pk", "position"):
        photos.setdefault(photo.product_pk, []).append(photo)
    first = [photos[row.product_pk][0] if photos[row.product_pk] else None for row in rows]
    fdims = next(as_array(p.feature_vector).size for p in first if p is not None)
    arrays["feature_vector"] = np.stack([as_array(p.feature_vector) if p else np.full(fdims, np.nan) for p in first])
    arrays["shared_vector"] = np.stack([as_array(p.shared_vector) if p else np.full(dims, np.nan) for p in first])
    from shop.catalog.models import Product

    skus = dict(Product.objects.filter(pk__in=[row.product_pk for row in rows]).values_list("pk", "sku"))
    meta = [
        {
            "pk": row.product_pk,
            "sku": skus.get(int(row.product_pk), ""),
            "text": row.search_text,
            "fields": merged[row.product_pk][0],
            "categories": row.categories,
        }
        for row in rows
    ]
    np.savez(path, meta=json.dumps({"model_id": model_id, "products": meta}), **arrays)


def load_source(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = ROOT / args.data_dir / "source.npz"
    if path.exists() and "sku" not in json.loads(str(np.load(path)["meta"]))["products"][0]:
        path.unlink()  # written before the judged relevance (5.) needed the SKUs: read it again
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MMSEARCH_DATA_DIR": str((ROOT / args.source).resolve())}
        subprocess.run([sys.executable, __file__, "--export", str(path), "--source", args.source], check=True, env=env)
    data = np.load(path)
    return json.loads(str(data["meta"])), {key: data[key] for key in data.files if key != "meta"}


# --- 2. filling ---------------------------------------------------------------------------------


def _mix(source: np.ndarray, picks: np.ndarray, weights: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Rows ``sum_k weights[:, k] * source[picks[:, k]]`` plus noise, at unit length; a row whose own
    product (``picks[:, 0]``) has no such vector stays NaN (another's missing one counts as zeros).
    ``weights`` None: a perturbed copy, its own product and up to 30% of the other, drawn per column."""
    if weights is None:
        share = rng.uniform(0.0, 0.3, (len(picks), 1)).astype(np.float32)
        weights = np.hstack([1 - share, share])
    vectors = weights[:, [0]] * source[picks[:, 0]]
    for k in range(1, picks.shape[1]):
        vectors = vectors + weights[:, [k]] * np.nan_to_num(source[picks[:, k]])
    vectors += NOISE * rng.standard_normal(vectors.shape).astype(np.float32) / np.sqrt(vectors.shape[1])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _picks(ids: np.ndarray, count: int, blend: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Which real products each row mixes (its own, ``ids % count``, first) and with what weights: a
    perturbed copy (one other, weights drawn by :func:`_mix`), or with ``blend`` two others, random
    (Dirichlet) weights with its own the largest (about 0.61 on average)."""
    own = ids % count
    if not blend:
        return np.stack([own, rng.integers(0, count, len(ids))], 1), None
    weights = -np.sort(-rng.dirichlet(np.ones(3), len(ids)), axis=1).astype(np.float32)
    return np.stack([own, rng.integers(0, count, len(ids)), rng.integers(0, count, len(ids))], 1), weights


def fill(
    meta: dict[str, Any], source: dict[str, np.ndarray], start: int, stop: int, seed: int, blend: bool = False
) -> None:
    """Products ``start``..``stop - 1``: shop rows and their vectors (COPY), in chunks; each row has the
    keyword text, fields and categories of its own product (:func:`_picks`)."""
    from django.db import connection, transaction
    from pgvector import HalfVector
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    from multimodal_search.ranking.vocabulary import INFERRED_FIELDS
    from multimodal_search.store import sql
    from multimodal_search.store.base import pool_vector
    from shop.catalog.models import Product

    model_id, products = meta["model_id"], meta["products"]
    # a product's own fields in its row, what the attribute classifiers inferred in its facets row
    stated = [{k: value for k, value in item["fields"].items() if k not in INFERRED_FIELDS} for item in products]
    inferred = [{k: item["fields"].get(k) for k in INFERRED_FIELDS} for item in products]
    rng = np.random.default_rng(seed + start)
    chunk = 5000
    for first in range(start, stop, chunk):
        ids = np.arange(first, min(stop, first + chunk))
        picks, weights = _picks(ids, len(products), blend, rng)
        bases = picks[:, 0]
        mixed = {column: _mix(source[column], picks, weights, rng) for column in source}
        with transaction.atomic():
            created = Product.objects.bulk_create(
                Product(sku=f"bench-{i}", title=products[b]["fields"].get("title", "") or f"Product {i}")
                for i, b in zip(ids, bases)
            )
            pks = [str(p.pk) for p in created]
            connection.ensure_connection()
            raw = connection.connection
            assert raw is not None
            register_vector(raw)
            now = datetime.now(UTC)
            with (
                raw.cursor() as cursor,
                cursor.copy(
                    f"COPY {sql.PRODUCT_TABLE} (product_pk, model_id, content_hash, text_vector, title_vector, image_vector, "
                    "fused_vector, pool_vector, image_count, categories, fields, search_text, updated_at) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(
                    [
                        "varchar",
                        "varchar",
                        "varchar",
                        *["halfvec"] * 5,
                        "int4",
                        "varchar[]",
                        "jsonb",
                        "text",
                        "timestamptz",
                    ]
                )
                for n, (i, b) in enumerate(zip(ids, bases)):
                    item = products[b]
                    categories = [*item["categories"], f"bench-1pct-{i % 100}", f"bench-01pct-{i % 1000}"]
                    vectors = [
                        None if np.isnan(mixed[c][n]).any() else HalfVector(mixed[c][n]) for c in PRODUCT_COLUMNS
                    ]
                    parts = [None if v is None else v.to_numpy() for v in vectors[:3]]  # text, title, photos
                    vectors.append(HalfVector(pool_vector(*parts)))
                    copy.write_row(
                        [pks[n], model_id, "bench", *vectors, 1, categories, Jsonb(stated[b]), item["text"], now]
                    )
            with (
                raw.cursor() as cursor,
                cursor.copy(
                    f"COPY {sql.FACETS_TABLE} (product_pk, model_id, inferred) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["varchar", "varchar", "jsonb"])
                for n, b in enumerate(bases):
                    if any(value is not None for value in inferred[b].values()):
                        copy.write_row([pks[n], model_id, Jsonb(inferred[b])])
            with (
                raw.cursor() as cursor,
                cursor.copy(
                    f"COPY {sql.IMAGE_TABLE} (product_pk, model_id, image_key, position, feature_vector, shared_vector) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["varchar", "varchar", "varchar", "int4", "halfvec", "halfvec"])
                for n, i in enumerate(ids):
                    if not np.isnan(mixed["feature_vector"][n]).any():
                        features, shared = HalfVector(mixed["feature_vector"][n]), HalfVector(mixed["shared_vector"][n])
                        copy.write_row([pks[n], model_id, f"{i}.jpg", 0, features, shared])
        print(f"  filled {ids[-1] + 1:,} products", flush=True)


def build_indexes(model_id: str, dims: int, fdims: int, columns: list[str] | None = None) -> float:
    """Creates the missing HNSW indexes (all of them after `store.hnsw.drop`, or only those of ``columns``);
    seconds taken."""
    from django.db import connection

    from multimodal_search.store import sql
    from multimodal_search.store.pgvector import PgvectorStore

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 2")
        for table, column in sql.vector_columns() if columns else []:
            if column in columns:
                print(f"  building {column}'s HNSW index", flush=True)
                cursor.execute(
                    sql.index_statement(table, column, model_id, fdims if column == "feature_vector" else dims)
                )
    if not columns:
        PgvectorStore().ensure_indexes(model_id, dims, fdims, any_size=True)  # at any size: the bench waits for them
    with connection.cursor() as cursor:
        for table in (sql.PRODUCT_TABLE, sql.IMAGE_TABLE, sql.TERM_TABLE):  # index-only scans need the visibility map
            cursor.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def prewarm() -> dict[str, Any]:
    """Reads the vector tables, the word table, their TOAST tables and every index of them into shared buffers
    (``pg_prewarm``), as on a server that has been answering searches for a while; what was read.

    Without it the first pass over the queries read pages from disk: on this machine the page cache
    does not keep the 3.9 GB of a 100,000-product folder, and the same code measured 110-148 ms p50
    cold against 56-60 ms warm (the p95: 386-456 against 73-76 ms)."""
    from django.db import DatabaseError, connection

    from multimodal_search.store import sql

    with connection.cursor() as cursor:
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        except DatabaseError as error:  # a server without the contrib module: measured as it is
            print(f"  no pg_prewarm ({error}); timing a cold cache", flush=True)
            return {"prewarmed": False}
        cursor.execute("SELECT current_setting('shared_buffers'), pg_size_bytes(current_setting('shared_buffers'))")
        buffers, buffer_bytes = cursor.fetchone()
        # the two vector tables, the keyword branch's word table, the inferred facets and their TOAST tables,
        # then every index of those
        cursor.execute(
            "WITH tables AS (SELECT oid AS r FROM pg_class WHERE relname IN (%s, %s, %s, %s) "
            "UNION SELECT reltoastrelid FROM pg_class WHERE relname IN (%s, %s, %s, %s) AND reltoastrelid <> 0) "
            "SELECT r, r IN (SELECT r FROM tables), pg_relation_size(r) FROM ("
            "SELECT r FROM tables UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT r FROM tables)) s",
            2 * [sql.PRODUCT_TABLE, sql.IMAGE_TABLE, sql.TERM_TABLE, sql.FACETS_TABLE],
        )
        relations = cursor.fetchall()
        # more than the buffers hold (1,000,000 products): the tables into the page cache, then the indexes,
        # smallest first, into the buffers while they fill at most 80% of them (a larger one loaded after
        # would push the others out); the untimed pass over the queries (``warm_pass``) reads the rest
        split = sum(size for *_, size in relations) > buffer_bytes
        read = in_buffers = 0
        for oid, is_table, size in sorted(relations, key=lambda r: (not r[1], r[2])):  # tables first
            if split and is_table:
                mode = "read"
            elif split and in_buffers + size > 0.8 * buffer_bytes:
                continue
            else:
                mode = "buffer"
            cursor.execute("SELECT pg_prewarm(%s::regclass, %s)", [oid, mode])
            read += size
            in_buffers += 0 if mode == "read" else size
    where = f"{in_buffers / 2**30:.1f} GB of it into shared_buffers ({buffers})"
    print(f"  prewarmed {read / 2**30:.1f} GB, {where}, the rest into the page cache", flush=True)
    return {
        "prewarmed": True,
        "prewarmed_gb": round(read / 2**30, 2),
        "in_buffers_gb": round(in_buffers / 2**30, 2),
        "shared_buffers": buffers,
    }


# --- 3. timing ----------------------------------------------------------------------------------


_EXACT = threading.local()


@contextmanager
def exact_scans() -> Iterator[None]:
    """Inside: this thread's vector reads plan without index scans (exact kNN), whatever the store sets."""
    _EXACT.on = True
    try:
        yield
    finally:
        _EXACT.on = False


@contextmanager
def without_hnsw(model_id: str) -> Iterator[None]:
    """Inside: the encoder's HNSW indexes are dropped in a transaction that is rolled back afterwards.

    The search then runs exactly as shipped (same settings, same keyword and neighbour plans) with each
    vector branch an exact scan: the truth that "recall of the default search" is measured against.
    ``enable_indexscan = off`` (:func:`exact_scans`) would also change the plan of the keyword branch,
    whose capped match sets are then other (equally ranked) products. Single-threaded use only: the
    ``DROP INDEX`` locks the tables until the rollback.
    """
    from django.db import transaction

    from multimodal_search.store import hnsw

    with transaction.atomic():
        hnsw.drop(model_id)  # whatever their build parameters
        yield
        transaction.set_rollback(True)


def read_settings(ef_search: int | None) -> str:
    """The settings of one unfiltered vector read as the store sends them, in one string (None: an exact
    read, index scans off), for the benches that run their own statements."""
    from multimodal_search.store import sql

    return "; ".join(
        ["SET LOCAL enable_indexscan = off"] if ef_search is None else sql.session_settings(ef_search, False)
    )


def _exact_aware_settings() -> None:
    from multimodal_search.store import sql

    store_settings = sql.session_settings

    def settings(ef_search: int, filtered: bool) -> list[str]:
        if getattr(_EXACT, "on", False):
            return ["SET LOCAL enable_indexscan = off"]
        return store_settings(ef_search, filtered)

    sql.session_settings = settings


def timed(work: Callable[[Any], Any], items: list[Any], clients: int) -> dict[str, float]:
    """Runs ``work`` over ``items`` (repeated to at least 2 per client) on ``clients`` threads."""
    from django.db import connection

    jobs: queue.Queue[Any] = queue.Queue()
    for item in items * max(1, -(-2 * clients // len(items))):
        jobs.put(item)
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while True:
                try:
                    item = jobs.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                work(item)
                latencies.append((time.perf_counter() - started) * 1000)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    wall = time.perf_counter() - started
    return {"n": len(latencies), **percentiles(latencies), "qps": len(latencies) / wall}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p95 of ``values`` (ms), as every bench script reports them."""
    values = sorted(values)
    return {"p50": statistics.median(values), "p95": values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]}


def save(name: str, results: dict[str, Any], markdown: str) -> None:
    """``bench/results/<name>.json`` (every figure) and ``<name>.md`` (the table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown)


def workloads(mode: str, model_id: str, raw_column: str = "text_vector") -> dict[str, Callable[[Any], Any]]:
    """name -> one request, for text queries (str) or photo queries ((PIL image, bytes))."""
    from django.test import Client

    from multimodal_search import services
    from multimodal_search.conf import search_settings
    from multimodal_search.encoders import get_encoder
    from multimodal_search.ranking import vocabulary as v
    from multimodal_search.store import get_store
    from multimodal_search.store.base import Scope

    encoder, store = get_encoder(), get_store()
    scope = Scope(model_id, K, ef_search=int(search_settings.HNSW_EF_SEARCH))
    local = threading.local()

    def client() -> Client:
        """One test client per bench thread, as a server process loads its middleware once (a new
        ``Client`` loads every middleware again: with ``DEBUG`` off WhiteNoise then lists the static
        files, 4-17 ms on the demo; with the bench's ``DEBUG`` on, within the noise at 100,000)."""
        if not hasattr(local, "client"):
            local.client = Client()
        return local.client

    def vector(item: Any) -> np.ndarray:
        cached = VECTORS.get(id(item))
        if cached is None:
            cached = encoder.encode_text([item])[0] if mode == "text" else encoder.encode_image_pair([item[0]])[1][0]
            VECTORS[id(item)] = cached
        return cached

    column = raw_column if mode == "text" else "feature_vector"

    def exact(item: Any) -> Any:
        with exact_scans():
            return store.nearest(column, vector(item), scope)

    jobs: dict[str, Callable[[Any], Any]] = {
        "encoder": (lambda q: encoder.encode_text([q]))
        if mode == "text"
        else (lambda p: encoder.encode_image_pair([p[0]])),
        "hnsw": lambda item: store.nearest(column, vector(item), scope),
        "exact": exact,
    }
    if mode == "text":
        jobs["plain"] = lambda q: services.plain_knn(q, None, k=K)
        for method in v.METHODS:
            jobs[method] = lambda q, m=method: services.search_products(q, k=K, method=m)  # type: ignore[misc]
        jobs["api"] = lambda q: _ok(client().get("/api/search/", {"q": q, "k": K}))
    else:
        jobs["plain"] = lambda p: services.plain_knn(None, p[0], k=K)
        for method in v.METHODS:
            if method not in v.TEXT_ONLY_METHODS:
                jobs[method] = lambda p, m=method: services.search_products(image=p[0], k=K, method=m)  # type: ignore[misc]
        jobs["api"] = lambda p: _ok(client().post("/api/search/", {"image": _upload(p[1]), "k": K}))
    return jobs


VECTORS: dict[int, np.ndarray] = {}


def _upload(data: bytes) -> Any:
    import io

    buffer = io.BytesIO(data)
    buffer.name = "query.jpg"
    return buffer


def _ok(response: Any) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"API answered {response.status_code}: {response.content[:200]!r}")
    return response


# --- 4. recall ----------------------------------------------------------------------------------


def recall(
    mode: str, items: list[Any], model_id: str, default_method: str, raw_column: str = "text_vector"
) -> dict[str, Any]:
    from multimodal_search import services
    from multimodal_search.conf import search_settings
    from multimodal_search.encoders import get_encoder
    from multimodal_search.models import ProductEmbedding
    from multimodal_search.store import get_store
    from multimodal_search.store.base import Scope

    encoder, store = get_encoder(), get_store()
    column = raw_column if mode == "text" else "feature_vector"
    out: dict[str, Any] = {"ef_search": ef_sweep(mode, items, model_id, column)}
    for label, category in (("all", None), ("1%", "bench-1pct-{}"), ("0.1%", "bench-01pct-{}")):
        raw, default, full = [], [], []
        matching: dict[str, int] = {}
        for n, item in enumerate(items):
            cats = [category.format(n * 7 % (100 if "1pct" in category else 1000))] if category else []
            vec = encoder.encode_text([item])[0] if mode == "text" else encoder.encode_image_pair([item[0]])[1][0]
            scope = Scope(model_id, K, cats, ef_search=int(search_settings.HNSW_EF_SEARCH))
            approx = [pk for pk, _ in store.nearest(column, vec, scope)]
            with exact_scans():
                truth = [pk for pk, _ in store.nearest(column, vec, scope)]
            raw.append(len(set(approx) & set(truth)) / max(1, len(truth)))
            kwargs = {"text": item} if mode == "text" else {"image": item[0]}
            hits = services.search_products(
                **kwargs, k=K, category=cats[0] if cats else None, method=default_method
            ).hits
            with without_hnsw(model_id):
                exact_hits = services.search_products(
                    **kwargs, k=K, category=cats[0] if cats else None, method=default_method
                ).hits
            got, want = {h.product_pk for h in hits}, {h.product_pk for h in exact_hits}
            default.append(len(got & want) / max(1, len(want)))
            if cats and cats[0] not in matching:
                matching[cats[0]] = ProductEmbedding.objects.filter(
                    model_id=model_id, categories__contains=cats
                ).count()
            page = min(K, matching[cats[0]]) if cats else K
            full.append(len(hits) == page and len(approx) == page)
        out[label] = {
            "raw_hnsw": float(np.mean(raw)),
            "default_search": float(np.mean(default)),
            "full_pages": f"{sum(full)}/{len(full)}",
        }
    return out


def judged(rows: list[dict[str, Any]], meta: dict[str, Any], size: int, default_method: str) -> dict[str, Any]:
    """nDCG@10 and P@10 of the default search for judged text queries; the bench's product ``i`` is a
    copy of source product ``i % n`` and is as relevant as it (``fill``). The ideal ranking has the
    copies of the best-judged products first."""
    from multimodal_search import services

    skus = [product["sku"] for product in meta["products"]]
    copies = [size // len(skus) + (1 if n < size % len(skus) else 0) for n in range(len(skus))]
    per_sku = dict(zip(skus, copies))
    ndcg, precision = [], []
    for row in rows:
        hits = services.search_products(row["query"], k=K, method=default_method).hits
        found = [skus[int(hit.product.sku.rsplit("-", 1)[1]) % len(skus)] for hit in hits]
        gains = [row["graded"].get(sku, 0) for sku in found]
        best = sorted((g for sku, g in row["graded"].items() for _ in range(min(K, per_sku.get(sku, 0)))), reverse=True)
        ideal = _dcg(best[:K])
        ndcg.append(_dcg(gains) / ideal if ideal else 0.0)
        precision.append(sum(1 for g in gains if g > 0) / K)
    return {"queries": len(rows), "ndcg@10": float(np.mean(ndcg)), "p@10": float(np.mean(precision))}


def _dcg(gains: list[int]) -> float:
    return sum((2**g - 1) / math.log2(rank + 2) for rank, g in enumerate(gains))


def ef_sweep(mode: str, items: list[Any], model_id: str, column: str) -> dict[str, dict[str, float]]:
    """Raw HNSW recall@10 and p50 latency at several ``hnsw.ef_search`` values (one client)."""
    from multimodal_search.store import get_store
    from multimodal_search.store.base import Scope

    store = get_store()
    vectors = [VECTORS[id(item)] for item in items]
    truths = []
    for vector in vectors:
        with exact_scans():
            truths.append({pk for pk, _ in store.nearest(column, vector, Scope(model_id, K))})
    out = {}
    for ef in (40, 100, 200, 400):
        found, times = [], []
        for vector, truth in zip(vectors, truths):
            started = time.perf_counter()
            approx = {pk for pk, _ in store.nearest(column, vector, Scope(model_id, K, ef_search=ef))}
            times.append((time.perf_counter() - started) * 1000)
            found.append(len(approx & truth) / max(1, len(truth)))
        out[str(ef)] = {"recall": float(np.mean(found)), "p50_ms": statistics.median(times)}
    return out


def explain(text: str, default_method: str, size: int, suffix: str = "") -> None:
    """EXPLAIN ANALYZE of the first-stage statement of the default search (and of the branches it runs
    through ``store.sql.NEAREST_FUNCTION``), saved beside the numbers."""
    from multimodal_search import services
    from multimodal_search.store import get_store

    store = get_store()
    captured = []
    candidates = type(store).candidates

    def capture(self: Any, request: Any, scope: Any) -> Any:
        captured.append(self.candidates_query(request, scope)[0])
        return candidates(self, request, scope)

    type(store).candidates = capture  # type: ignore[method-assign]
    try:
        services.search_products(text, k=K, method=default_method)
    finally:
        type(store).candidates = candidates  # type: ignore[method-assign]
    query = captured[0]
    plan = store.explain(query, analyze=True)
    path = RESULTS / f"search-explain-{size}{suffix}.txt"
    path.write_text(
        f"-- default search ({default_method}) for {text!r}, {size:,} products, hnsw.ef_search {query.ef_search}\n"
        f"{query.statement}\n\n{plan}\n"
    )


# --- main ---------------------------------------------------------------------------------------


def use_source_reranker(args: argparse.Namespace, model_id: str) -> str | None:
    """The re-ranker the default search runs here: the source folder's (``mmsearch_train`` there; same
    encoder version) is copied in when the bench has none, with the departments and qualities it found
    there (the bench's rows keep Luma's categories and fields). Its version, or None (``rerank`` then runs feature fusion,
    which is not what a trained shop runs)."""
    import shutil

    from multimodal_search import artefacts
    from multimodal_search.ranking import departments, qualities
    from multimodal_search.ranking.reranker import ARTEFACT, get_reranker

    for name in (ARTEFACT, departments.ARTEFACT, qualities.ARTEFACT):
        target = artefacts.artefact_path(name)
        trained = ROOT / args.source / "models" / target.name
        if not target.exists() and trained.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trained, target)
    found = get_reranker(model_id)
    if found is None:
        print(f"  no re-ranker for {model_id}: the default search runs feature fusion", flush=True)
    return found.version if found else None


def queries(args: argparse.Namespace) -> tuple[list[str], list[tuple[Any, bytes]]]:
    from PIL import Image

    eval_dir = ROOT / args.source / "eval"
    rows = [json.loads(line) for line in (eval_dir / "queries.jsonl").open()]
    rng = random.Random(args.seed)
    texts = sorted({r["query"] for r in rows if r["kind"] == "text"})
    photos = sorted({r["query"] for r in rows if r["kind"] == "image"})
    text_items = rng.sample(texts, min(args.text_queries, len(texts)))
    photo_items = []
    for path in rng.sample(photos, min(args.photo_queries, len(photos))):
        data = (eval_dir / path).read_bytes()
        photo_items.append((Image.open(eval_dir / path).convert("RGB"), data))
    return text_items, photo_items


def judged_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--judged-queries`` of the source's judged text queries (a seeded sample)."""
    path = ROOT / args.source / "eval" / "queries.jsonl"
    rows = [row for row in map(json.loads, path.open()) if row["kind"] == "text" and row.get("graded")]
    return random.Random(args.seed).sample(rows, min(args.judged_queries, len(rows)))


def table(results: dict[str, Any]) -> str:
    lines = []
    lines.append(f"default method `{results['default_method']}`, re-ranker {results.get('reranker') or 'none'}")
    for size, run in results["sizes"].items():
        cache = run.get("cache") or {}
        warm = (
            f"{cache['prewarmed_gb']} GB prewarmed, {cache.get('in_buffers_gb', cache['prewarmed_gb'])} GB of it "
            f"into shared_buffers {cache['shared_buffers']}"
            if cache.get("prewarmed")
            else "cold cache"
        )
        lines.append(f"\n**{int(size):,} products** (index build {run['index_build_s']:.0f} s; {warm})\n")
        lines.append(
            f"rows: {results.get('rows', 'perturbed copies')}; HNSW indexes: {results.get('hnsw_columns', 'all')}; "
            f"text queries' raw HNSW read: {results.get('raw_column', 'text_vector')}\n"
        )
        for mode in ("text", "photo"):
            if mode not in run:
                continue
            lines.append(
                f"{mode} queries: p50 / p95 ms (p95 as a multiple of raw HNSW p95 + encoder p95 at the same "
                f"clients; 1 client: {run[mode]['baseline_p95_ms']:.1f} ms)\n"
            )
            header = "| clients | " + " | ".join(run[mode]["timings"]) + " |"
            lines += [header, "|" + "---|" * (1 + len(run[mode]["timings"]))]
            for clients in results["clients"]:
                cells = []
                timings = run[mode]["timings"]
                base = timings["hnsw"][str(clients)]["p95"] + timings["encoder"][str(clients)]["p95"]
                for _name, per in timings.items():
                    t = per[str(clients)]
                    cells.append(f"{t['p50']:.0f} / {t['p95']:.0f} ({t['p95'] / base:.2f}x)")
                lines.append(f"| {clients} | " + " | ".join(cells) + " |")
            lines.append("")
            lines.append("| recall@10 vs exact | raw HNSW | default search | full pages |")
            lines.append("|---|---|---|---|")
            for label, r in run[mode]["recall"].items():
                if label == "ef_search":
                    continue
                lines.append(f"| {label} | {r['raw_hnsw']:.3f} | {r['default_search']:.3f} | {r['full_pages']} |")
            sweep = ", ".join(
                f"{ef}: {r['recall']:.3f} in {r['p50_ms']:.1f} ms" for ef, r in run[mode]["recall"]["ef_search"].items()
            )
            lines.append(f"raw HNSW recall@10 by ef_search: {sweep}\n")
            if "judged" in run[mode]:
                j = run[mode]["judged"]
                lines.append(
                    f"judged relevance of the default search ({j['queries']} queries, a copy as relevant as "
                    f"its product): nDCG@10 {j['ndcg@10']:.4f}, P@10 {j['p@10']:.4f}\n"
                )
    return "\n".join(lines)


def main() -> None:
    args = parse()
    if args.export:
        setup_django(args.source)
        export(Path(args.export))
        return
    meta, source = load_source(args)
    setup_django(args.data_dir)
    import torch
    from django.core.management import call_command

    from multimodal_search import services
    from multimodal_search.conf import search_settings
    from multimodal_search.encoders import get_encoder
    from multimodal_search.models import ProductEmbedding
    from multimodal_search.store import hnsw

    torch.set_num_threads(1)
    _exact_aware_settings()
    use_search_overrides(args)
    call_command("migrate", verbosity=0)
    encoder = get_encoder()
    if encoder.model_id != meta["model_id"]:
        sys.exit(f"the source was indexed with {meta['model_id']}, the encoder here is {encoder.model_id}")
    model_id, default_method = meta["model_id"], search_settings.FUSION["METHOD"]
    reranker = use_source_reranker(args, model_id)
    dims, fdims = source["text_vector"].shape[1], source["feature_vector"].shape[1]
    sizes = [int(s) for s in args.products.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    texts, photos = queries(args)
    rows = judged_rows(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "rows": "blended" if args.blend else "perturbed copies",
        "raw_column": args.raw_column,
        "hnsw_columns": args.hnsw_columns or "all",
        "warm_pass": args.warm_pass,
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        "default_method": default_method,
        "reranker": reranker,
        "hnsw": {
            "m": search_settings.HNSW_M,
            "ef_construction": search_settings.HNSW_EF_CONSTRUCTION,
            "ef_search": search_settings.HNSW_EF_SEARCH,
        },
        "clients": clients,
        "sizes": {},
    }
    for size in sizes:
        have = ProductEmbedding.objects.filter(model_id=model_id).count()
        if have > size:
            sys.exit(f"{args.data_dir} already holds {have:,} products: remove it to bench {size:,}")
        print(f"==> {size:,} products", flush=True)
        if have < size or args.m or args.ef_construction:
            hnsw.drop(model_id)  # filling is faster without them, and new parameters need a rebuild
        fill(meta, source, have, size, args.seed, args.blend)
        columns = args.hnsw_columns.split(",") if args.hnsw_columns else None
        run: dict[str, Any] = {"index_build_s": build_indexes(model_id, dims, fdims, columns)}
        print(f"  indexes ready in {run['index_build_s']:.0f} s", flush=True)
        if args.fill_only:
            continue
        run["cache"] = prewarm()
        for mode, items in (("text", texts), ("photo", photos)):
            if mode not in args.modes.split(","):
                continue
            jobs = workloads(mode, model_id, args.raw_column)
            if args.jobs:
                jobs = {name: job for name, job in jobs.items() if name in {"encoder", "hnsw", *args.jobs.split(",")}}
            for item in items:  # the raw HNSW and exact jobs time the query vector's search alone
                jobs["hnsw"](item)
            for job in jobs.values():  # warm up: models loaded, caches and connections open
                for item in items if args.warm_pass else items[:1]:
                    job(item)
            services.warm_up(force=True)  # as gunicorn's post_worker_init: the collector settled (GC_THRESHOLD)
            timings = {
                name: {str(c): timed(job, items * args.repeat, c) for c in clients} for name, job in jobs.items()
            }
            base = timings["hnsw"]["1"]["p95"] + timings["encoder"]["1"]["p95"]
            run[mode] = {
                "baseline_p95_ms": base,
                "timings": timings,
                "recall": recall(mode, items, model_id, default_method, args.raw_column),
            }
            if mode == "text" and rows:
                run[mode]["judged"] = judged(rows, meta, size, default_method)
            print(f"  {mode}: " + json.dumps({k: round(t["1"]["p95"], 1) for k, t in timings.items()}), flush=True)
        explain(texts[0], default_method, size, f"-ef{args.ef_search}" if args.ef_search else "")
        results["sizes"][str(size)] = run
        name = "search-" + args.products.replace(",", "-") + (f"-ef{args.ef_search}" if args.ef_search else "")
        name += "-blend" if args.blend else ""
        save(name, results, table(results))
    print(table(results))


if __name__ == "__main__":
    main()
