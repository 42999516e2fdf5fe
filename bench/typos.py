"""Misspelt queries: judged text queries with one typo, searched as typed and with the spelling correction.

    .venv/bin/python bench/typos.py --data-dir .data/eval/full --queries .data/eval/luma/queries.jsonl

On an indexed data folder that ``mmsearch_train`` trained with this code (so that it holds the
catalogue's dictionary, ``ranking.spelling``), each judged text query of the held-out split with a
word of 5 letters or more gets one typo in one such word (seeded): a letter left out, two neighbours
swapped, a letter replaced by a neighbour on a QWERTY keyboard, or a letter doubled, never the first
letter. Each query is then searched three ways with the default method: as judged (clean), the typo
as typed (``as_typed=True``) and the typo as a shopper's search runs it (corrected when the
dictionary lacks the word). Reported: nDCG@10 and recall@10 of each, the share of typos read back
as the judged words, the clean queries the correction changed (false corrections), and the share
of storefront pages (``min_relevance="auto"``) left empty.

The typos are made by a program, not typed by shoppers (who leave out and swap letters more than
they double them), and the judged queries use the catalogue's words (they were made from its
products), so most misspelt words have their right form in the dictionary: the figures are for
typos of words the catalogue uses.

Results: ``bench/results/typos.{json,md}``.
"""

from __future__ import annotations

import argparse
import random
import statistics
from typing import Any

from search import save, setup_django

#: the letters next to each on a QWERTY keyboard
NEIGHBOURS = {
    "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij", "i": "uok", "o": "ipl",
    "p": "ol", "a": "qsz", "s": "adwx", "d": "sfec", "f": "dgrv", "g": "fhtb", "h": "gjyn", "j": "hkum",
    "k": "jli", "l": "ko", "z": "xa", "x": "zcs", "c": "xvd", "v": "cbf", "b": "vng", "n": "bmh", "m": "nj",
}  # fmt: skip
KINDS = ("left out", "swapped", "neighbour key", "doubled")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=".data/eval/full", help="an indexed data folder, trained")
    parser.add_argument("--queries", default=".data/eval/luma/queries.jsonl", help="judged queries (make_luma_eval)")
    parser.add_argument("--split", default="heldout", help="the split searched (blank: every query)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--limit", type=int, default=0, help="at most this many queries (0: all)")
    return parser.parse_args()


def misspell(text: str, rng: random.Random) -> tuple[str, str] | None:
    """``text`` with one typo in one of its words of 5 letters or more, and the kind; None: no such word."""
    words = text.split(" ")
    long = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not long:
        return None
    i = rng.choice(long)
    word = words[i].lower()
    kind = rng.choice(KINDS)
    at = rng.randrange(1, len(word) - 1)
    if kind == "left out":
        typo = word[:at] + word[at + 1 :]
    elif kind == "swapped":
        typo = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    elif kind == "neighbour key":
        typo = word[:at] + rng.choice(NEIGHBOURS.get(word[at], word[at])) + word[at + 1 :]
    else:
        typo = word[:at] + word[at] + word[at:]
    if typo == word:
        return None
    return " ".join(words[:i] + [typo] + words[i + 1 :]), kind


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    from multimodal_search import services
    from multimodal_search.adapters import get_adapter
    from multimodal_search.encoders import get_encoder
    from multimodal_search.evaluation.metrics import fair_ranking, query_metrics
    from multimodal_search.evaluation.queries import load_queries
    from multimodal_search.evaluation.runner import TIE_MARGIN
    from multimodal_search.ranking.spelling import get_speller

    speller = get_speller(get_encoder().model_id)
    if speller is None:
        raise SystemExit("No spelling dictionary in this data folder: run mmsearch_train with this code first.")
    adapter = get_adapter()
    rng = random.Random(args.seed)
    judged = [
        q
        for q in load_queries(args.queries)
        if q.kind == "text" and not q.negative and (not args.split or q.split == args.split)
    ]
    if args.limit:
        judged = judged[: args.limit]

    def search(text: str, qid: str, graded: dict[str, int], as_typed: bool) -> tuple[dict[str, float], Any, bool]:
        response = services.search_products(text, k=10 + TIE_MARGIN, as_typed=as_typed)
        scored = [(str(adapter.to_result(hit.product)["sku"]), hit.score) for hit in response.hits]
        shown = services.search_products(text, k=10, min_relevance="auto", as_typed=as_typed)
        return (
            query_metrics(fair_ranking(qid, scored, 10), graded, 10),
            response.query.get("corrected"),
            bool(shown.hits),
        )

    rows: list[dict[str, Any]] = []
    false_corrections = []
    for query in judged:
        made = misspell(query.query, rng)
        clean, clean_fix, clean_shown = search(query.query, query.qid, query.graded, False)
        if clean_fix is not None:
            false_corrections.append((query.query, clean_fix))
        if made is None:
            continue
        typo, kind = made
        typed, _, typed_shown = search(typo, query.qid, query.graded, True)
        fixed, fix, fixed_shown = search(typo, query.qid, query.graded, False)
        rows.append(
            {
                "query": query.query,
                "typo": typo,
                "kind": kind,
                "corrected": fix,
                "back": bool(fix) and fix.lower() == query.query.lower(),
                **{f"{name}_{m}": round(metrics[m], 4) for name, metrics in (("clean", clean), ("typed", typed), ("fixed", fixed)) for m in ("ndcg", "recall")},
                "clean_shown": clean_shown,
                "typed_shown": typed_shown,
                "fixed_shown": fixed_shown,
            }
        )  # fmt: skip

    def mean(key: str, subset: list[dict[str, Any]]) -> float:
        return round(statistics.fmean(row[key] for row in subset), 4) if subset else float("nan")

    groups = {"all": rows, **{kind: [row for row in rows if row["kind"] == kind] for kind in KINDS}}
    summary = {
        name: {
            "n": len(subset),
            "corrected": sum(1 for row in subset if row["corrected"]),
            "read_back": sum(1 for row in subset if row["back"]),
            **{f"{way}_{m}": mean(f"{way}_{m}", subset) for way in ("clean", "typed", "fixed") for m in ("ndcg", "recall")},
            **{f"{way}_empty": sum(1 for row in subset if not row[f"{way}_shown"]) for way in ("clean", "typed", "fixed")},
        }
        for name, subset in groups.items()
    }  # fmt: skip
    results = {
        "data_dir": args.data_dir,
        "queries": len(judged),
        "with_a_typo": len(rows),
        "dictionary_words": len(speller),
        "false_corrections": false_corrections,
        "summary": summary,
        "rows": rows,
    }
    lines = [
        f"# Misspelt queries ({args.data_dir}, {len(judged)} judged text queries, {len(rows)} with a typo, "
        f"dictionary of {len(speller)} words)",
        "",
        f"Clean queries the correction changed: {len(false_corrections)} of {len(judged)}"
        + (": " + "; ".join(f"{a!r} -> {b!r}" for a, b in false_corrections[:10]) if false_corrections else "."),
        "",
        "| typos | n | corrected | read back | nDCG@10 clean / as typed / corrected | R@10 clean / as typed / corrected "
        "| empty pages clean / as typed / corrected |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['n']} | {row['corrected']} | {row['read_back']} | {row['clean_ndcg']} / "
            f"{row['typed_ndcg']} / {row['fixed_ndcg']} | {row['clean_recall']} / {row['typed_recall']} / "
            f"{row['fixed_recall']} | {row['clean_empty']} / {row['typed_empty']} / {row['fixed_empty']} |"
        )
    markdown = "\n".join(lines) + "\n"
    save("typos", results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
