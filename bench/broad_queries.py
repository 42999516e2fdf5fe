"""Queries of a colour, a gender, a department or a quality alone ("red", "women's black", "tops", "wool") at the storefront's relevance cut.

    .venv/bin/python bench/broad_queries.py --data-dir .data/scale-luma

On an indexed catalogue whose re-ranker ``mmsearch_train`` fitted with a ``broad`` calibration, every query of that shape the catalogue's
*stated* fields allow is searched: each stated colour alone, and with "women's" and "men's", each
gender alone, each department ``mmsearch_train`` found (``ranking.departments``) alone and with each
gender, and each quality it found (``ranking.qualities``) alone, with each gender and with each department
("sale tops"). A product is
relevant when its stated colour, gender, category path and qualities (title, material, attributes)
are those asked (one that states none counts as not relevant: the figures are a floor). For each query, at the ``related`` cut (the
storefront's), under the ``broad`` calibration and under the ``rerank`` one (what the search used
before the ``broad`` one existed): whether the page is empty, how many results are shown, the share
of them relevant (precision) and the share of the relevant candidates shown (recall). The order of
the results is the same under both: the calibration never re-ranks.

The broad queries are also the shape the ``broad`` calibration was fitted on (``learning.calibration``:
pseudo-queries of the same catalogue, a logistic layer of four numbers), so this measures what a
shopper sees, not a held-out generalisation.

Results: ``bench/results/broad-queries.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from search import save, setup_django


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=".data/scale-luma", help="an indexed data folder, trained")
    parser.add_argument(
        "--min-products", type=int, default=3, help="a colour or a quality needs this many products stating it"
    )
    return parser.parse_args()


#: a product's stated colours, gender, departments and qualities
Fact = tuple[list[str], str | None, tuple[str, ...], tuple[str, ...]]
#: what a query asks: colour, gender, department, quality
Asked = tuple[str | None, str | None, str | None, str | None]
#: the kinds of query the results are summed by
KINDS = ("colour or gender", "department", "quality", "quality and department")


def stated(fields: dict[str, Any], departments: tuple[str, ...], qualities: tuple[str, ...]) -> Fact:
    from multimodal_search.ranking import vocabulary as v
    from multimodal_search.ranking.colour import colours_in_text
    from multimodal_search.ranking.text import normal_gender

    colours = colours_in_text(str(fields.get(v.FIELD_COLOR) or ""))
    return colours, normal_gender(str(fields.get(v.FIELD_GENDER) or "")), departments, qualities


def queries(
    facts: dict[str, Fact], min_products: int, departments: list[str], qualities: list[str]
) -> dict[str, Asked]:
    """Query text -> (colour, gender, department, quality) asked."""
    counts: dict[str, int] = {}
    for colours, *_rest in facts.values():
        for colour in colours:
            counts[colour] = counts.get(colour, 0) + 1
    found: dict[str, Asked] = {"women": (None, "women", None, None), "men": (None, "men", None, None)}
    for colour in sorted(name for name, n in counts.items() if n >= min_products):
        found[colour] = (colour, None, None, None)
        for gender in ("women", "men"):
            if any(colour in c and g in (gender, "unisex") for c, g, *_ in facts.values()):
                found[f"{gender}'s {colour}"] = (colour, gender, None, None)
    for department in departments:
        found[department] = (None, None, department, None)
        for gender in ("women", "men"):
            if any(department in d and g in (gender, "unisex") for _, g, d, _ in facts.values()):
                found[f"{gender}'s {department}"] = (None, gender, department, None)
    for quality in qualities:
        if sum(quality in q for *_, q in facts.values()) < min_products:
            continue
        found.setdefault(quality, (None, None, None, quality))
        for gender in ("women", "men"):
            if sum(quality in q and g in (gender, "unisex") for _, g, _, q in facts.values()) >= min_products:
                found.setdefault(f"{gender}'s {quality}", (None, gender, None, quality))
        # with a department ("sale tops", "wool bottoms"): a product of the department must state it too
        for department in departments:
            if sum(quality in q and department in d for _, _, d, q in facts.values()) >= min_products:
                found.setdefault(f"{quality} {department}", (None, None, department, quality))
    return found


def kind_of(asked: Asked) -> str:
    if asked[2] is not None and asked[3] is not None:
        return KINDS[3]
    return KINDS[2] if asked[3] is not None else KINDS[1] if asked[2] is not None else KINDS[0]


def relevant(fact: Fact, asked: Asked) -> bool:
    colours, gender, departments, qualities = fact
    colour, wanted, department, quality = asked
    return (
        (colour is None or colour in colours)
        and (wanted is None or gender in (wanted, "unisex"))
        and (department is None or department in departments)
        and (quality is None or quality in qualities)
    )


def _routed(encode: Any, broad: bool) -> Any:
    """``encode_query`` with the query routed to the ``broad`` calibration (True) or not (False)."""

    def routed(*args: Any, **kwargs: Any) -> Any:
        query = encode(*args, **kwargs)
        query.broad = broad
        return query

    return routed


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    from unittest import mock

    from multimodal_search.adapters import get_adapter
    from multimodal_search.encoders import get_encoder
    from multimodal_search.ranking import calibration
    from multimodal_search.ranking.departments import Departments, get_departments
    from multimodal_search.ranking.qualities import Qualities, get_qualities
    from multimodal_search.services import search as search_service

    model_id = get_encoder().model_id
    model = search_service.get_reranker(model_id)
    if model is None or calibration.BROAD not in model.calibrations:
        raise SystemExit("No broad calibration in this data folder: run mmsearch_train with this code first.")
    adapter = get_adapter()
    known = get_departments(model_id) or Departments()
    qualities = get_qualities(model_id) or Qualities()
    facts = {
        str(p.pk): stated(
            fields := adapter.get_fields(p), known.of_product(adapter.get_categories(p)), qualities.of_product(fields)
        )
        for p in adapter.get_queryset()
    }
    rows: list[dict[str, Any]] = []
    found = queries(facts, args.min_products, sorted(known.leaves), qualities.most_stated())
    for text, asked in found.items():
        row: dict[str, Any] = {"query": text, "kind": kind_of(asked)}
        for name, broad in (("broad", True), ("rerank", False)):
            with mock.patch.object(search_service, "encode_query", _routed(search_service.encode_query, broad)):
                ranked = search_service.rank_products(
                    text, None, k=10, category=None, method=None, min_relevance=None, limit=None, explain=False
                )
            cut = ranked.cuts.get(calibration.RELATED, 0.5)
            good = [relevant(facts.get(str(hit.product_pk), ([], None, (), ())), asked) for hit in ranked.hits]
            shown = [g for hit, g in zip(ranked.hits, good) if (hit.relevance or 0.0) >= cut]
            row[name] = {
                "shown": len(shown),
                "precision": round(sum(shown) / len(shown), 4) if shown else None,
                "recall": round(sum(shown) / max(sum(good), 1), 4),
                "p_at_10": round(sum(good[:10]) / 10, 4),
            }
        rows.append(row)

    def summary(name: str, kind: list[dict[str, Any]]) -> dict[str, Any]:
        precisions = [r[name]["precision"] for r in kind if r[name]["precision"] is not None]
        return {
            "queries": len(kind),
            "empty": sum(1 for r in kind if r[name]["shown"] == 0),
            "shown_median": statistics.median(r[name]["shown"] for r in kind),
            "precision_mean": round(statistics.mean(precisions), 4) if precisions else None,
            "recall_mean": round(statistics.mean(r[name]["recall"] for r in kind), 4),
            "p_at_10_mean": round(statistics.mean(r[name]["p_at_10"] for r in kind), 4),
        }

    kinds = {label: [r for r in rows if r["kind"] == label] for label in KINDS}
    totals = {
        f"{label}: {name}": summary(name, kind) for label, kind in kinds.items() if kind for name in ("broad", "rerank")
    }
    lines = [
        f"Queries of a colour, a gender, a department or a quality alone: {len(rows)} (data folder {args.data_dir}), "
        "at the `related` cut",
        "",
        "| queries | calibration | empty pages | results shown (median) | precision of those shown | recall | P@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, total in totals.items():
        kind, name = label.split(": ")
        lines.append(
            f"| {kind} | `{name}` | {total['empty']} of {total['queries']} | {total['shown_median']} "
            f"| {total['precision_mean']} | {total['recall_mean']} | {total['p_at_10_mean']} |"
        )
    lines += ["", "| query | broad: shown / precision / recall | rerank: shown / precision / recall |", "|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['query']} | {r['broad']['shown']} / {r['broad']['precision']} / {r['broad']['recall']} "
            f"| {r['rerank']['shown']} / {r['rerank']['precision']} / {r['rerank']['recall']} |"
        )
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    save("broad-queries", {"queries": rows, "summary": totals}, markdown)


if __name__ == "__main__":
    main()
