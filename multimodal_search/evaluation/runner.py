"""Runs judged queries through every search method and scores the rankings.

Ties are broken fairly: results are re-sorted by score rounded to 6 decimals and
then by ``ranking.fusion.tie_key(qid, sku)``, so products with equal scores (colour variants
with the same text) are ordered pseudo-randomly but reproducibly, never by row order.
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from multimodal_search import services
from multimodal_search.adapters import get_adapter
from multimodal_search.evaluation.metrics import fair_ranking, query_metrics
from multimodal_search.evaluation.queries import KINDS, JudgedQuery

#: extra rows fetched beyond k so that ties at the cut-off are broken fairly
TIE_MARGIN = 40
MAX_RESULTS = services.MAX_K
#: reference "method": encode the query and run one HNSW query (text vector or photo features)
PLAIN_KNN = "plain-knn"


@dataclass
class _Cell:
    """Results of one method on one kind of query."""

    metrics: list[dict[str, float]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    skipped: str | None = None


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _summary(cell: _Cell) -> dict[str, Any]:
    if cell.skipped is not None:
        return {"n": 0, "skipped": cell.skipped}
    out: dict[str, Any] = {"n": len(cell.metrics)}
    for name in ("ndcg", "recall", "mrr", "r1", "r5"):
        out[name] = round(statistics.fmean(m[name] for m in cell.metrics), 4) if cell.metrics else None
    if cell.latencies:
        out["p50_ms"] = round(statistics.median(cell.latencies), 2)
        out["p95_ms"] = round(_percentile(cell.latencies, 0.95), 2)
        out["mean_ms"] = round(statistics.fmean(cell.latencies), 2)
    return out


class _Searcher:
    """Runs one query with one method; returns (scored sku pairs, milliseconds)."""

    def __init__(self, fetch: int) -> None:
        self.fetch = fetch
        self.adapter = get_adapter()
        self._photos: dict[str, bytes] = {}

    def photo_bytes(self, query: JudgedQuery) -> bytes:
        if query.query not in self._photos:
            self._photos[query.query] = query.photo_path.read_bytes()
        return self._photos[query.query]

    def run(self, query: JudgedQuery, method: str) -> tuple[list[tuple[str, float]], float]:
        data = self.photo_bytes(query) if query.kind == "image" else None
        started = time.perf_counter()
        image = Image.open(io.BytesIO(data)) if data is not None else None
        text = query.query if query.kind == "text" else None
        if method == PLAIN_KNN:
            pairs = services.plain_knn(text, image, k=self.fetch)
        else:
            response = services.search_products(text, image, k=self.fetch, method=method)
            pairs = [(hit.product, hit.score) for hit in response.hits]
        elapsed = (time.perf_counter() - started) * 1000
        return [(str(self.adapter.to_result(product)["sku"]), score) for product, score in pairs], elapsed


def default_methods() -> list[str]:
    """Every method the search service offers, then the plain kNN latency reference."""
    return [*services.METHODS, PLAIN_KNN]


def run_evaluation(
    queries: Sequence[JudgedQuery],
    methods: Sequence[str] | None = None,
    *,
    k: int = 10,
    split: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Search every query with every method and score the rankings.

    Methods run interleaved (query by query) so that latency drift hits all alike;
    each (method, kind) gets one untimed warm-up search first. A method that rejects
    a kind of query (``SearchError``, e.g. a words-only method given a photo) is
    skipped for that kind.

    Args:
        queries: judged queries (``load_queries``).
        methods: method names of ``services.METHODS`` and/or ``PLAIN_KNN`` (default: all).
        k: metric cut-off; k + ``TIE_MARGIN`` results are fetched for fair tie-breaking.
        split: keep only queries whose ``split`` equals this.
        progress: called with 1 after each search (e.g. ``tqdm.update``).

    Returns:
        ``{"k", "split", "methods": {method: {kind: summary}}, "queries": [...], ...}``;
        a summary has n, ndcg, recall, mrr, r1, r5, p50_ms, p95_ms, mean_ms (or skipped).
    """
    if not 1 <= k <= MAX_RESULTS - TIE_MARGIN:
        raise ValueError(f"k must be between 1 and {MAX_RESULTS - TIE_MARGIN}")
    methods = list(methods or default_methods())
    selected = [q for q in queries if split is None or q.split == split]
    searcher = _Searcher(fetch=k + TIE_MARGIN)
    cells = {(m, kind): _Cell() for m in methods for kind in KINDS}
    for kind in KINDS:
        first = next((q for q in selected if q.kind == kind), None)
        for method in methods:
            cell = cells[(method, kind)]
            if first is None:
                cell.skipped = "no queries"
            else:
                try:
                    searcher.run(first, method)  # warm-up: loads models, fills caches
                except services.SearchError as exc:
                    cell.skipped = str(exc)
    per_query = []
    for query in selected:
        for method in methods:
            cell = cells[(method, query.kind)]
            if cell.skipped is None:
                scored, ms = searcher.run(query, method)
                ranked = fair_ranking(query.qid, scored, k)
                metrics = query_metrics(ranked, query.graded, k)
                cell.metrics.append(metrics)
                cell.latencies.append(ms)
                per_query.append(
                    {
                        "qid": query.qid,
                        "kind": query.kind,
                        "method": method,
                        **{name: round(v, 4) for name, v in metrics.items()},
                        "ms": round(ms, 2),
                        "top": ranked,
                    }
                )
            if progress is not None:
                progress(1)
    index = services.index_status()
    return {
        "k": k,
        "split": split,
        "model_id": index["model_id"],
        "products": index["products"],
        "indexed": index["indexed"],
        "counts": {kind: sum(1 for q in selected if q.kind == kind) for kind in KINDS},
        "methods": {m: {kind: _summary(cells[(m, kind)]) for kind in KINDS} for m in methods},
        "queries": per_query,
    }
