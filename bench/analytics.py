"""Query analytics at a large search log: ``bench/analytics.py --searches 100000,1000000``.

A busy shop logs millions of searches in the 90 days the report covers by default. This bench fills
its own data folder (``--data-dir``, default ``.data/analytics-bench``) with search log rows spread over
``--days`` days: queries drawn from ``--queries`` distinct ones with a long tail (a few are searched
thousands of times, most a handful), one search in ``--zero`` with no result, and a click on one in
four searches with results (positions 1-10, a few searches clicked twice). Per size it times, each
``--repeat`` times (p50 / p95 in ms):

* ``report``: ``services.analytics_report`` over the whole period, what the admin's report page shows
  (totals, daily counts, top, zero-result and low-click queries);
* ``one pass``: a single ``GROUP BY`` of the period's searches by query (its first 20 rows), the
  baseline: the report cannot cost less than one pass over its per-query figures;
* ``corrected``: the report's misspelt-queries list alone (one search in ``--corrected`` had a word
  corrected, 1,000 distinct readings), which reads only those searches;
* ``loose``: the report's list of queries no product matched closely (one search in ``--loose``
  answered by the every-word fallback), which reads only those searches;
* ``csv``: reading every per-query row, as the report's CSV export does;
* ``log page``: the admin's search log list, first page (the test client, as a staff user).

and the report as a ratio of the one pass, measured in the same run. Results:
``bench/results/analytics-<sizes>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from typing import Any

from search import percentiles, save, setup_django


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--searches", default="100000,1000000", help="logged searches, ascending")
    parser.add_argument("--data-dir", default=".data/analytics-bench", help="the bench's own data folder")
    parser.add_argument("--days", type=int, default=90, help="days the searches are spread over")
    parser.add_argument("--queries", type=int, default=50_000, help="distinct queries")
    parser.add_argument("--zero", type=int, default=12, help="one search in this many has no result")
    parser.add_argument("--corrected", type=int, default=20, help="one search in this many had a word corrected")
    parser.add_argument("--loose", type=int, default=50, help="one search in this many was a fallback's answer")
    parser.add_argument("--repeat", type=int, default=5, help="times each figure is timed")
    return parser.parse_args()


def fill(start: int, stop: int, args: argparse.Namespace) -> None:
    """Search log rows ``start``..``stop - 1`` and their clicks, in chunks of 100,000."""
    from django.db import connection, transaction

    from multimodal_search.models import SearchLog, ShopperEvent

    log, events = SearchLog._meta.db_table, ShopperEvent._meta.db_table
    chunk = 100_000
    for first in range(start, stop, chunk):
        last = min(stop, first + chunk) - 1
        with transaction.atomic(), connection.cursor() as cursor:
            # power(random(), 4): the lowest query numbers are searched most, the rest form a long tail
            cursor.execute(
                f"INSERT INTO {log} (created_at, query, corrected, fallback, kind, source, filters, result_count, latency_ms, "
                "results, first_position, session, user_id) "
                "SELECT now() - random() * make_interval(days => %s), "
                "'query ' || floor(power(random(), 4) * %s)::int, "
                "CASE WHEN random() < 1.0 / %s THEN 'corrected ' || floor(power(random(), 4) * 1000)::int ELSE '' END, "
                "CASE WHEN random() < 1.0 / %s THEN 'every_word' ELSE '' END, "
                "'text', 'storefront', '{}', "
                "CASE WHEN random() < 1.0 / %s THEN 0 ELSE 1 + floor(random() * 300)::int END, "
                "20 + random() * 80, ARRAY['1','2','3','4','5','6','7','8','9','10'], 1, md5(g::text), NULL "
                "FROM generate_series(%s, %s) g",
                [args.days - 1, args.queries, args.corrected, args.loose, args.zero, first, last],
            )
            cursor.execute(
                f"INSERT INTO {events} (kind, product_pk, search_id, position, session, user_id, created_at) "
                "SELECT 'click', (1 + floor(random() * 10))::int::text, s.id, 1 + floor(power(random(), 2) * 10)::int, "
                "s.session, NULL, s.created_at + interval '20 seconds' "
                f"FROM {log} s, generate_series(1, CASE WHEN random() < 0.1 THEN 2 ELSE 1 END) "
                "WHERE s.id > (SELECT coalesce(max(search_id), 0) FROM "
                f"{events}) AND s.result_count > 0 AND random() < 0.25",
            )
        print(f"  logged {last + 1:,} searches", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {log}")
        cursor.execute(f"VACUUM ANALYZE {events}")


def timed(run: Any, repeat: int) -> dict[str, float]:
    values = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        values.append((time.perf_counter() - started) * 1000)
    return percentiles(values)


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from multimodal_search import services

    end = timezone.localdate()
    start = end - timedelta(days=args.days - 1)
    admin = get_user_model().objects.filter(username="bench-admin").first()
    if admin is None:
        admin = get_user_model().objects.create_superuser("bench-admin", "bench@example.com", "bench")
    client = Client()
    client.force_login(admin)
    url = "/admin/multimodal_search/searchlog/"
    work = {
        "report": lambda: services.analytics_report(start, end),
        "one pass": lambda: list(services.query_figures(start, end)[:20]),
        "corrected": lambda: services.corrected_queries(start, end),
        "loose": lambda: services.loose_queries(start, end),
        "csv": lambda: sum(1 for _ in services.query_figures(start, end).iterator()),
        "log page": lambda: client.get(url).status_code,
    }
    for run in work.values():  # a first run of each reads the tables into memory
        run()
    return {name: timed(run, args.repeat) for name, run in work.items()}


def table(results: dict[str, Any]) -> str:
    lines = [
        "| searches logged | report | one pass (baseline) | report / one pass | corrected list | loose list | csv "
        "| log page |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, figures in results["sizes"].items():
        cells = {name: f"{value['p50']:.0f} / {value['p95']:.0f}" for name, value in figures.items()}
        ratio = figures["report"]["p50"] / figures["one pass"]["p50"]
        lines.append(
            f"| {int(size):,} | {cells['report']} | {cells['one pass']} | {ratio:.2f}x | {cells['corrected']} "
            f"| {cells['loose']} | {cells['csv']} "
            f"| {cells['log page']} |"
        )
    return "\n".join(lines) + "\n\np50 / p95 in ms.\n"


def main() -> None:
    args = parse()
    sizes = [int(size) for size in args.searches.split(",")]
    if sizes != sorted(sizes):
        sys.exit("--searches must be ascending")
    setup_django(args.data_dir)
    from django.core.management import call_command

    from multimodal_search.models import SearchLog

    call_command("migrate", verbosity=0)
    results: dict[str, Any] = {"args": vars(args), "sizes": {}}
    for size in sizes:
        have = SearchLog.objects.count()
        if have > size:
            sys.exit(f"{args.data_dir} already holds {have:,} searches: remove it to bench {size:,}")
        print(f"{size:,} searches", flush=True)
        fill(have, size, args)
        results["sizes"][str(size)] = measure(args)
        print(table({"sizes": {str(size): results["sizes"][str(size)]}}), flush=True)
    markdown = table(results)
    save(f"analytics-{'-'.join(str(size) for size in sizes)}", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
