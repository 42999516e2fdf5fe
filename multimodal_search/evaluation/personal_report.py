"""The plain-text table ``mmsearch_evaluate_personal`` prints (results of ``evaluation.personal``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multimodal_search.evaluation.personal import METHODS

#: the acceptance checks of the personalisation issue
MIN_RATIO_VS_POPULARITY = 1.5
MAX_NEUTRAL_DROP = 0.02
UNAVAILABLE = "re-ranking: not available in this build"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "n/a (baseline 0)" if value is None else f"{value:.2f}x"


def format_table(results: Mapping[str, Any]) -> str:
    """Recommendation rows per set of shoppers and method, ratio lines, then re-ranking lines."""
    k = results["k"]
    lines = [f"Personalisation: {results['products']} products indexed with {results['model_id']}, k={k}"]
    headers = ["shoppers", "method", "n", f"hit@{k}", f"nDCG@{k}"]
    rows = []
    for name in ("real", "simulated"):
        part = results.get(name) or {}
        for method in METHODS:
            summary = part.get("methods", {}).get(method, {})
            rows.append(
                [name, method, str(part.get("n", 0)), _number(summary.get("hit_rate")), _number(summary.get("ndcg"))]
            )
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines += [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]
    real = results.get("real") or {}
    if real.get("n"):
        note = " (too few shoppers to conclude anything)" if real["n"] < 30 else ""
        lines.append(
            f"real: profile hit-rate@{k} {_times(real['ratio_vs_popularity'])} popularity, "
            f"{_times(real['ratio_vs_random'])} random; {real['n']} shoppers{note}"
        )
    else:
        lines.append("real: no recorded shopper with 2 or more products (import or record events first)")
    if real.get("unusable"):
        lines.append(
            f"real: {real['unusable']} more shopper(s) left out: held-out product not indexed or no usable event"
        )
    simulated = results.get("simulated") or {}
    if simulated.get("n"):
        ratio = simulated["ratio_vs_popularity"]
        verdict = "met" if ratio is None or ratio >= MIN_RATIO_VS_POPULARITY else "NOT met"
        lines.append(
            f"simulated: profile hit-rate@{k} {_times(ratio)} popularity (acceptance >= {MIN_RATIO_VS_POPULARITY}x: "
            f"{verdict}), {_times(simulated['ratio_vs_random'])} random; {simulated['n']} shoppers over "
            f"{simulated['tastes']} tastes (colour + category), seed {simulated['seed']}"
        )
    else:
        lines.append(f"simulated: {simulated.get('skipped') or 'no shoppers'}")
    lines += _reranking_lines(results, k)
    return "\n".join(lines)


def _reranking_lines(results: Mapping[str, Any], k: int) -> list[str]:
    reranking = results.get("reranking")
    if reranking is None:
        return []
    if not reranking.get("available"):
        return [UNAVAILABLE]
    lines = []
    lift = reranking.get("lift") or {}
    if lift.get("n"):
        lines.append(
            f"re-ranking ({lift['n']} simulated shoppers, query = a word of their taste's category): taste share "
            f"in top {k} {lift['share_off']:.3f} -> {lift['share_on']:.3f} ({lift['lift']:+.3f}); taste items "
            f"moved {_number(lift['mean_rank_change'], 2)} places up on average "
            f"({_number(lift['moved_up_share'], 2)} of them moved up)"
        )
    neutral = reranking.get("neutral") or {}
    if neutral.get("n"):
        verdict = "met" if neutral["drop"] <= MAX_NEUTRAL_DROP else "NOT met"
        lines.append(
            f"neutral profile: nDCG@{k} {neutral['ndcg_off']:.3f} -> {neutral['ndcg_on']:.3f} "
            f"(drop {neutral['drop']:+.4f}; acceptance <= {MAX_NEUTRAL_DROP}: {verdict}) on {neutral['n']} "
            f"queries, method {neutral['method']}"
        )
    elif neutral.get("skipped"):
        lines.append(f"neutral profile: skipped ({neutral['skipped']})")
    if reranking.get("sweep"):
        lines.append(f"blend sweep (taste share in top {k} with the profile; neutral profile's nDCG@{k} drop):")
        for row in reranking["sweep"]:
            lift, drop = row.get("lift") or {}, (row.get("neutral") or {}).get("drop")
            lines.append(
                f"  blend {row['blend']:g}: taste share {_number(lift.get('share_off'))} -> "
                f"{_number(lift.get('share_on'))} ({lift.get('lift', 0):+.3f}), neutral drop {_number(drop, 4)}"
            )
        suggested = reranking.get("suggested_blend")
        lines.append(
            "suggested PERSONALISATION['BLEND']: "
            + (f"{suggested:g}" if suggested is not None else "none of these (keep personal re-ranking off: 0)")
        )
    return lines
