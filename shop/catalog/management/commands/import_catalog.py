"""``manage.py import_catalog PATH [--limit N]``: load a Luma folder or a .jsonl file."""

from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from shop.catalog.importers.jsonl import read_jsonl
from shop.catalog.importers.luma import is_luma_folder, read_luma
from shop.catalog.importers.records import CatalogRecord, RecordError
from shop.catalog.importers.store import import_records


class Command(BaseCommand):
    help = (
        "Import products from a Magento sample-data (Luma) folder or a JSON Lines file. "
        "Re-importing updates products in place; unchanged products are not saved."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Luma sample-data folder or a .jsonl file")
        parser.add_argument("--limit", type=int, default=None, help="import only the first N items")

    def handle(self, *args: Any, path: str, limit: int | None, **options: Any) -> None:
        if limit is not None and limit < 0:
            raise CommandError("--limit must be zero or more")
        items = read_items(Path(path).expanduser(), limit)
        stream = getattr(self.stderr, "_out", sys.stderr)
        with tqdm(
            total=len(items),
            file=stream,
            unit="item",
            desc="Importing",
            disable=options.get("verbosity", 1) == 0,
        ) as bar:
            report = import_records(items, progress=bar.update)
        self.stdout.write(f"Imported: {report.summary()}")
        for ref, message in report.skipped:
            self.stdout.write(f"  {ref}: {message}")
        if report.imported == 0 and report.skipped:
            raise CommandError(f"nothing imported from {path}: every item was skipped")


def read_items(path: Path, limit: int | None = None) -> list[CatalogRecord | RecordError]:
    """Read every item of a Luma folder or .jsonl file, or raise ``CommandError``."""
    try:
        if path.is_dir() and is_luma_folder(path):
            items: Any = read_luma(path)
        elif path.is_file() and path.suffix.lower() == ".jsonl":
            items = (item for _, item in read_jsonl(path))
        elif not path.exists():
            raise CommandError(f"{path}: no such file or folder")
        else:
            raise CommandError(
                f"{path}: expected a Magento sample-data folder (with "
                "app/code/Magento/ConfigurableSampleData) or a .jsonl file"
            )
        return list(islice(items, limit))
    except (OSError, UnicodeDecodeError, KeyError) as exc:
        raise CommandError(f"{path}: cannot read catalogue ({exc.__class__.__name__}: {exc})") from exc
