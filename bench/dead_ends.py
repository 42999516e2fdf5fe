"""Dead ends: storefront pages left empty by the relevance cut, and what the every-word fallback shows.

    .venv/bin/python bench/dead_ends.py --data-dir .data/eval/full --queries .data/eval/luma/queries.jsonl

On an indexed, trained data folder (``bench/relevance.sh``'s), each judged held-out text query is
searched as the storefront searches it (``min_relevance="auto"``: the trained ``related`` cut, and when
no result passes it, the candidates whose text has every word searched, ``query["fallback"]``) and with
the same cut as a number (never relaxed: the page as it was before the fallback). Three sets:

* the judged queries as they are;
* the same with one seeded typo, searched as typed (``bench/typos.py``'s typos, ``as_typed=True``):
  queries whose words the catalogue does not use as typed;
* queries for things the shop does not sell (the query file's negatives, and
  ``travel_eval.UNSOLD_PHRASES``), where any result shown is a wrong one;
* one word that only the products' descriptions use (``--description-words``, seeded): a word of the
  keyword index (``ts_stat``) of 4 letters or more, in 2 products or more and at most 5% of them, that
  the catalogue's dictionary (titles, colours, materials, attributes, categories; ``ranking.spelling``)
  lacks ("winter", "toasty"). Nothing judges these: the fallback shows, by construction, the products
  that use the word, so they count only how many such words the cut leaves with an empty page.

Reported per set: pages empty without and with the fallback, the pages the fallback filled, and of
those pages' first 10 results the share that is relevant (graded above 0) and the share of pages
whose first result is.

Results: ``bench/results/dead-ends.{json,md}``.
"""

from __future__ import annotations

import argparse
import random
import statistics
from typing import Any

from search import save, setup_django
from typos import misspell


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=".data/eval/full", help="an indexed data folder, trained")
    parser.add_argument("--queries", default=".data/eval/luma/queries.jsonl", help="judged queries (make_luma_eval)")
    parser.add_argument("--split", default="heldout", help="the split searched (blank: every query)")
    parser.add_argument("--seed", type=int, default=7, help="the typos' seed (bench/typos.py's default)")
    parser.add_argument("--description-words", type=int, default=200, help="description words searched")
    return parser.parse_args()


def description_words(model_id: str, args: argparse.Namespace) -> list[str]:
    """Words of the keyword index that only descriptions use (module docstring), ``args.description_words``
    of them drawn with ``args.seed``."""
    from django.db import connection

    from multimodal_search.encoders import get_encoder
    from multimodal_search.ranking.spelling import get_speller
    from multimodal_search.store import sql

    speller = get_speller(model_id)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {sql.PRODUCT_TABLE} WHERE model_id = %s", [model_id])
        (products,) = cursor.fetchone()
        cursor.execute(
            "SELECT word FROM ts_stat(%s) WHERE ndoc >= 2 AND ndoc <= %s AND length(word) >= 4 AND word ~ '^[a-z]+$' "
            "ORDER BY word",
            [f"SELECT {sql.TSVECTOR} FROM {sql.PRODUCT_TABLE} WHERE model_id = '{sql.check_model_id(model_id)}'",
             max(2, products // 20)],
        )  # fmt: skip
        known = get_encoder().known_words()  # a stem ("amaz") is no word a shopper types
        words = [w for (w,) in cursor.fetchall() if w in known and (speller is None or not speller.knows(w))]
    return sorted(random.Random(args.seed).sample(words, min(len(words), args.description_words)))


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    from multimodal_search import services
    from multimodal_search.adapters import get_adapter
    from multimodal_search.evaluation.queries import load_queries
    from multimodal_search.ranking import calibration
    from multimodal_search.ranking.reranker import get_reranker
    from multimodal_search.services.query import current_encoder
    from shop.catalog.evaluation.travel_eval import UNSOLD_PHRASES

    model_id = current_encoder()[1]
    trained = get_reranker(model_id)
    if trained is None or calibration.RELATED not in trained.cuts:
        raise SystemExit("No trained cut in this data folder: run mmsearch_train first.")
    cut = float(trained.cuts[calibration.RELATED])
    adapter = get_adapter()
    rng = random.Random(args.seed)
    queries = [q for q in load_queries(args.queries) if q.kind == "text" and (not args.split or q.split == args.split)]
    judged = [q for q in queries if not q.negative]
    typos = [(made[0], q.graded) for q in judged if (made := misspell(q.query, rng)) is not None]
    unsold = sorted({q.query for q in queries if q.negative} | {text for text, _ in UNSOLD_PHRASES})
    sets: dict[str, list[tuple[str, dict[str, int]]]] = {
        "judged": [(q.query, q.graded) for q in judged],
        "with a typo, as typed": typos,
        "not sold": [(text, {}) for text in unsold],
        "a description's word": [(word, {}) for word in description_words(model_id, args)],
    }

    def page(text: str, relaxed: bool, as_typed: bool) -> tuple[list[str], bool]:
        found = services.search_products(text, k=10, min_relevance="auto" if relaxed else cut, as_typed=as_typed)
        return [str(adapter.to_result(hit.product)["sku"]) for hit in found.hits], "fallback" in found.query

    summary: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for name, items in sets.items():
        as_typed = name != "judged"
        filled = []
        empty_before = empty_after = 0
        for text, graded in items:
            before, _ = page(text, False, as_typed)
            after, fell_back = page(text, True, as_typed)
            empty_before += not before
            empty_after += not after
            if fell_back:
                relevant = [graded.get(sku, 0) > 0 for sku in after]
                filled.append(
                    {"query": text, "shown": len(after), "precision": statistics.fmean(relevant), "first": relevant[0]}
                )
                rows.append({"set": name, **filled[-1], "skus": after})
        graded_set = name in ("judged", "with a typo, as typed")  # the others have no grades
        summary[name] = {
            "queries": len(items),
            "empty_without_fallback": empty_before,
            "empty_with_fallback": empty_after,
            "filled": len(filled),
            "precision_at_10_of_filled": round(statistics.fmean(r["precision"] for r in filled), 4) if filled and graded_set else None,
            "first_relevant_of_filled": round(statistics.fmean(r["first"] for r in filled), 4) if filled and graded_set else None,
        }  # fmt: skip
    results = {"data_dir": args.data_dir, "related_cut": cut, "summary": summary, "filled": rows}
    lines = [
        f"# Dead ends ({args.data_dir}, trained related cut {cut:.3f})",
        "",
        "| queries | n | empty pages without / with the fallback | filled by it | relevant of their first 10 "
        "| first result relevant |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['queries']} | {row['empty_without_fallback']} / {row['empty_with_fallback']} | "
            f"{row['filled']} | {row['precision_at_10_of_filled']} | {row['first_relevant_of_filled']} |"
        )
    for name in ("with a typo, as typed", "not sold", "a description's word"):
        shown = [f"{r['query']!r} ({r['shown']})" for r in rows if r["set"] == name][:15]
        lines += ["", f"Pages filled, {name} (results shown): " + (", ".join(shown) or "none") + "."]
    markdown = "\n".join(lines) + "\n"
    save("dead-ends", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
