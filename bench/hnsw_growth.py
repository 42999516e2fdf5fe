"""The pool column's HNSW reads alone up to 1,000,000 products: ``bench/hnsw_growth.py --products 10000,100000,1000000``.

``bench/search.py`` cannot reach a million products on this machine (every index of every column, the
photo-feature one above all, would take hours to build). The default search's two HNSW reads of the pool
column (``store.base.POOL_COLUMN``, the sum of a product's text, title and photo-in-text-space vectors)
need only that index, so this bench measures how they grow where the other cannot. Its own data folder
(``--data-dir``, default ``.data/hnsw-growth``) gets a scratch table of pool vectors made as
``bench/search.py`` makes its products' (perturbed copies of the Luma catalogue's vectors from
``--source``, same mix and noise), and the HNSW index the store builds for that column (``halfvec_ip_ops``,
``store.sql.HNSW_M`` / ``HNSW_EF_CONSTRUCTION``), rebuilt after each fill. At a million rows those
copies are 2,160 of each Luma product, which HNSW finds hard to tell apart; ``--blend`` (a fresh
``--data-dir``) makes each row a random mix of three products instead.

Per size, for ``--queries`` Luma text queries (each timed ``--repeat`` times), p50 / p95 in ms and
recall against the same read with index scans off, of:

* ``10 rows``: the raw read the latency acceptance measures against (``HNSW_EF_SEARCH``);
* ``300 rows``: the candidate statement's pool branch (``POOL_ROWS_FACTOR`` x the candidates, at
  ``POOL_EF_FACTOR`` x ``HNSW_EF_SEARCH``);

and the index's build time and size. ``--binary 2,4,8`` also builds an HNSW index of the rows' sign bits
(``binary_quantize(v)::bit(d)``, ``bit_hamming_ops``, the same build parameters) and times each read
through it: the nearest ``factor`` x rows by Hamming distance, re-ranked by the exact inner product, in
one statement. The scratch table has no ``model_id`` (the store's indexes are
partial on it) and no other column, so its rows are narrower than the product table's.
Results: ``bench/results/hnsw-growth-<sizes>[-blend].{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from search import NOISE, _mix, load_source, percentiles, queries, read_settings, save, setup_django

TABLE = "bench_pool_vectors"
COLUMNS = ("text_vector", "title_vector", "image_vector")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", default="10000,100000,1000000", help="catalogue sizes, ascending")
    parser.add_argument("--source", default=".data/scale-luma", help="data folder of an indexed Luma catalogue")
    parser.add_argument("--data-dir", default=".data/hnsw-growth", help="the bench's own data folder")
    parser.add_argument("--queries", type=int, default=40, help="Luma text queries (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="times each query is timed")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--blend", action="store_true", help="rows mix three random products (a fresh --data-dir): no copies"
    )
    parser.add_argument(
        "--binary",
        default="",
        help="also read through an HNSW index of the rows' sign bits (binary_quantize, bit_hamming_ops): "
        "comma-separated oversampling factors, each read re-ranked by the exact inner product",
    )
    args = parser.parse_args()
    args.text_queries, args.photo_queries = args.queries, 0  # for bench/search.py's queries()
    return args


def pool_vectors(
    source: dict[str, np.ndarray], ids: np.ndarray, rng: np.random.Generator, blend: bool = False
) -> np.ndarray:
    """Pool vectors of perturbed copies ``ids`` (``store.base.pool_vector`` of their mixed text, title and
    photo-in-text-space vectors; a product without photos has no photo part). ``blend``: each row mixes
    three random products with random (Dirichlet) weights instead of being mostly one, so that rows do
    not gather in one tight group per source product."""
    count = len(source["text_vector"])
    total = np.zeros((len(ids), source["text_vector"].shape[1]), dtype=np.float32)
    if not blend:
        picks = np.stack([ids % count, rng.integers(0, count, len(ids))], 1)
        for column in COLUMNS:
            total += np.nan_to_num(_mix(source[column], picks, None, rng))  # each part already at unit length
        return total
    picks, weights = rng.integers(0, count, (len(ids), 3)), rng.dirichlet(np.ones(3), len(ids)).astype(np.float32)
    for column in COLUMNS:
        part = sum(weights[:, [k]] * np.nan_to_num(source[column][picks[:, k]]) for k in range(3))
        part += NOISE * rng.standard_normal(part.shape).astype(np.float32) / np.sqrt(part.shape[1])
        total += part / np.linalg.norm(part, axis=1, keepdims=True)
    return total


def fill(source: dict[str, np.ndarray], start: int, stop: int, seed: int, blend: bool) -> None:
    from django.db import connection
    from pgvector import HalfVector
    from pgvector.psycopg import register_vector

    rng = np.random.default_rng(seed + start)
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    register_vector(raw)
    chunk = 50_000
    for first in range(start, stop, chunk):
        ids = np.arange(first, min(stop, first + chunk))
        vectors = pool_vectors(source, ids, rng, blend)
        with (
            raw.transaction(),
            raw.cursor() as cursor,
            cursor.copy(f"COPY {TABLE} (id, v) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["int4", "halfvec"])
            for i, vector in zip(ids, vectors):
                copy.write_row([int(i), HalfVector(vector)])
        print(f"  filled {ids[-1] + 1:,} rows", flush=True)


def build_binary(dims: int) -> tuple[float, int]:
    """An HNSW index of the rows' sign bits (seconds, bytes), the shipped build parameters."""
    return build("bits", f"(binary_quantize(v)::bit({dims})) bit_hamming_ops")


