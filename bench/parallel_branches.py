"""Two HNSW reads in one statement, one after the other or in parallel workers: ``bench/parallel_branches.py``.

The default search's candidate statement reads two HNSW indexes one after the other (the pool
column's 300 rows, the title's 100; ``store.sql.candidate_branches``). PostgreSQL runs the branches
of a ``UNION ALL`` in parallel workers (a Parallel Append) only when each can run in a worker: a
subquery with ``LIMIT`` never does, a ``PARALLEL SAFE`` set-returning function does. This bench asks
whether that would shorten the statement: in its own data folder (``--data-dir``) it fills a scratch
table with ``--rows`` rows of two clustered 384-d halfvecs (500 centres, noise; never uniform noise)
and their HNSW cosine indexes (the store's ``HNSW_M`` / ``HNSW_EF_CONSTRUCTION``), then times, query by
query interleaved (``--queries`` rows' own vectors, ``--repeat`` times), p50 / p95 in ms:

* ``inline``: ``(… ORDER BY a <=> q LIMIT 300) UNION ALL (… ORDER BY b <=> q LIMIT 100)``, as the
  candidate statement reads them;
* ``functions, serial``: the same two reads as function scans, parallel query off;
* ``functions, parallel``: the same with parallel query on and free (``parallel_setup_cost`` 0), so
  that each read runs in its own process (the plan is checked for "Workers Launched").

All at ``hnsw.ef_search`` ``--ef-search`` (800: the pool branch's). Results:
``bench/results/parallel-branches-<rows>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from search import percentiles, save, setup_django

TABLE = "bench_two_columns"
DIMS = 384
READS = (
    "SELECT id FROM bench_two_columns ORDER BY a <=> $1::halfvec LIMIT 300",
    "SELECT id FROM bench_two_columns ORDER BY b <=> $1::halfvec LIMIT 100",
)
FUNCTION = (
    "CREATE OR REPLACE FUNCTION bench_nearest(statement text, query text) RETURNS SETOF integer "
    "LANGUAGE plpgsql PARALLEL SAFE ROWS 300 COST 100000 AS $$ "
    "BEGIN RETURN QUERY EXECUTE statement USING query; END $$"
)
SERIAL = "SET LOCAL max_parallel_workers_per_gather = 0"
PARALLEL = (
    "SET LOCAL max_parallel_workers_per_gather = 2; SET LOCAL parallel_setup_cost = 0; "
    "SET LOCAL parallel_tuple_cost = 0; SET LOCAL enable_parallel_append = on"
)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data-dir", default=".data/parallel-branches", help="its own data folder")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ef-search", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.4f}" for value in vector) + "]"


def fill(cursor: Any, rows: int, seed: int) -> dict[str, float]:
    """The scratch table, filled and indexed afresh; -> seconds per step."""
    from multimodal_search.store import sql

    m, ef_construction = sql.build_parameters()
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((500, DIMS)).astype(np.float32)
    cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    cursor.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, a halfvec({DIMS}), b halfvec({DIMS}))")
    started = time.perf_counter()
    with cursor.copy(f"COPY {TABLE} (id, a, b) FROM STDIN") as copy:
        for i in range(rows):
            noise = 0.5 * rng.standard_normal((2, DIMS)).astype(np.float32)
            copy.write_row((i, _literal(centres[i % 500] + noise[0]), _literal(centres[(7 * i) % 500] + noise[1])))
    timings = {"fill_s": time.perf_counter() - started}
    cursor.execute("SET maintenance_work_mem = '2GB'")
    for column in "ab":
        started = time.perf_counter()
        cursor.execute(
            f"CREATE INDEX {TABLE}_{column} ON {TABLE} USING hnsw ({column} halfvec_cosine_ops) "
            f"WITH (m = {m}, ef_construction = {ef_construction})"
        )
        timings[f"index_{column}_s"] = time.perf_counter() - started
    cursor.execute(f"VACUUM ANALYZE {TABLE}")
    return timings


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    raw.autocommit = True
    with raw.cursor() as cursor:
        timings = fill(cursor, args.rows, args.seed)
        cursor.execute(FUNCTION)
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        for relation in (TABLE, f"{TABLE}_a", f"{TABLE}_b"):
            cursor.execute("SELECT pg_prewarm(%s)", [relation])
        cursor.execute(f"SELECT a::text FROM {TABLE} WHERE id < %s", [args.queries])
        vectors = [row[0] for row in cursor.fetchall()]
    inline = "SELECT count(*) FROM ((" + ") UNION ALL (".join(r.replace("$1", "%(q)s") for r in READS) + ")) u"
    functions = "SELECT count(*) FROM (SELECT * FROM bench_nearest(%(a)s, %(q)s) UNION ALL SELECT * FROM bench_nearest(%(b)s, %(q)s)) u"
    jobs = {
        "inline": (inline, SERIAL),
        "functions, serial": (functions, SERIAL),
        "functions, parallel": (functions, PARALLEL),
    }
    times: dict[str, list[float]] = {name: [] for name in jobs}
    settings = f"SET LOCAL hnsw.ef_search = {int(args.ef_search)}; SET LOCAL enable_seqscan = off"
    params = {"a": READS[0], "b": READS[1]}
    for _ in range(args.repeat):
        for vector in vectors:
            for name, (statement, mode) in jobs.items():
                with raw.transaction(), raw.cursor() as cursor:
                    cursor.execute(f"{settings}; {mode}")
                    started = time.perf_counter()
                    cursor.execute(statement, {**params, "q": vector})
                    assert cursor.fetchone()[0] == 400
                    times[name].append((time.perf_counter() - started) * 1000)
    with raw.transaction(), raw.cursor() as cursor:
        cursor.execute(f"{settings}; {PARALLEL}")
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + functions, {**params, "q": vectors[0]})
        plan = "\n".join(row[0] for row in cursor.fetchall())
    results = {
        "rows": args.rows,
        "ef_search": args.ef_search,
        "timings": timings,
        "ms": {name: percentiles(values) for name, values in times.items()},
        "parallel_plan": plan,
    }
    lines = [
        f"# Two HNSW reads, serial or in parallel workers ({args.rows:,} rows, ef_search {args.ef_search})\n",
        "| statement | p50 ms | p95 ms |",
        "|---|---|---|",
        *(f"| {name} | {r['p50']:.1f} | {r['p95']:.1f} |" for name, r in results["ms"].items()),
        "",
        "Parallel plan (one query):\n",
        "```",
        plan,
        "```",
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    save(f"parallel-branches-{args.rows}", results, markdown)


if __name__ == "__main__":
    main()
