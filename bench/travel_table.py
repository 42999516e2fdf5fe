"""One table from bench/travel.sh's results: methods x (Luma text, Luma photos, merged, shopper, negatives).

Usage: .venv/bin/python bench/travel_table.py [--variant minimal] [--results bench/results] [--suffix S]

Cells are nDCG@10 / MRR / R@1 of held-out queries (text: nDCG@10 / MRR); the negative columns are the
share of negative queries that returned nothing and the median top score. A last line gives each
method's difference to the ``backbone`` row on the photo sets, and the shopper set is broken down by
backdrop and EXIF rotation (nDCG@10; the recipes are read from its query file, ``--queries``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SETS = (("luma", "text", "Luma text"), ("luma", "image", "Luma photo"), ("merged", "image", "(a) merged"),
        ("shopper", "image", "(b) shopper"))  # fmt: skip
NEGATIVE_KINDS = (("text", "(c) neg text"), ("image", "(c) neg photo"))
BASELINE = "backbone"


def load(results: Path, name: str, variant: str, suffix: str) -> dict[str, Any] | None:
    path = results / f"travel-{name}-{variant}{suffix}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cell(summary: dict[str, Any] | None, kind: str) -> str:
    if not summary or summary.get("skipped") is not None or summary.get("ndcg") is None:
        return "-"
    if kind == "text":
        return f"{summary['ndcg']:.3f} / {summary['mrr']:.3f}"
    return f"{summary['ndcg']:.3f} / {summary['mrr']:.3f} / {summary['r1']:.3f}"


def negative_cell(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("skipped") is not None or not summary.get("n"):
        return "-"
    top = summary.get("top_score_p50")
    return f"{summary['zero_share']:.2f} / {top:.3f}" if top is not None else f"{summary['zero_share']:.2f} / -"


def shopper_breakdown(results: dict[str, Any], queries: Path) -> list[str]:
    """nDCG@10 per method on the shopper set by backdrop and by EXIF rotation."""
    if not queries.is_file():
        return []
    recipes = {}
    for line in queries.read_text().splitlines():
        row = json.loads(line)
        recipe = row.get("recipe") or {}
        rotated = "rotated" if recipe.get("orientation", 1) != 1 else "upright"
        recipes[row["qid"]] = (recipe.get("backdrop", "-"), rotated)
    groups = ["cream", "grey", "busy", "kept", "upright", "rotated"]
    values: dict[str, dict[str, list[float]]] = {}
    for row in results.get("queries", []):
        if row["qid"] not in recipes or "ndcg" not in row:
            continue
        backdrop, rotated = recipes[row["qid"]]
        for group in (backdrop, rotated):
            values.setdefault(row["method"], {}).setdefault(group, []).append(row["ndcg"])
    counts = {g: sum(1 for b, r in recipes.values() if g in (b, r)) for g in groups}
    lines = ["(b) shopper nDCG@10 by backdrop / rotation: " + ", ".join(f"{g} {counts[g]}" for g in groups)]
    for method, by_group in values.items():
        cells = [f"{sum(v) / len(v):.3f}" if (v := by_group.get(g)) else "-" for g in groups]
        lines.append(f"  {method:<16} " + "  ".join(f"{g}={c}" for g, c in zip(groups, cells)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="minimal")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--suffix", default="")
    parser.add_argument(
        "--queries", type=Path, default=Path(".data/eval-travel/sets/shopper/queries.jsonl"), help="shopper queries"
    )
    parser.add_argument("--limit", type=int, default=None, help="only noted in the title (travel.sh LIMIT)")
    args = parser.parse_args()
    data = {name: load(args.results, name, args.variant, args.suffix) for name in ("luma", "merged", "shopper")}
    negative = load(args.results, "negative", args.variant, args.suffix)
    methods: list[str] = []
    for results in [*data.values(), negative]:
        for method in (results or {}).get("methods", {}):
            if method not in methods:
                methods.append(method)
    headers = ["method"] + [label for _, _, label in SETS] + [label for _, label in NEGATIVE_KINDS]
    rows = []
    for method in methods:
        row = [method]
        for name, kind, _label in SETS:
            results = data[name]
            row.append(cell((results or {}).get("methods", {}).get(method, {}).get(kind), kind))
        for kind, _label in NEGATIVE_KINDS:
            row.append(negative_cell((negative or {}).get("negatives", {}).get(method, {}).get(kind)))
        rows.append(row)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    counts = []
    for name, kind, label in SETS:
        n = ((data[name] or {}).get("counts") or {}).get(kind)
        counts.append(f"{label} {n if n is not None else '-'}")
    for kind, label in NEGATIVE_KINDS:
        n = ((negative or {}).get("negative_counts") or {}).get(kind)
        counts.append(f"{label} {n if n is not None else '-'}")
    limited = f", first {args.limit} queries per set and kind" if args.limit else ""
    print(f"Relevance that travels ({args.variant}{limited}); queries: {', '.join(counts)}")
    print("cells: nDCG@10 / MRR / R@1 (text: nDCG@10 / MRR); negatives: share with no result / median top score")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for name, kind, label in SETS[1:]:
        base = ((data[name] or {}).get("methods", {}).get(BASELINE) or {}).get(kind) or {}
        if base.get("ndcg") is None:
            continue
        deltas = []
        for method in methods:
            summary = (data[name] or {}).get("methods", {}).get(method, {}).get(kind) or {}
            if method != BASELINE and summary.get("ndcg") is not None:
                deltas.append(f"{method} {summary['ndcg'] - base['ndcg']:+.3f}/{summary['mrr'] - base['mrr']:+.3f}")
        print(f"vs backbone on {label} (nDCG/MRR): {', '.join(deltas)}")
    if data["shopper"]:
        print("\n".join(shopper_breakdown(data["shopper"], args.queries)))


if __name__ == "__main__":
    main()