def nearest_binary(vector: np.ndarray, rows: int, oversample: int, dims: int) -> list[int]:
    """The ``rows`` largest inner products among the ``oversample`` x ``rows`` nearest by the sign bits'
    Hamming distance (read through their HNSW index, ``ef_search`` at least the rows it returns, relaxed
    iterative scan past pgvector's 1,000)."""
    from django.db import connection, transaction

    from multimodal_search.store import sql

    taken = rows * oversample
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SET LOCAL hnsw.ef_search = {min(1000, max(40, taken))}; "
            "SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL enable_seqscan = off"
        )
        cursor.execute(
            f"SELECT id FROM (SELECT id, v FROM {TABLE} ORDER BY binary_quantize(v)::bit({dims}) <~> "
            f"binary_quantize(%s::halfvec) LIMIT {taken}) AS near ORDER BY v <#> %s::halfvec LIMIT {rows}",
            [sql.to_literal(vector)] * 2,
        )
        return [row[0] for row in cursor.fetchall()]


def measure_binary(vectors: list[np.ndarray], repeat: int, factors: list[int], dims: int) -> dict[str, Any]:
    from multimodal_search.conf import search_settings
    from multimodal_search.store import sql

    pool_rows = sql.branch_rows("pool_vector", int(search_settings.FUSION["CANDIDATES"]))
    truths = [nearest(vector, pool_rows, None) for vector in vectors]
    out: dict[str, Any] = {}
    for rows in (10, pool_rows):
        for factor in factors:
            recall = [
                len(set(nearest_binary(v, rows, factor, dims)) & set(t[:rows])) / rows for v, t in zip(vectors, truths)
            ]
            times = []
            for _ in range(repeat):
                for vector in vectors:
                    started = time.perf_counter()
                    nearest_binary(vector, rows, factor, dims)
                    times.append((time.perf_counter() - started) * 1000)
            out[f"{rows} rows, bits x{factor}"] = {
                "ef_search": min(1000, max(40, rows * factor)),
                "recall": float(np.mean(recall)),
                **percentiles(times),
            }
    return out


def build(name: str = "hnsw", column: str = "v halfvec_ip_ops") -> tuple[float, int]:
    """An HNSW index ``<table>_<name>`` over ``column`` (an expression and its operator class; default the
    shipped index of the pool vectors), the shipped build parameters, read into shared buffers (seconds, bytes)."""
    from django.db import connection

    from multimodal_search.store import sql

    index = f"{TABLE}_{name}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {index}")
        cursor.execute("SET maintenance_work_mem = '4GB'; SET max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        cursor.execute(
            f"CREATE INDEX {index} ON {TABLE} USING hnsw ({column}) "
            f"WITH (m = {sql.HNSW_M}, ef_construction = {sql.HNSW_EF_CONSTRUCTION})"
        )
        seconds = time.perf_counter() - started
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
        cursor.execute(f"SELECT pg_relation_size('{index}'), pg_prewarm('{TABLE}'), pg_prewarm('{index}')")
        size = int(cursor.fetchone()[0])
    return seconds, size


