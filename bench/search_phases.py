"""Where the default text search's time goes, phase by phase, on a database ``bench/search.py`` filled.

    .venv/bin/python bench/search_phases.py --data-dir .data/scale-1m-blend [--repeat 3] [--method lexical]

In one process (as a web worker runs it, warm), for the bench's text queries (the same seeded sample
as ``bench/search.py``): the whole ``services.search_products(q, k=10)`` and, inside it, the time of
each phase (each function wrapped with a timer where ``services.search`` calls it):

* ``encode``: the query's words and the synonym and catalogue expansions encoded (``encode_query``);
* ``statement``: the candidate pool and its signals, one round trip (``collect_signals``);
* ``rerank``: the re-ranker's features and scores (``Reranker.score``);
* ``relevance``: the calibrated relevance (``_relevance``);
* ``rules``: the merchandising rules that fire for the query (``merchandising.fired_rules``);
* ``load``: the ten products shown, from the shop's tables (``_products``);
* ``other``: the rest (the whole minus the phases).

As in ``bench/search.py``: one torch thread, every query encoded every time (no query-vector memo),
the server's tables and indexes prewarmed, every query run once untimed first; pass the same
``--ef-search``, ``--m`` and ``--ef-construction`` as the run that built the indexes. ``--method``
times another method (``lexical``: the keyword search) the same way. With 20 queries timed 3 times
a p95 is the slowest query's: the three slowest are printed with their statement's time. Results: ``bench/results/search-phases-<products>.{json,md}`` (p50 / p95 ms per phase).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from search import (
    database_parser,
    percentiles,
    prewarm,
    queries,
    save,
    setup_django,
    use_search_overrides,
    use_source_reranker,
)

PHASES = ("encode", "statement", "rerank", "relevance", "rules", "load")


def parse() -> argparse.Namespace:
    parser = database_parser(__doc__ or "", text_queries=20)
    parser.add_argument("--repeat", type=int, default=3, help="time each query this many times")
    parser.add_argument("--method", help="a search method other than the default, e.g. lexical")
    return parser.parse_args()


def main() -> None:
    args = parse()
    setup_django(args.data_dir)
    import torch

    torch.set_num_threads(1)  # as bench/search.py: one search per core
    use_search_overrides(args)

    from multimodal_search import services
    from multimodal_search.encoders import get_encoder
    from multimodal_search.ranking.reranker import Reranker
    from multimodal_search.services import merchandising
    from multimodal_search.services import search as search_service
    from multimodal_search.store import get_store

    model_id = get_encoder().model_id
    products = get_store().count(model_id)
    use_source_reranker(args, model_id)
    texts, _photos = queries(args)
    spent: dict[str, float] = defaultdict(float)

    def timer(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*a: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*a, **kw)
            finally:
                spent[name] += (time.perf_counter() - started) * 1000

        return wrapped

    search_service.encode_query = timer("encode", search_service.encode_query)
    search_service.collect_signals = timer("statement", search_service.collect_signals)
    search_service._relevance = timer("relevance", search_service._relevance)
    search_service._products = timer("load", search_service._products)
    merchandising.fired_rules = timer("rules", merchandising.fired_rules)
    Reranker.score = timer("rerank", Reranker.score)  # type: ignore[method-assign]

    print(f"{products:,} products, {len(texts)} text queries x {args.repeat}", flush=True)
    warmed = prewarm()
    for text in texts:  # untimed: as on a server that has answered them
        services.search_products(text, k=10, method=args.method)
    samples: dict[str, list[float]] = defaultdict(list)
    by_query: dict[str, list[tuple[float, float]]] = defaultdict(list)  # text -> (whole, statement) per run
    for _ in range(args.repeat):
        for text in texts:
            spent.clear()
            started = time.perf_counter()
            services.search_products(text, k=10, method=args.method)
            whole = (time.perf_counter() - started) * 1000
            samples["whole"].append(whole)
            for name in PHASES:
                samples[name].append(spent.get(name, 0.0))
            samples["other"].append(whole - sum(spent.get(name, 0.0) for name in PHASES))
            by_query[text].append((whole, spent.get("statement", 0.0)))
    figures = {name: percentiles(values) for name, values in samples.items()}
    lines = [
        f"{'Default' if args.method is None else repr(args.method)} text search at {products:,} products, by phase ({len(texts)} queries x {args.repeat}, "
        "one process, warm; p50 / p95 ms)",
        "",
        "| phase | p50 | p95 |",
        "|---|---|---|",
    ]
    for name in ("whole", *PHASES, "other"):
        lines.append(f"| {name} | {figures[name]['p50']:.1f} | {figures[name]['p95']:.1f} |")
    slowest = sorted(by_query.items(), key=lambda item: -max(whole for whole, _ in item[1]))[:3]
    lines += [
        "",
        "Slowest queries (the p95 of a few queries is theirs): "
        + "; ".join(
            f"{text!r} {max(w for w, _ in runs):.0f} ms, its statement {max(s for _, s in runs):.0f}"
            for text, runs in slowest
        ),
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    name = f"search-phases-{products}" + (f"-{args.method}" if args.method else "")
    save(name, {"products": products, "method": args.method, "phases": figures, "prewarm": warmed}, markdown)


if __name__ == "__main__":
    main()
