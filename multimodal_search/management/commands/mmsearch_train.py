"""python manage.py mmsearch_train [--epochs N] [--holdout FILE] [--labels FILE] [--seed S] [--visual auto|always|never]
[--queries N] [--calibration-queries N] [--skip-head] [--skip-attributes] [--skip-reranker]"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO, cast

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from multimodal_search import services
from multimodal_search.learning import projection
from multimodal_search.learning.attributes import train_attributes
from multimodal_search.learning.calibration import report_line
from multimodal_search.learning.data import TrainingError, load_holdout
from multimodal_search.learning.heads import DEFAULT_EPOCHS
from multimodal_search.learning.labels import LabelError, load_labels
from multimodal_search.learning.reranker import broad_cap, train_reranker


def read_holdout(path: str) -> set[str]:
    """Identifiers (sku or parent sku) to keep out of training (see ``learning.data.load_holdout``)."""
    try:
        return load_holdout(path)
    except TrainingError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = (
        "Train on the catalogue itself: the encoder's heads (photo->text and photo->photo), "
        "then colour/gender classifiers over the photos, then the learned re-ranker. "
        "Products in --holdout are never trained on."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--holdout",
            metavar="FILE",
            help='JSON: a list of skus/parent skus, {"heldout": [...]}, or a split file {"parents": {sku: split}}.',
        )
        parser.add_argument(
            "--labels",
            metavar="FILE",
            help="JSON lines of training-only facts per sku (color, gender, category, material, text): "
            "photo captions and re-ranker judgements use them; nothing is indexed from them.",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            default=DEFAULT_EPOCHS,
            help=f"Passes over the photos for the heads (default {DEFAULT_EPOCHS}).",
        )
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument(
            "--visual",
            choices=projection.VISUAL_MODES,
            default="auto",
            help="Photo->photo projection: auto (default) keeps it only when it beats the untrained "
            "features on a validation fifth of the products; always; never.",
        )
        parser.add_argument("--queries", type=int, default=400, help="Pseudo-queries for the re-ranker (default 400).")
        parser.add_argument(
            "--calibration-queries",
            type=int,
            default=None,
            help="Held-out pseudo-queries the relevance probabilities and the match cuts are fitted on "
            "(default half of --queries; 0: results get no relevance).",
        )
        parser.add_argument("--skip-head", action="store_true", help="Do not train the encoder's heads.")
        parser.add_argument(
            "--skip-attributes", action="store_true", help="Do not train the photo colour/gender classifiers."
        )
        parser.add_argument("--skip-reranker", action="store_true", help="Do not train the re-ranker.")

    def handle(self, *args, **options):
        if options["epochs"] < 1:
            raise CommandError("--epochs must be at least 1.")
        services.use_indexing_threads()  # training and the reindex for the new head use every core
        holdout = read_holdout(options["holdout"]) if options["holdout"] else set()
        try:
            options["labels"] = load_labels(options["labels"]) if options["labels"] else {}
        except LabelError as exc:
            raise CommandError(str(exc)) from None
        if options["labels"]:
            self.stdout.write(f"Training labels for {len(options['labels'])} sku(s).")
        if not options["skip_head"]:
            self._train_head(holdout, options)
        if not options["skip_attributes"]:
            self._train_attributes(holdout, options)
        if not options["skip_reranker"]:
            self._train_reranker(holdout, options)

    def _train_head(self, holdout: set[str], options) -> None:
        target = projection.head_target()
        if not target.trainable:
            self.stdout.write(f"Head: encoder {target.encoder} has no trainable head; skipped.")
            return
        if not target.configured:
            self.stderr.write(
                f"Warning: the encoder has no OPTIONS['head_path']; the head goes to "
                f"{target.path} but is not used until head_path points there."
            )
        try:
            result = projection.train_projection_head(
                holdout=holdout,
                labels=options["labels"],
                seed=options["seed"],
                epochs=options["epochs"],
                visual=options["visual"],
                progress=self._progress,
                reindex=self._reindex,
            )
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        finally:
            self._close_bar()
        for path in result.failed:
            self.stderr.write(f"unreadable photo: {path}")
        self.stdout.write(self.style.SUCCESS(f"Head: {result.summary()}"))

    _bar: tqdm | None = None

    def _progress(self, label: str, total: int) -> Callable[[int], object]:
        """One bar at a time: a new stage closes the previous stage's bar."""
        self._close_bar()
        # tqdm writes to the wrapped stream; django-stubs types unknown OutputWrapper attributes as callables
        self._bar = tqdm(total=total, desc=label, file=cast(TextIO, self.stderr._out))
        return self._bar.update

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _reindex(self, staging) -> None:
        """Store vectors for the new head before it is published, so searches never see a half-built index."""
        self._close_bar()
        chunks = list(services.chunked_pks(missing_only=True, model_id=staging.model_id))
        total = sum(map(len, chunks))
        # nobody searches the new version yet: its HNSW indexes are built once, after its rows are written
        with services.indexes_built_after(staging):
            with tqdm(
                total=total, unit="product", desc="Indexing for the new head", file=cast(TextIO, self.stderr._out)
            ) as bar:
                for chunk in chunks:
                    services.index_products(chunk, encoder=staging)
                    bar.update(len(chunk))
            self.stdout.write(f"Building the search indexes of {staging.model_id}...")
        self.stdout.write(f"Indexed {total} product(s) for {staging.model_id}.")

    def _train_attributes(self, holdout: set[str], options) -> None:
        summary = train_attributes(holdout=holdout, labels=options["labels"])
        for facet, result in summary["facets"].items():
            if isinstance(result, str):
                self.stdout.write(f"Attributes: {facet} {result}.")
            else:
                classes = result["classes"]
                shown = ", ".join(classes[:12]) + (f" … ({len(classes)} in all)" if len(classes) > 12 else "")
                self.stdout.write(
                    f"Attributes: {facet} from {result['products']} products, classes {shown}; "
                    f"validation accuracy {result['validation_accuracy']} on {result['validation_products']} products."
                )
        self.stdout.write(
            self.style.SUCCESS(
                f"Attributes inferred for {summary['enriched']} indexed product(s) in {summary['seconds']} s -> {summary['path']}"
            )
        )

    def _train_reranker(self, holdout: set[str], options) -> None:
        calibration = options.get("calibration_queries")
        calibration = options["queries"] // 2 if calibration is None else max(calibration, 0)
        with tqdm(
            total=options["queries"] + calibration + broad_cap(calibration),  # at most: the bar is closed at its end
            unit="query",
            desc="Re-ranker pseudo-queries",
            file=cast(TextIO, self.stderr._out),
        ) as bar:
            try:
                summary = train_reranker(
                    holdout=holdout,
                    labels=options["labels"],
                    max_queries=options["queries"],
                    calibration=calibration,
                    seed=options["seed"],
                    progress=bar.update,
                )
            except TrainingError as exc:
                raise CommandError(str(exc)) from exc
            bar.total = bar.n  # fewer distinct broad queries than the cap: the bar ends full
            bar.refresh()
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-ranker {summary['version']}: {summary['queries']} pseudo-queries, {summary['pairs']} pairs "
                f"({summary['positives']} relevant), train accuracy {summary['train_accuracy']}, {summary['seconds']} s "
                f"-> {summary['path']}"
            )
        )
        self.stdout.write(report_line(summary["calibration"], summary["cuts"]))
        named = summary["departments"]
        self.stdout.write(
            f"Departments a query may name ({len(named)}): {', '.join(named)}."
            if named
            else "Departments a query may name: none (no category has categories below it)."
        )
        if summary.get("classes"):
            self.stdout.write(
                f"Words for several departments at once ({len(summary['classes'])}): {_sample(summary['classes'])}."
            )
        qualities = summary["qualities"]
        self.stdout.write(
            f"Qualities a query may name ({len(qualities)}): {_sample(qualities)}."
            if qualities
            else "Qualities a query may name: none (no word of the titles, materials or attributes is stated by "
            "products of two groups)."
        )
        self.stdout.write(
            f"Spelling: a typed word no product uses is read as the nearest of {summary['spelling_words']:,} catalogue "
            "words (what the products state, their categories, and the colour, gender and synonym words)."
        )


def _sample(words: list[str], shown: int = 12) -> str:
    """The first ``shown`` words, and how many more."""
    more = len(words) - shown
    return ", ".join(words[:shown]) + (f" and {more} more" if more > 0 else "")
