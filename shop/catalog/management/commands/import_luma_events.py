"""``manage.py import_luma_events [PATH]``: the Luma sample customers' orders, wishlists and reviews as shopper events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop.catalog.importers.luma import is_luma_folder
from shop.catalog.importers.luma_events import import_sample_events


class Command(BaseCommand):
    help = (
        "Import the Magento sample data's orders and reviews (purchases) and wishlists (add to cart) as "
        "shopper events of their customers, then update those customers' profiles. Re-running adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", nargs="?", default=settings.DEMO_CATALOG, help="Luma sample-data folder (default: DEMO_CATALOG)"
        )
        parser.add_argument("--no-profiles", action="store_true", help="record the events only")

    def handle(self, *args: Any, path: str, no_profiles: bool, **options: Any) -> None:
        folder = Path(path).expanduser()
        if not (folder.is_dir() and is_luma_folder(folder)):
            raise CommandError(f"{folder}: not a Magento sample-data folder")
        report = import_sample_events(folder, update_profiles=not no_profiles)
        self.stdout.write(f"Shopper events: {report.summary()}")
        if report.unknown_products:
            shown = ", ".join(sorted(set(report.unknown_products))[:10])
            self.stdout.write(f"  not in the catalogue: {shown}")
