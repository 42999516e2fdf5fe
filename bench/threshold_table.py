"""The storefront threshold on judged and negative queries, from mmsearch_evaluate's JSON outputs.

    python bench/threshold_table.py --queries Q.jsonl --plain A.json --cut B.json [--queries ... ] \
        --negatives N.json

For each judged set: the share of queries whose first relevant result in the plain top 10 is gone once
the search drops results below the storefront cut (``--min-relevance auto``), per method and kind.
For negatives: the share returning no result at that cut. Used by bench/travel.sh.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def _grades(path: Path) -> dict[str, dict[str, float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["qid"]: row.get("graded") or {} for row in rows}


def lost_first_relevant(
    grades: dict[str, dict[str, float]], plain: dict, cut: dict
) -> dict[tuple[str, str], tuple[int, int]]:
    """(method, kind) -> (queries whose first relevant result the cut removed, queries with one)."""
    kept = {(q["qid"], q["method"]): set(q["top"]) for q in cut["queries"]}
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for query in plain["queries"]:
        graded = grades.get(query["qid"], {})
        first = next((sku for sku in query["top"] if graded.get(sku, 0) > 0), None)
        key = (query["method"], query["kind"])
        if first is None or (query["qid"], query["method"]) not in kept:
            continue
        counts[key][1] += 1
        counts[key][0] += first not in kept[(query["qid"], query["method"])]
    return {key: (lost, n) for key, (lost, n) in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", nargs=4, metavar=("NAME", "QUERIES", "PLAIN", "CUT"), default=[])
    parser.add_argument("--negatives", type=Path, action="append", default=[])
    args = parser.parse_args()
    print("Storefront threshold (min_relevance=auto): judged queries whose first relevant result is dropped")
    print(f"{'set':<10} {'method':<10} {'kind':<6} {'lost':>6} {'of':>5} {'share':>7}")
    for name, queries, plain, cut in args.set:
        table = lost_first_relevant(
            _grades(Path(queries)), json.loads(Path(plain).read_text()), json.loads(Path(cut).read_text())
        )
        for (method, kind), (lost, n) in sorted(table.items()):
            print(f"{name:<10} {method:<10} {kind:<6} {lost:>6} {n:>5} {lost / n if n else 0:>7.1%}")
    for path in args.negatives:
        data = json.loads(path.read_text())
        print(f"\nNegative queries at the same cut ({path.name}): share returning no result")
        for method, kinds in data["negatives"].items():
            cells = [f"{kind} {s['zero_share']:.0%} of {s['n']}" for kind, s in kinds.items() if s.get("n")]
            if cells:
                print(f"  {method:<10} " + ", ".join(cells))


if __name__ == "__main__":
    main()
