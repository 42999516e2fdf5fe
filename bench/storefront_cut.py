"""The storefront cut's rules: what they keep that the trained cut alone left out, and whether it is relevant.

    .venv/bin/python bench/storefront_cut.py --data-dir .data/eval/full --queries .data/eval/luma/queries.jsonl \
        [--rules title,kind,depth]

On an indexed, trained data folder, each judged text query (``--split``, default every one) is searched
at the storefront's cut (``min_relevance="auto"``, 24 results, the default method) twice in one
process: with the code as it is and with ``--rules`` switched off. The rules: ``title``, a product
whose title has every typed word is kept (``services.search._named_in_titles``); ``kind``, a product
whose title's head noun is a kind the words name is kept (``services.search._called_by_kinds``); ``depth``, every
result ranked above the last one the cut passes is kept (``services.search.CUT_AT_DEPTH``). Reported:
the products the rules add, how many of them the judgements call relevant (graded 1 or 2) against
the share among the products the cut alone shows, the queries whose page they change, and the
queries whose first relevant result (the plain top 10's) the cut drops, with the rules and without.

Results: ``bench/results/storefront-cut-<rules>.{json,md}``.
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
    parser.add_argument("--rules", default="title,kind,depth", help="the rules switched off for the comparison")
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
    named, kinds, depth = search_module._named_in_titles, search_module._called_by_kinds, search_module.CUT_AT_DEPTH
    off = set(args.rules.split(","))
    unknown = off - {"title", "kind", "depth"}
    if unknown:
        raise SystemExit(f"Unknown rule {sorted(unknown)[0]!r}; the rules are: title, kind, depth.")

    def skus(text: str, rules: bool, **options: Any) -> list[str]:
        if not rules:
            if "title" in off:
                search_module._named_in_titles = lambda order, text, model_id: set()  # type: ignore[assignment]
            if "kind" in off:
                search_module._called_by_kinds = lambda *args: set()  # type: ignore[assignment]
            if "depth" in off:
                search_module.CUT_AT_DEPTH = False
        try:
            hits = services.search_products(text, k=args.k, **options).hits
        finally:
            search_module._named_in_titles, search_module.CUT_AT_DEPTH = named, depth  # type: ignore[assignment]
            search_module._called_by_kinds = kinds  # type: ignore[assignment]
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
                "shown_before": len(before),
                "shown_before_relevant": sum(query.graded.get(sku, 0) > 0 for sku in before),
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
        "share_relevant_of_those_shown_without": round(
            sum(row["shown_before_relevant"] for row in rows) / max(1, sum(row["shown_before"] for row in rows)), 4
        ),
        "first_relevant_lost_before": sum(row["first_lost_before"] for row in rows),
        "first_relevant_lost_after": sum(row["first_lost_after"] for row in rows),
    }
    lines = [
        f"# The storefront cut with and without {args.rules} ({len(rows)} judged text queries, k {args.k})\n",
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
    save("storefront-cut-" + args.rules.replace(",", "-"), {"summary": summary, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
