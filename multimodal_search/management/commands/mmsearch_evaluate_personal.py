"""python manage.py mmsearch_evaluate_personal [--shoppers 200] [--seed 0] [--k 10] [--draws 10]
[--rerank-shoppers 50] [--queries QUERIES.jsonl] [--split heldout] [--method M] [--json OUT]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from multimodal_search import services
from multimodal_search.evaluation import personal, personal_report
from multimodal_search.evaluation import queries as query_files
from multimodal_search.management.commands._json_output import write_json

#: the judged set ``bench/relevance.sh`` writes and evaluates (``make_luma_eval``)
DEFAULT_QUERIES = ".data/eval/luma/queries.jsonl"


class Command(BaseCommand):
    help = (
        "Offline evaluation of personalisation: leave-last-out hit-rate@k and nDCG@k of profile "
        "recommendations against popularity and random baselines, on recorded shoppers and on simulated "
        "shoppers with a consistent taste; then (when search takes a profile) how far re-ranking lifts a "
        "shopper's taste and what a neutral profile costs the relevance evaluation."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shoppers", type=int, default=200, help="simulated shoppers (default 200)")
        parser.add_argument("--seed", type=int, default=0, help="seed of simulation and random baseline")
        parser.add_argument("--k", type=int, default=10, help="metric cut-off (default 10)")
        parser.add_argument("--draws", type=int, default=10, help="random-baseline draws per shopper (default 10)")
        parser.add_argument(
            "--rerank-shoppers",
            type=int,
            default=50,
            help="simulated shoppers whose searches are re-ranked (default 50)",
        )
        parser.add_argument(
            "--queries", default=None, help=f"judged queries for the neutral-profile check (default {DEFAULT_QUERIES})"
        )
        parser.add_argument(
            "--split", default="heldout", help="split of the judged queries (default heldout; '' for all)"
        )
        parser.add_argument(
            "--method", default=None, help="search method of the neutral-profile check (default: the setting)"
        )
        parser.add_argument(
            "--blends",
            default=None,
            help="re-ranking strengths to compare, e.g. 0.05,0.1,0.25,0.5 (default: PERSONALISATION['BLEND'] "
            "only); the strongest that lifts the taste and costs a neutral profile <= 0.01 nDCG is suggested",
        )
        parser.add_argument("--json", dest="json_out", default=None, help="also write the numbers here")

    def handle(self, *args: Any, **options: Any) -> None:
        k, shoppers = options["k"], options["shoppers"]
        if not 1 <= k <= 100:
            raise CommandError("--k must be between 1 and 100")
        options["blend_list"] = self._blends(options["blends"])
        if shoppers < 0 or options["draws"] < 1 or options["rerank_shoppers"] < 0:
            raise CommandError("--shoppers and --rerank-shoppers must be >= 0, --draws >= 1")
        quiet = options.get("verbosity", 1) == 0
        try:
            catalogue = personal.load_catalogue()
        except personal.NoProducts as exc:
            raise CommandError(str(exc)) from None
        settings = personal.Settings.from_settings()
        seed = options["seed"]
        results: dict[str, Any] = {"k": k, "model_id": catalogue.model_id, "products": len(catalogue.pks)}

        cases, unusable = personal.recorded_cases(catalogue, settings)
        with self._bar(len(cases), "Recorded shoppers", quiet) as bar:
            results["real"] = personal.evaluate_recommendations(
                cases, catalogue, settings, k=k, seed=seed, draws=options["draws"], progress=bar.update
            )
        results["real"]["unusable"] = unusable

        groups = personal.taste_groups(catalogue)
        simulated = personal.simulate_shoppers(catalogue, shoppers, seed=seed, groups=groups)
        with self._bar(len(simulated), "Simulated shoppers", quiet) as bar:
            results["simulated"] = personal.evaluate_recommendations(
                [case for case, _ in simulated],
                catalogue,
                settings,
                k=k,
                seed=seed,
                draws=options["draws"],
                progress=bar.update,
            )
        results["simulated"].update(seed=seed, tastes=len(groups))
        if not groups:
            results["simulated"]["skipped"] = (
                f"no colour + category with {personal.MIN_TASTE_PRODUCTS} or more products to simulate a taste"
            )

        results["reranking"] = self._reranking(simulated, catalogue, settings, options, quiet)
        self.stdout.write(personal_report.format_table(results))
        if options["json_out"]:
            write_json(options["json_out"], results, self.stdout)

    def _reranking(
        self,
        simulated: list[tuple[personal.Case, personal.TasteGroup]],
        catalogue: personal.Catalogue,
        settings: personal.Settings,
        options: dict[str, Any],
        quiet: bool,
    ) -> dict[str, Any]:
        if not personal.reranking_available():
            return {"available": False}
        k = options["k"]
        sample = simulated[: options["rerank_shoppers"]]
        out: dict[str, Any] = {"available": True}
        sweep = []
        try:
            for blend in options["blend_list"]:
                label = "Re-ranking" if blend is None else f"Re-ranking at blend {blend:g}"
                with self._bar(len(sample), label, quiet) as bar:
                    lift = personal.evaluate_reranking(
                        sample, catalogue, settings, k=k, progress=bar.update, blend=blend
                    )
                sweep.append(
                    {"blend": blend, "lift": lift, "neutral": self._neutral(catalogue, settings, options, quiet, blend)}
                )
        except services.SearchError as exc:
            raise CommandError(str(exc)) from None
        out.update(lift=sweep[0]["lift"], neutral=sweep[0]["neutral"])
        if len(sweep) > 1:
            out["sweep"] = sweep
            out["suggested_blend"] = personal.suggest_blend(sweep)
        return out

    @staticmethod
    def _blends(value: str | None) -> list[float | None]:
        if not value:
            return [None]
        try:
            blends = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise CommandError(f"--blends must be numbers separated by commas, not {value!r}") from None
        if not blends or any(not 0 <= blend <= 10 for blend in blends):
            raise CommandError("--blends must be numbers from 0 to 10")
        return list(dict.fromkeys(blends))

    def _neutral(
        self,
        catalogue: personal.Catalogue,
        settings: personal.Settings,
        options: dict[str, Any],
        quiet: bool,
        blend: float | None = None,
    ) -> dict[str, Any]:
        path = Path(options["queries"] or DEFAULT_QUERIES).expanduser()
        if options["queries"] is None and not path.is_file():
            return {"skipped": f"no judged queries at {DEFAULT_QUERIES} (run bench/relevance.sh or pass --queries)"}
        try:
            judged = query_files.load_queries(path)
        except query_files.QueryFileError as exc:
            raise CommandError(str(exc)) from None
        split = options["split"] or None
        selected = [q for q in judged if split is None or q.split == split] or judged  # no such split: all of them
        method = options["method"]
        if method is not None and method not in services.METHODS:
            raise CommandError(f"unknown method {method!r}; choose from {', '.join(services.METHODS)}")
        label = "Neutral profile" if blend is None else f"Neutral profile at blend {blend:g}"
        with self._bar(2 * len(selected), label, quiet, unit="search") as bar:
            neutral = personal.evaluate_neutral(
                selected,
                personal.neutral_taste(catalogue, settings, blend),
                method=method,
                k=options["k"],
                progress=bar.update,
            )
        neutral["queries_file"] = str(path.resolve())
        return neutral

    def _bar(self, total: int, desc: str, quiet: bool, unit: str = "shopper") -> tqdm:
        return tqdm(total=total, unit=unit, desc=desc, file=getattr(self.stderr, "_out", None), disable=quiet)
