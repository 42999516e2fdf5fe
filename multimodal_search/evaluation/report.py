"""The plain-text table ``mmsearch_evaluate`` prints: one row per method and kind, then comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multimodal_search.evaluation.queries import KINDS
from multimodal_search.evaluation.runner import PLAIN_KNN, REFERENCES

_COLUMNS = (
    ("ndcg", "nDCG@{k}"),
    ("recall", "R@{k}"),
    ("mrr", "MRR"),
    ("r1", "R@1"),
    ("r5", "R@5"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("n", "n"),
)


def _cell_text(summary: Mapping[str, Any], name: str, kind: str) -> str:
    if summary.get("skipped") is not None:
        return "-"
    if name in ("r1", "r5") and kind == "text":
        return "-"  # for text queries with many grade-2 items R@1 says little; see JSON
    value = summary.get(name)
    if value is None:
        return "-"
    if name == "n":
        return str(value)
    if name.endswith("_ms"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def best_method(results: Mapping[str, Any], kind: str) -> str | None:
    """The method with the highest nDCG on ``kind`` (``REFERENCES`` excluded; first listed wins ties)."""
    best: tuple[float, str] | None = None
    for method, kinds in results["methods"].items():
        value = kinds[kind].get("ndcg")
        if method not in REFERENCES and value is not None and (best is None or value > best[0]):
            best = (value, method)
    return best[1] if best else None


def format_table(results: Mapping[str, Any]) -> str:
    """A plain-text table: one row per method and kind, then best-vs-others and latency lines."""
    k = results["k"]
    headers = ["method", "kind"] + [label.format(k=k) for _, label in _COLUMNS]
    rows = []
    for kind in KINDS:
        if not results["counts"].get(kind):
            continue
        for method, kinds in results["methods"].items():
            summary = kinds[kind]
            rows.append([method, kind] + [_cell_text(summary, name, kind) for name, _ in _COLUMNS])
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    judged = [f"{n} {kind}" for kind, n in results["counts"].items() if n]
    negatives = [f"{n} negative {kind}" for kind, n in (results.get("negative_counts") or {}).items() if n]
    lines = [
        f"Relevance: {', '.join(judged + negatives)} queries (split {results['split'] or 'all'}, k={k}); "
        f"{results['indexed']}/{results['products']} products indexed with {results['model_id']}",
    ]
    if rows:
        lines += [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]
    for kind in KINDS:
        best = best_method(results, kind)
        if best is None:
            continue
        summary = results["methods"][best][kind]
        deltas = [
            f"{summary['ndcg'] - s[kind]['ndcg']:+.3f} vs {m}"
            for m, s in results["methods"].items()
            if m != best and s[kind].get("ndcg") is not None
        ]
        lines.append(f"best on {kind}: {best} nDCG@{k} {summary['ndcg']:.3f} ({', '.join(deltas)})")
        reference = results["methods"].get(PLAIN_KNN, {}).get(kind, {})
        if reference.get("p50_ms") and summary.get("p50_ms"):
            lines.append(
                f"latency on {kind}: {best} p50 {summary['p50_ms']:.1f} ms / p95 {summary['p95_ms']:.1f} ms; "
                f"plain vector search p50 {reference['p50_ms']:.1f} ms / p95 {reference['p95_ms']:.1f} ms; "
                f"ratio {summary['p50_ms'] / reference['p50_ms']:.2f}x"
            )
    lines.extend(negative_lines(results))
    return "\n".join(lines)


def negative_lines(results: Mapping[str, Any]) -> list[str]:
    """Per method and kind: the share of negative queries that returned nothing, and their top scores."""
    counts = results.get("negative_counts") or {}
    lines = []
    for kind in KINDS:
        if not counts.get(kind):
            continue
        lines.append(f"negative {kind} queries ({counts[kind]}): share with no result; top score p50 / p90 / max")
        for method, kinds in results["negatives"].items():
            summary = kinds[kind]
            if summary.get("skipped") is not None or not summary.get("n"):
                continue
            scores = " / ".join(
                f"{summary[name]:.3f}" if summary.get(name) is not None else "-"
                for name in ("top_score_p50", "top_score_p90", "top_score_max")
            )
            lines.append(f"  {method:<16} {summary['zero_share']:.3f}   {scores}")
    return lines
