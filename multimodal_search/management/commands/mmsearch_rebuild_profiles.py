"""``mmsearch_rebuild_profiles [--all] [--sync]``: rebuild shopper profiles from their events, e.g. after
``mmsearch_train`` published a new encoder version (profiles live in the fused space of one version)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from multimodal_search import services
from multimodal_search.conf import search_settings


class Command(BaseCommand):
    help = (
        "Rebuild the shopper profiles built for another encoder version (or --all of them) from their events: "
        "one task per shopper for the worker, or here with --sync."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="every profile, not only the stale ones")
        parser.add_argument("--sync", action="store_true", help="rebuild in this process (no worker needed)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not search_settings.PERSONALISATION["ENABLED"]:
            raise CommandError('Personalisation is off (MULTIMODAL_SEARCH["PERSONALISATION"]["ENABLED"]).')
        shoppers = services.stale_profiles(everyone=options["all"])
        quiet = options.get("verbosity", 1) == 0
        with tqdm(total=len(shoppers), unit="profile", desc="Profiles", disable=quiet or not shoppers) as bar:
            done = services.rebuild_profiles(shoppers, sync=options["sync"], progress=bar.update)
        how = "rebuilt" if options["sync"] else "sent to the worker"
        self.stdout.write(f"{done} of {len(shoppers)} profile(s) {how}.")
