"""``manage.py make_luma_eval --out DIR [--catalog PATH] [--seed 13]``: write the judged Luma set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop.catalog.evaluation.luma_eval import DEFAULT_SEED, build_eval_set, summary_text, write_eval_set
from shop.catalog.importers.luma import is_luma_folder, read_luma


def luma_folder(catalog: str | None) -> Path:
    """``--catalog``, else ``settings.DEMO_CATALOG``, if it is a Magento sample-data folder; else CommandError."""
    # DEMO_CATALOG is a str setting; getattr's `Any | str` type would make mypy keep `catalog`'s None here
    folder = Path(catalog or cast(str, getattr(settings, "DEMO_CATALOG", ""))).expanduser()
    if not is_luma_folder(folder):
        raise CommandError(f"{folder}: not a Magento sample-data folder (use --catalog)")
    return folder


class Command(BaseCommand):
    help = (
        "Generate the relevance evaluation set for the Luma catalogue: a held-out split by "
        "parent product, a full and a title+description catalogue (jsonl) and judged text "
        "and photo queries (queries.jsonl for mmsearch_evaluate)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="output folder (created)")
        parser.add_argument(
            "--catalog", default=None, help="Magento sample-data folder (default: settings.DEMO_CATALOG)"
        )
        parser.add_argument(
            "--seed", type=int, default=DEFAULT_SEED, help=f"split and phrasing seed (default {DEFAULT_SEED})"
        )

    def handle(self, *args: Any, out: str, catalog: str | None, seed: int, **options: Any) -> None:
        folder = luma_folder(catalog)
        try:
            eval_set = build_eval_set(read_luma(folder), seed=seed)
            out_dir = Path(out).expanduser()
            summary = write_eval_set(eval_set, out_dir)
        except OSError as exc:
            raise CommandError(f"cannot write the evaluation set: {exc}") from exc
        text = summary_text(summary, out_dir)
        (out_dir / "README.md").write_text(text + "\n", encoding="utf-8")
        self.stdout.write(text)
