"""nDCG@10 per query facet template, from a ``mmsearch_evaluate --json`` file.

    .venv/bin/python bench/relevance_breakdown.py bench/results/relevance-minimal.json \
        [--queries .data/eval/luma/queries.jsonl] [--method rerank --method lexical]

Groups the text queries by which facets they ask for ("noun", "noun+colour",
"noun+gender+material", ...), using the ``facets`` the Luma generator writes,
and prints the mean nDCG@10 of each method per group: where a method loses.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--queries", default=None, help="queries.jsonl (default: the file the results name)")
    parser.add_argument("--method", action="append", dest="methods")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())
    queries_path = Path(args.queries or results["queries_file"])
    facets = {}
    for line in queries_path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            facets[row["qid"]] = "+".join(sorted(row.get("facets", {"noun": ""}), key=lambda f: (f != "noun", f)))
    methods = args.methods or list(results["methods"])
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in results["queries"]:
        if row["kind"] == "text" and row["method"] in methods:
            table[facets.get(row["qid"], "?")][row["method"]].append(row["ndcg"])
    width = max(len(g) for g in table) + 2
    print("template".ljust(width) + "n".rjust(5) + "".join(m[:9].rjust(10) for m in methods))
    for group in sorted(table, key=lambda g: (-len(next(iter(table[g].values()))), g)):
        cells = table[group]
        n = len(next(iter(cells.values())))
        print(
            group.ljust(width)
            + str(n).rjust(5)
            + "".join((f"{sum(cells[m]) / len(cells[m]):.3f}" if cells.get(m) else "-").rjust(10) for m in methods)
        )


if __name__ == "__main__":
    main()