def nearest(vector: np.ndarray, rows: int, ef_search: int | None) -> list[int]:
    """The ``rows`` largest inner products, through the index at ``ef_search`` (None: exact, no index)."""
    from django.db import connection, transaction

    from multimodal_search.store import sql

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(read_settings(ef_search))
        cursor.execute(
            f"SELECT id FROM {TABLE} ORDER BY v <#> %s::halfvec LIMIT {rows}",
            [sql.to_literal(vector)],
        )
        return [row[0] for row in cursor.fetchall()]


def measure(vectors: list[np.ndarray], repeat: int) -> dict[str, Any]:
    from multimodal_search.conf import search_settings
    from multimodal_search.store import sql

    ef = int(search_settings.HNSW_EF_SEARCH)
    pool_rows = sql.branch_rows("pool_vector", int(search_settings.FUSION["CANDIDATES"]))
    reads = {"10 rows": (10, ef), f"{pool_rows} rows": (pool_rows, sql.branch_ef_search(1, 1, ef))}
    truths = [nearest(vector, pool_rows, None) for vector in vectors]
    out: dict[str, Any] = {}
    for name, (rows, ef_search) in reads.items():
        recall = [len(set(nearest(v, rows, ef_search)) & set(t[:rows])) / rows for v, t in zip(vectors, truths)]
        times = []
        for _ in range(repeat):
            for vector in vectors:
                started = time.perf_counter()
                nearest(vector, rows, ef_search)
                times.append((time.perf_counter() - started) * 1000)
        out[name] = {"ef_search": ef_search, "recall": float(np.mean(recall)), **percentiles(times)}
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        f"`{results['command']}` ({results['date']}; {results['queries']} queries, each timed {results['repeat']} "
        f"times; m = {results['m']}, ef_construction = {results['ef_construction']})",
        "",
        "| products | build s | index MB | read | ef_search | p50 / p95 ms | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, run in results["sizes"].items():
        for name, read in run["reads"].items():
            lines.append(
                f"| {int(size):,} | {run['build_s']:.0f} | {run['bytes'] / 2**20:.0f} | {name} | {read['ef_search']} "
                f"| {read['p50']:.1f} / {read['p95']:.1f} | {read['recall']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    _, source = load_source(args)
    setup_django(args.data_dir)
    import torch
    from django.core.management import call_command
    from django.db import connection

    from multimodal_search.encoders import get_encoder
    from multimodal_search.store import sql

    torch.set_num_threads(1)
    call_command("migrate", verbosity=0)  # the vector extension
    dims = source["text_vector"].shape[1]
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY, v halfvec({dims}) NOT NULL)")
    texts, _ = queries(args)
    encoder = get_encoder()
    vectors = [encoder.encode_text([text])[0] for text in texts]
    results: dict[str, Any] = {
        "command": " ".join(["bench/hnsw_growth.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "queries": len(texts),
        "repeat": args.repeat,
        "m": sql.HNSW_M,
        "ef_construction": sql.HNSW_EF_CONSTRUCTION,
        "sizes": {},
    }
    for size in [int(s) for s in args.products.split(",")]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            have = int(cursor.fetchone()[0])
            if have > size:
                sys.exit(f"{args.data_dir} already holds {have:,} rows: remove it to bench {size:,}")
            cursor.execute(
                f"DROP INDEX IF EXISTS {TABLE}_hnsw; DROP INDEX IF EXISTS {TABLE}_bits"
            )  # filling is faster without them
        print(f"==> {size:,} rows", flush=True)
        fill(source, have, size, args.seed, args.blend)
        seconds, size_bytes = build()
        print(f"  index built in {seconds:.0f} s ({size_bytes / 2**20:.0f} MB)", flush=True)
        for vector in vectors[:5]:  # warm up
            nearest(vector, 10, 400)
        results["sizes"][str(size)] = {"build_s": seconds, "bytes": size_bytes, "reads": measure(vectors, args.repeat)}
        if args.binary:
            bits_s, bits_bytes = build_binary(dims)
            print(f"  sign-bit index built in {bits_s:.0f} s ({bits_bytes / 2**20:.0f} MB)", flush=True)
            factors = [int(f) for f in args.binary.split(",")]
            results["sizes"][str(size)]["binary"] = {"build_s": bits_s, "bytes": bits_bytes}
            results["sizes"][str(size)]["reads"].update(measure_binary(vectors, args.repeat, factors, dims))
        print("  " + str(results["sizes"][str(size)]["reads"]), flush=True)
        save(
            "hnsw-growth-" + args.products.replace(",", "-") + ("-blend" if args.blend else ""), results, table(results)
        )
    print(table(results))


if __name__ == "__main__":
    main()
