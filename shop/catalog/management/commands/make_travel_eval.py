"""``manage.py make_travel_eval --out DIR [--catalog PATH] [--seed 13] [--variants 2]``: sets unlike Luma."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop.catalog.evaluation.luma_eval import DEFAULT_SEED
from shop.catalog.evaluation.travel_eval import DEFAULT_VARIANTS, write_travel_sets
from shop.catalog.importers.luma import read_luma
from shop.catalog.management.commands.make_luma_eval import luma_folder


class Command(BaseCommand):
    help = (
        "Generate evaluation sets that do not look like Luma, from the Luma data: luma/ (the standard set), "
        "merged/ (one SKU per product, all colours' photos), shopper/ (phone-like photos not in the "
        "catalogue) and negative/ (things the catalogue does not sell). The same seed gives the same files."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="output folder (created); generated photos go under it")
        parser.add_argument(
            "--catalog", default=None, help="Magento sample-data folder (default: settings.DEMO_CATALOG)"
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})")
        parser.add_argument(
            "--variants",
            type=int,
            default=DEFAULT_VARIANTS,
            help=f"shopper photos per held-out photo query (default {DEFAULT_VARIANTS})",
        )

    def handle(self, *args: Any, out: str, catalog: str | None, seed: int, variants: int, **options: Any) -> None:
        folder = luma_folder(catalog)
        if variants < 1:
            raise CommandError("--variants must be at least 1")
        out_dir = Path(out).expanduser()
        try:
            summary = write_travel_sets(read_luma(folder), out_dir, seed=seed, variants=variants)
        except OSError as exc:
            raise CommandError(f"cannot write the evaluation sets: {exc}") from exc
        self.stdout.write(f"Evaluation sets (seed {seed}) in {out_dir}:")
        for name in ("luma", "merged", "shopper", "negative"):
            self.stdout.write(f"- {name}/: {json.dumps(summary[name])}")
