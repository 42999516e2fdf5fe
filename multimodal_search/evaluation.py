"""Relevance evaluation: judged queries in, nDCG / recall / MRR / latency per method out.

Query file (JSON Lines, one object per line)::

    {"qid": "q1", "kind": "text", "query": "black hoodie", "graded": {"MH01-Black": 2, "MH02-Black": 1}}
    {"qid": "q2", "kind": "image", "query": "photos/mh01-gray_back.jpg", "graded": {"MH01-Gray": 2}}

``graded`` maps a product's public id (``adapter.to_result(product)["sku"]``) to a
grade: 2 = exactly what was asked, 1 = acceptable; unlisted products are 0. A photo
path is relative to the query file. Optional ``split`` ("heldout", "train", ...)
lets a run report one part only; other keys are ignored.

Ties are broken fairly: results are re-sorted by score rounded to 6 decimals and
then by ``sha1(f"{qid}:{sku}")``, so products with equal scores (colour variants
with the same text) are ordered pseudo-randomly but reproducibly, never by row order.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from PIL import Image

KINDS = ("text", "image")
#: extra rows fetched beyond k so that ties at the cut-off are broken fairly
TIE_MARGIN = 40
MAX_RESULTS = 100
#: reference "method": encode the query and run one HNSW query (text vector or photo features)
PLAIN_KNN = "plain-knn"


class QueryFileError(ValueError):
    """A query file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class JudgedQuery:
    """One line of a query file."""

    qid: str
    kind: str
    query: str
    graded: dict[str, int]
    split: str | None = None
    line: int = 0

    @property
    def photo_path(self) -> Path:
        return Path(self.query)


# --- metrics (pure functions) -----------------------------------------------------------


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain: sum of gain / log2(rank + 1), ranks from 1."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def gain(grade: int) -> float:
    """Graded gain 2^grade - 1 (0, 1, 3 for grades 0, 1, 2)."""
    return float(2**grade - 1) if grade > 0 else 0.0


