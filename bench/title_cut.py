"""The storefront cut and the products whose titles the words name: what the cut kept before and after.

    .venv/bin/python bench/title_cut.py --data-dir .data/eval/full --queries .data/eval/luma/queries.jsonl

On an indexed, trained data folder, each judged text query (``--split``, default every one) is searched
at the storefront's cut (``min_relevance="auto"``, 24 results, the default method) twice in one
process: with the rule that keeps a product whose title has every typed word (``services.search``'s
``_named_in_titles``) and with it switched off. Reported: the products the rule adds, how many of them
the judgements call relevant (graded 1 or 2), the queries whose page it changes, and the queries
whose first relevant result (the plain top 10's) the cut had dropped and the rule keeps.

Results: ``bench/results/title-cut.{json,md}``.
"""

from __future__ import annotations

import argparse
from typing import Any

from search import save, setup_django


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=".data/eval/full", help="an indexed data folder, trained")
    parser.add_argument("--queries", default=".data/eval/luma/queries.jsonl", help="judged queries (make_luma_eval)")
    parser.add_argument("--split", default="", help="the split searched (blank: every query)")
    parser.add_argument("--k", type=int, default=24, help="results per search (a storefront page)")
    return parser.parse_args()


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    from multimodal_search import services
    from multimodal_search.adapters import get_adapter
    from multimodal_search.evaluation.queries import load_queries
    from multimodal_search.services import search as search_module

    adapter = get_adapter()
    judged = [
        q
        for q in load_queries(args.queries)
        if q.kind == "text" and not q.negative and (not args.split or q.split == args.split)
    ]
    named = search_module._named_in_titles

    def skus(text: str, rule: bool, **options: Any) -> list[str]:
        search_module._named_in_titles = named if rule else (lambda order, text, model_id: set())  # type: ignore[assignment]
        try:
            hits = services.search_products(text, k=args.k, **options).hits
        finally:
            search_module._named_in_titles = named  # type: ignore[assignment]
        return [str(adapter.to_result(hit.product)["sku"]) for hit in hits]

    rows = []
    for query in judged:
        before = skus(query.query, False, min_relevance="auto")
        after = skus(query.query, True, min_relevance="auto")
        plain = skus(query.query, False)[:10]
        first = next((sku for sku in plain if query.graded.get(sku, 0) > 0), None)
        added = [sku for sku in after if sku not in before]
        rows.append(
            {
                "query": query.query,
                "added": added,
                "added_relevant": [sku for sku in added if query.graded.get(sku, 0) > 0],
                "first_lost_before": first is not None and first not in before,
                "first_lost_after": first is not None and first not in after,
            }
        )
    added = sum(len(row["added"]) for row in rows)
    relevant = sum(len(row["added_relevant"]) for row in rows)
    summary = {
        "queries": len(rows),
        "queries_changed": sum(bool(row["added"]) for row in rows),
        "products_added": added,
        "of_them_relevant": relevant,
        "share_relevant": round(relevant / added, 4) if added else None,
        "first_relevant_lost_before": sum(row["first_lost_before"] for row in rows),
        "first_relevant_lost_after": sum(row["first_lost_after"] for row in rows),
    }
    lines = [
        f"# Products a title names, kept under the storefront cut ({len(rows)} judged text queries, k {args.k})\n",
        "| figure | value |",
        "|---|---|",
        *(f"| {name.replace('_', ' ')} | {value} |" for name, value in summary.items()),
        "",
        "Queries it changed (added products; * judged relevant):",
        *(
            f"- {row['query']}: "
            + ", ".join(sku + ("*" if sku in row["added_relevant"] else "") for sku in row["added"])
            for row in rows
            if row["added"]
        ),
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    save("title-cut", {"summary": summary, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
