"""python manage.py mmsearch_train [--holdout FILE] [--seed S] [--queries N] [--skip-head] [--skip-reranker]"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from multimodal_search import services
from multimodal_search.rerank_training import TrainingError, train_reranker


def read_holdout(path: str) -> set[str]:
    """Identifiers (sku or parent sku) to keep out of training: a JSON list, or a dict with a
    "heldout" list, or a split file whose "parents" maps parent sku -> "heldout"/"train"."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read holdout file {path}: {exc}") from exc
    if isinstance(data, list):
        return {str(item) for item in data}
    if isinstance(data, dict):
        if isinstance(data.get("heldout"), list):
            return {str(item) for item in data["heldout"]}
        if isinstance(data.get("parents"), dict):
            return {str(key) for key, split in data["parents"].items() if split == "heldout"}
    raise CommandError(f"holdout file {path}: expected a list, {{'heldout': [...]}} or {{'parents': {{sku: split}}}}")


class Command(BaseCommand):
    help = "Train on the catalogue itself: the photo->text head, then the learned re-ranker."

    def add_arguments(self, parser):
        parser.add_argument("--holdout", help="JSON file of products (sku or parent sku) never trained on.")
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument("--queries", type=int, default=400, help="Pseudo-queries for the re-ranker (default 400).")
        parser.add_argument("--skip-head", action="store_true", help="Do not train the photo->text head.")
        parser.add_argument("--skip-reranker", action="store_true", help="Do not train the re-ranker.")

    def handle(self, *args, **options):
        holdout = read_holdout(options["holdout"]) if options["holdout"] else set()
        if not options["skip_head"]:
            self._train_head(holdout, options)
        if not options["skip_reranker"]:
            self._train_reranker(holdout, options)

    def _train_head(self, holdout: set[str], options) -> None:
        try:
            from multimodal_search.training import train_projection_head  # type: ignore[attr-defined]
        except ImportError:
            self.stdout.write("Head: this encoder has no trainable head; skipped.")
            return
        summary = train_projection_head(holdout=holdout, seed=options["seed"], stdout=self.stdout)
        self.stdout.write(f"Head: {summary}")
        # the head changes the encoder's model_id: store vectors for the new version now
        chunks = list(services.chunked_pks(missing_only=True))
        with tqdm(total=sum(map(len, chunks)), unit="product", desc="Re-indexing for the new head", file=self.stderr._out) as bar:
            for chunk in chunks:
                services.index_products(chunk)
                bar.update(len(chunk))

    def _train_reranker(self, holdout: set[str], options) -> None:
        with tqdm(total=options["queries"], unit="query", desc="Re-ranker pseudo-queries", file=self.stderr._out) as bar:
            try:
                summary = train_reranker(
                    holdout=holdout, max_queries=options["queries"], seed=options["seed"], progress=bar.update
                )
            except TrainingError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"Re-ranker {summary['version']}: {summary['queries']} pseudo-queries, {summary['pairs']} pairs "
            f"({summary['positives']} relevant), train accuracy {summary['train_accuracy']}, {summary['seconds']} s "
            f"-> {summary['path']}"
        ))
