"""Runs judged queries through every search method and scores the rankings.

Ties are broken fairly: results are re-sorted by score rounded to 6 decimals and
then by ``ranking.fusion.tie_key(qid, sku)``, so products with equal scores (colour variants
with the same text) are ordered pseudo-randomly but reproducibly, never by row order.

Two reference "methods" sit beside the service's: ``PLAIN_KNN`` (one HNSW query, the latency
reference) and ``BACKBONE`` (raw EfficientNet features, best photo per product, photo queries
only: the floor a learned photo path must beat; ``services.baseline``).

Negative queries (``JudgedQuery.negative``: things the catalogue does not sell) are not scored
by relevance: per method and kind the runner reports the share that returned no result and the
top score of those that did (``search_options``, e.g. ``{"min_relevance": 0.5}``, reach the
search service unchanged, so a threshold can be studied on the same queries).
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

from multimodal_search import services
from multimodal_search.adapters import get_adapter
from multimodal_search.evaluation.metrics import fair_ranking, query_metrics
from multimodal_search.evaluation.queries import KINDS, JudgedQuery
from multimodal_search.services.baseline import BackboneGallery, backbone_gallery

#: extra rows fetched beyond k so that ties at the cut-off are broken fairly
TIE_MARGIN = 40
MAX_RESULTS = services.MAX_K
#: reference "method": encode the query and run one HNSW query (text vector or photo features)
PLAIN_KNN = "plain-knn"
#: baseline "method": raw backbone features of the query photo against every product photo (no learned part)
BACKBONE = "backbone"
#: methods that are references, not the service's (never "best")
REFERENCES = (PLAIN_KNN, BACKBONE)


@dataclass
class _Cell:
    """Results of one method on one kind of query."""

    metrics: list[dict[str, float]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    skipped: str | None = None
    #: negative queries: the top score of each (None when it returned nothing)
    top_scores: list[float | None] = field(default_factory=list)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _summary(cell: _Cell) -> dict[str, Any]:
    if cell.skipped is not None:
        return {"n": 0, "skipped": cell.skipped}
    out: dict[str, Any]
    if cell.top_scores:
        out = _negative_summary(cell.top_scores)
    else:
        out = {"n": len(cell.metrics)}
        for name in ("ndcg", "recall", "mrr", "r1", "r5"):
            out[name] = round(statistics.fmean(m[name] for m in cell.metrics), 4) if cell.metrics else None
    if cell.latencies:
        out["p50_ms"] = round(statistics.median(cell.latencies), 2)
        out["p95_ms"] = round(_percentile(cell.latencies, 0.95), 2)
        out["mean_ms"] = round(statistics.fmean(cell.latencies), 2)
    return out


def _negative_summary(top_scores: Sequence[float | None]) -> dict[str, Any]:
    """Share of negative queries with no result; top scores of the others (to study a threshold)."""
    scores = [score for score in top_scores if score is not None]
    out: dict[str, Any] = {"n": len(top_scores), "zero_share": round(1 - len(scores) / len(top_scores), 4)}
    if scores:
        out.update(
            top_score_p50=round(statistics.median(scores), 4),
            top_score_p90=round(_percentile(scores, 0.9), 4),
            top_score_max=round(max(scores), 4),
        )
    return out


class _Searcher:
    """Runs one query with one method; returns (scored sku pairs, milliseconds)."""

    def __init__(self, fetch: int, search_options: Mapping[str, Any] | None = None) -> None:
        self.fetch = fetch
        self.adapter = get_adapter()
        self.search_options = dict(search_options or {})
        self._photos: dict[str, bytes] = {}
        self._gallery: BackboneGallery | None = None

    def photo_bytes(self, query: JudgedQuery) -> bytes:
        if query.query not in self._photos:
            self._photos[query.query] = query.photo_path.read_bytes()
        return self._photos[query.query]

    def run(self, query: JudgedQuery, method: str) -> tuple[list[tuple[str, float]], float]:
        data = self.photo_bytes(query) if query.kind == "image" else None
        started = time.perf_counter()
        # upright from its EXIF orientation, as the API's photo reader turns it (a no-op for studio photos)
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))) if data is not None else None
        text = query.query if query.kind == "text" else None
        if method == PLAIN_KNN:
            pairs = services.plain_knn(text, image, k=self.fetch)
        elif method == BACKBONE:
            if image is None:
                raise services.SearchError("The backbone baseline ranks photo queries only.")
            if self._gallery is None:
                self._gallery = backbone_gallery()
            pairs = self._gallery.search(image, k=self.fetch)
        else:
            response = services.search_products(text, image, k=self.fetch, method=method, **self.search_options)
            pairs = [(hit.product, hit.score) for hit in response.hits]
        elapsed = (time.perf_counter() - started) * 1000
        return [(str(self.adapter.to_result(product)["sku"]), score) for product, score in pairs], elapsed


def default_methods() -> list[str]:
    """Every method the search service offers, then the plain kNN and raw-backbone references."""
    return [*services.METHODS, *REFERENCES]


def run_evaluation(
    queries: Sequence[JudgedQuery],
    methods: Sequence[str] | None = None,
    *,
    k: int = 10,
    split: str | None = None,
    progress: Callable[[int], Any] | None = None,
    search_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Search every query with every method and score the rankings.

    Methods run interleaved (query by query) so that latency drift hits all alike;
    each (method, kind) gets one untimed warm-up search first. A method that rejects
    a kind of query (``SearchError``, e.g. a words-only method given a photo) is
    skipped for that kind.

    Args:
        queries: judged queries (``load_queries``).
        methods: method names of ``services.METHODS`` and/or ``REFERENCES`` (default: all).
        k: metric cut-off; k + ``TIE_MARGIN`` results are fetched for fair tie-breaking.
        split: keep only queries whose ``split`` equals this.
        progress: called with 1 after each search (e.g. ``tqdm.update``).
        search_options: extra keyword arguments of ``services.search_products`` (e.g. a relevance threshold).

    Returns:
        ``{"k", "split", "methods": {method: {kind: summary}}, "negatives": {method: {kind: summary}},
        "queries": [...], ...}``; a summary has n, ndcg, recall, mrr, r1, r5, p50_ms, p95_ms, mean_ms
        (or skipped); a negatives summary has n, zero_share, top_score_p50/p90/max.
    """
    if not 1 <= k <= MAX_RESULTS - TIE_MARGIN:
        raise ValueError(f"k must be between 1 and {MAX_RESULTS - TIE_MARGIN}")
    methods = list(methods or default_methods())
    selected = [q for q in queries if split is None or q.split == split]
    searcher = _Searcher(fetch=k + TIE_MARGIN, search_options=search_options)
    cells = {(m, kind): _Cell() for m in methods for kind in KINDS}
    negatives = {(m, kind): _Cell() for m in methods for kind in KINDS}
    for kind in KINDS:
        first = next((q for q in selected if q.kind == kind), None)
        for method in methods:
            if first is None:
                cells[(method, kind)].skipped = negatives[(method, kind)].skipped = "no queries"
                continue
            try:
                searcher.run(first, method)  # warm-up: loads models, fills caches
            except services.SearchError as exc:
                cells[(method, kind)].skipped = negatives[(method, kind)].skipped = str(exc)
    per_query = []
    for query in selected:
        for method in methods:
            cell = (negatives if query.negative else cells)[(method, query.kind)]
            if cell.skipped is None:
                scored, ms = searcher.run(query, method)
                ranked = fair_ranking(query.qid, scored, k)
                top_score = max((score for _sku, score in scored), default=None)
                row: dict[str, Any] = {"qid": query.qid, "kind": query.kind, "method": method}
                if query.negative:
                    cell.top_scores.append(top_score)
                    row["negative"] = True
                else:
                    metrics = query_metrics(ranked, query.graded, k)
                    cell.metrics.append(metrics)
                    row.update({name: round(v, 4) for name, v in metrics.items()})
                cell.latencies.append(ms)
                top = None if top_score is None else round(float(top_score), 6)
                per_query.append({**row, "ms": round(ms, 2), "top_score": top, "top": ranked})
            if progress is not None:
                progress(1)
    index = services.index_status()
    return {
        "k": k,
        "split": split,
        "model_id": index["model_id"],
        "products": index["products"],
        "indexed": index["indexed"],
        "counts": {kind: sum(1 for q in selected if q.kind == kind and not q.negative) for kind in KINDS},
        "negative_counts": {kind: sum(1 for q in selected if q.kind == kind and q.negative) for kind in KINDS},
        "methods": {m: {kind: _summary(cells[(m, kind)]) for kind in KINDS} for m in methods},
        "negatives": {m: {kind: _summary(negatives[(m, kind)]) for kind in KINDS} for m in methods},
        "queries": per_query,
    }