def ndcg_at_k(ranked: Sequence[str], graded: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains; the ideal ranking comes from ``graded``.

    Args:
        ranked: result ids, best first.
        graded: id -> grade (unlisted ids are 0).
        k: cut-off.

    Returns:
        a value in [0, 1]; 0 when nothing is relevant.
    """
    ideal = dcg(sorted((gain(g) for g in graded.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg(gain(graded.get(item, 0)) for item in ranked[:k]) / ideal


def target_items(graded: Mapping[str, int]) -> set[str]:
    """The items recall and MRR look for: grade 2, or grade >= 1 when none has grade 2."""
    best = {item for item, g in graded.items() if g >= 2}
    return best or {item for item, g in graded.items() if g >= 1}


def recall_at_k(ranked: Sequence[str], graded: Mapping[str, int], k: int = 10) -> float:
    """Fraction of ``target_items(graded)`` found in the first k results."""
    targets = target_items(graded)
    if not targets:
        return 0.0
    return len(targets & set(ranked[:k])) / len(targets)


def reciprocal_rank(ranked: Sequence[str], graded: Mapping[str, int], k: int | None = None) -> float:
    """1 / rank of the first target item within the first k results (0 if none)."""
    targets = target_items(graded)
    for rank, item in enumerate(ranked[:k] if k else ranked, start=1):
        if item in targets:
            return 1.0 / rank
    return 0.0


def tie_key(qid: str, item: str) -> str:
    """Per-query pseudo-random order for equal scores (sha1 of ``qid:item``)."""
    return hashlib.sha1(f"{qid}:{item}".encode()).hexdigest()


def fair_ranking(qid: str, scored: Iterable[tuple[str, float]], k: int | None = None) -> list[str]:
    """Sort ``(item, score)`` pairs by score (6 decimals), then by ``tie_key``.

    Input order never decides: two items with equal scores keep the order that
    their hashes give for this query. A repeated item keeps its best score.
    """
    best: dict[str, float] = {}
    for item, score in scored:
        rounded = round(float(score), 6)
        if item not in best or rounded > best[item]:
            best[item] = rounded
    ranked = sorted(best, key=lambda item: (-best[item], tie_key(qid, item)))
    return ranked[:k] if k else ranked


def query_metrics(ranked: Sequence[str], graded: Mapping[str, int], k: int = 10) -> dict[str, float]:
    """Every metric of one ranked list: ndcg, recall (@k), mrr (@k), r1, r5."""
    return {
        "ndcg": ndcg_at_k(ranked, graded, k),
        "recall": recall_at_k(ranked, graded, k),
        "mrr": reciprocal_rank(ranked, graded, k),
        "r1": recall_at_k(ranked, graded, 1),
        "r5": recall_at_k(ranked, graded, 5),
    }


# --- query files ----------------------------------------------------------------------------


def load_queries(path: str | Path) -> list[JudgedQuery]:
    """Read and check a judged query file (see the module docstring).

    Args:
        path: a ``.jsonl`` file; photo paths inside are relative to its folder.

    Returns:
        the queries in file order; photo paths made absolute.

    Raises:
        QueryFileError: unreadable file, or a bad line (the message names the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise QueryFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryFileError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    base = path.resolve().parent
    queries: list[JudgedQuery] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            query = _parse_line(line, base, number)
        except ValueError as exc:
            raise QueryFileError(f"{path} line {number}: {exc}") from None
        if query.qid in seen:
            raise QueryFileError(f"{path} line {number}: qid {query.qid!r} already used on line {seen[query.qid]}")
        seen[query.qid] = number
        queries.append(query)
    if not queries:
        raise QueryFileError(f"{path}: no queries")
    return queries


def _parse_line(line: str, base: Path, number: int) -> JudgedQuery:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    qid, kind, query = data.get("qid"), data.get("kind"), data.get("query")
    if not isinstance(qid, str) or not qid.strip():
        raise ValueError("qid must be a non-empty string")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {json.dumps(kind)}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string")
    if kind == "image":
        photo = (base / query).resolve()
        if not photo.is_file():
            raise ValueError(f"photo not found: {query}")
        query = str(photo)
    graded = data.get("graded")
    if not isinstance(graded, dict) or not graded:
        raise ValueError('graded must be a non-empty object like {"SKU": 2}')
    for item, grade in graded.items():
        if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= 3:
            raise ValueError(f"grade of {item!r} must be an integer 0-3, not {json.dumps(grade)}")
    if not target_items(graded):
        raise ValueError("graded has no item with grade 1 or more")
    split = data.get("split")
    if split is not None and not isinstance(split, str):
        raise ValueError("split must be a string")
    return JudgedQuery(qid=qid.strip(), kind=kind, query=query.strip() if kind == "text" else query,
                       graded=dict(graded), split=split, line=number)


# --- running searches --------------------------------------------------------------------------


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
        from multimodal_search.adapters import get_adapter

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
            pairs = self._plain_knn(text, image)
        else:
            from multimodal_search import services

            response = services.search_products(text, image, k=self.fetch, method=method)
            pairs = [(hit.product, hit.score) for hit in response.hits]
        elapsed = (time.perf_counter() - started) * 1000
        return [(str(self.adapter.to_result(product)["sku"]), score) for product, score in pairs], elapsed

    def _plain_knn(self, text: str | None, image: Image.Image | None) -> list[tuple[Any, float]]:
        from multimodal_search.backends import pgvector as backend
        from multimodal_search.conf import search_settings
        from multimodal_search.encoders import get_encoder

        encoder = get_encoder()
        options = {"model_id": encoder.model_id, "limit": self.fetch, "ef_search": int(search_settings.HNSW_EF_SEARCH)}
        if image is not None:
            _shared, features = encoder.encode_image_pair([image.convert("RGB")])
            nearest = backend.nearest_images("feature_vector", features[0], **options)
        else:
            nearest = backend.nearest_products("text_vector", encoder.encode_text([text or ""])[0], **options)
        products = {str(p.pk): p for p in self.adapter.get_queryset().filter(pk__in=[pk for pk, _ in nearest])}
        return [(products[pk], sim) for pk, sim in nearest if pk in products]


def default_methods() -> list[str]:
    """Every method the search service offers, then the plain kNN latency reference."""
    from multimodal_search import services

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
    from multimodal_search import services
    from multimodal_search.encoders import get_encoder

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
                per_query.append({"qid": query.qid, "kind": query.kind, "method": method,
                                  **{name: round(v, 4) for name, v in metrics.items()},
                                  "ms": round(ms, 2), "top": ranked})
            if progress is not None:
                progress(1)
    index = services.index_status()
    return {
        "k": k,
        "split": split,
        "model_id": get_encoder().model_id,
        "products": index["products"],
        "indexed": index["indexed"],
        "counts": {kind: sum(1 for q in selected if q.kind == kind) for kind in KINDS},
        "methods": {m: {kind: _summary(cells[(m, kind)]) for kind in KINDS} for m in methods},
        "queries": per_query,
    }


# --- report ---------------------------------------------------------------------------------------

_COLUMNS = (("ndcg", "nDCG@{k}"), ("recall", "R@{k}"), ("mrr", "MRR"), ("r1", "R@1"), ("r5", "R@5"),
            ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("n", "n"))


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
    """The method with the highest nDCG on ``kind`` (``PLAIN_KNN`` excluded; first listed wins ties)."""
    best: tuple[float, str] | None = None
    for method, kinds in results["methods"].items():
        value = kinds[kind].get("ndcg")
        if method != PLAIN_KNN and value is not None and (best is None or value > best[0]):
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

    counts = ", ".join(f"{n} {kind}" for kind, n in results["counts"].items() if n)
    lines = [
        f"Relevance: {counts} queries (split {results['split'] or 'all'}, k={k}); "
        f"{results['indexed']}/{results['products']} products indexed with {results['model_id']}",
        fmt(headers),
        fmt(["-" * w for w in widths]),
        *(fmt(r) for r in rows),
    ]
    for kind in KINDS:
        best = best_method(results, kind)
        if best is None:
            continue
        summary = results["methods"][best][kind]
        deltas = [f"{summary['ndcg'] - s[kind]['ndcg']:+.3f} vs {m}" for m, s in results["methods"].items()
                  if m != best and s[kind].get("ndcg") is not None]
        lines.append(f"best on {kind}: {best} nDCG@{k} {summary['ndcg']:.3f} ({', '.join(deltas)})")
        reference = results["methods"].get(PLAIN_KNN, {}).get(kind, {})
        if reference.get("p50_ms") and summary.get("p50_ms"):
            lines.append(
                f"latency on {kind}: {best} p50 {summary['p50_ms']:.1f} ms / p95 {summary['p95_ms']:.1f} ms; "
                f"plain vector search p50 {reference['p50_ms']:.1f} ms / p95 {reference['p95_ms']:.1f} ms; "
                f"ratio {summary['p50_ms'] / reference['p50_ms']:.2f}x"
            )
    return "\n".join(lines)
