"""``mmsearch_prune_analytics``: delete search log rows and shopper events older than the retention."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from multimodal_search import services
from multimodal_search.conf import search_settings


class Command(BaseCommand):
    help = 'Delete search log rows and shopper events older than MULTIMODAL_SEARCH["ANALYTICS"]["RETENTION_DAYS"].'

    def handle(self, *args: Any, **options: Any) -> None:
        searches, events = services.prune_analytics()
        days = search_settings.ANALYTICS["RETENTION_DAYS"]
        self.stdout.write(f"Deleted {searches} search(es) and {events} event(s) older than {days} days.")
