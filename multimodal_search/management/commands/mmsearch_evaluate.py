"""python manage.py mmsearch_evaluate QUERIES.jsonl [--method M ...] [--backbone] [--min-relevance R] [--split S]
[--k 10] [--json OUT]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from multimodal_search import services
from multimodal_search.evaluation import queries as query_files
from multimodal_search.evaluation import report, runner
from multimodal_search.management.commands._json_output import write_json


class Command(BaseCommand):
    help = (
        "Measure search relevance on judged queries: nDCG@k, recall@k, MRR (and R@1/R@5 for "
        "photo queries) plus latency, per method and query kind, all methods in one run. "
        "A plain kNN search (encode + one HNSW query) is always added as the latency reference; "
        "--backbone adds the raw EfficientNet baseline for photo queries. Negative queries (things the "
        "catalogue does not sell) are reported as the share returning nothing and their top scores."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queries", help="judged queries (.jsonl); see multimodal_search.evaluation.queries")
        parser.add_argument(
            "--method",
            action="append",
            dest="methods",
            metavar="M",
            help="method to evaluate (repeatable; default: every method of the service)",
        )
        parser.add_argument(
            "--backbone",
            action="store_true",
            help="also rank photo queries by raw backbone features, best photo per product (a baseline row)",
        )
        parser.add_argument(
            "--min-relevance",
            default=None,
            metavar="R",
            help="passed to the search service as min_relevance (a number, or what the service accepts)",
        )
        parser.add_argument("--split", default=None, help="only queries with this split (e.g. heldout)")
        parser.add_argument("--k", type=int, default=10, help="metric cut-off (default 10)")
        parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")

    def handle(
        self,
        *args: Any,
        queries: str,
        methods: list[str] | None,
        split: str | None,
        k: int,
        json_out: str | None,
        backbone: bool = False,
        min_relevance: str | None = None,
        **options: Any,
    ) -> None:
        available = [*services.METHODS, *runner.REFERENCES]
        unknown = [m for m in methods or [] if m not in available]
        if unknown:
            raise CommandError(f"unknown method {unknown[0]!r}; choose from {', '.join(available)}")
        references = [runner.PLAIN_KNN, runner.BACKBONE] if backbone else [runner.PLAIN_KNN]
        chosen = list(dict.fromkeys([*(methods or services.METHODS), *references]))
        search_options: dict[str, Any] = {}
        if min_relevance is not None:
            search_options["min_relevance"] = _number_or_word(min_relevance)
        limit = runner.MAX_RESULTS - runner.TIE_MARGIN
        if not 1 <= k <= limit:
            raise CommandError(f"--k must be between 1 and {limit}")
        try:
            judged = query_files.load_queries(Path(queries).expanduser())
        except query_files.QueryFileError as exc:
            raise CommandError(str(exc)) from None
        selected = [q for q in judged if split is None or q.split == split]
        if not selected:
            splits = sorted({q.split for q in judged if q.split})
            raise CommandError(f"no queries with split {split!r} in {queries} (splits: {', '.join(splits) or 'none'})")
        status = services.index_status()
        if not status["indexed"]:
            raise CommandError(f"no products are indexed for {status['model_id']}; run mmsearch_reindex first")
        if status["missing"]:
            self.stderr.write(f"warning: {status['missing']} of {status['products']} products are not indexed")
        total = len(selected) * len(chosen)
        with tqdm(
            total=total,
            unit="search",
            desc="Evaluating",
            file=getattr(self.stderr, "_out", None),
            disable=options.get("verbosity", 1) == 0,
        ) as bar:
            try:
                results = runner.run_evaluation(
                    selected, chosen, k=k, split=None, progress=bar.update, search_options=search_options
                )
            except services.SearchError as exc:
                raise CommandError(str(exc)) from None
        results["split"] = split
        results["search_options"] = search_options
        results["queries_file"] = str(Path(queries).resolve())
        self.stdout.write(report.format_table(results))
        if json_out:
            write_json(json_out, results, self.stdout)


def _number_or_word(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value
