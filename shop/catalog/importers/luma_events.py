"""Shopper events from the Magento "Luma" sample data: what its sample customers bought, wished for, reviewed.

* ``SalesSampleData/fixtures/orders.csv``: one "purchase" per order line, by the user of ``customer_email``
  (the product: ``sku`` and the ``configurable_options`` colour, so ``"WS03"`` in ``"Red"`` is ``"WS03-Red"``);
* ``WishlistSampleData/fixtures/wishlist.csv``: one "cart" per wished-for SKU (a simple SKU such as
  ``"WH04-XS-Purple"`` is the product ``"WH04-Purple"``);
* ``ReviewSampleData/fixtures/products_reviews.csv``: one "purchase" per review, by one user per reviewer
  (username ``"luma-<reviewer name, slugified>"``).

Users are created with an unusable password. Each event is marked with a key of its source row (in
``ShopperEvent.session``, which counts for nothing once an event has a user), so a second run adds
nothing. Times are spread over the 60 days before the import, the same for a row on every run of a day.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from multimodal_search import services
from multimodal_search.models import ShopperEvent
from shop.catalog.importers.luma import MAGENTO
from shop.catalog.models import Product

ORDERS = MAGENTO / "SalesSampleData/fixtures/orders.csv"
WISHLISTS = MAGENTO / "WishlistSampleData/fixtures/wishlist.csv"
REVIEWS = MAGENTO / "ReviewSampleData/fixtures/products_reviews.csv"
SPREAD = timedelta(days=60)
KEY_PREFIX = "luma:"


@dataclass(frozen=True)
class SampleEvent:
    """One event as read from the sample data (no database)."""

    key: str  # the source row, e.g. "orders:3"
    username: str
    email: str
    kind: str
    sku: str
    colour: str = ""


@dataclass
class EventReport:
    users_created: int = 0
    added: Counter[str] = field(default_factory=Counter)
    already: int = 0
    unknown_products: list[str] = field(default_factory=list)
    profiles: int = 0

    def summary(self) -> str:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.added.items())) or "no events"
        return (
            f"{sum(self.added.values())} events added ({kinds}), {self.already} already there, "
            f"{len(self.unknown_products)} of unknown products; {self.users_created} users created; "
            f"{self.profiles} profiles updated"
        )


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_sample_events(folder: Path) -> Iterator[SampleEvent]:
    """Every event of the sample data, in file order."""
    for index, row in enumerate(_rows(folder / ORDERS)):
        email = row.get("customer_email", "").strip().lower()
        try:
            line = json.loads(row.get("product") or "{}")
        except json.JSONDecodeError:
            continue
        if email and line.get("sku"):
            colour = str((line.get("configurable_options") or {}).get("color") or "")
            yield SampleEvent(f"orders:{index}", email, email, ShopperEvent.PURCHASE, str(line["sku"]).strip(), colour)
    for index, row in enumerate(_rows(folder / WISHLISTS)):
        email = row.get("customer_email", "").strip().lower()
        for position, sku in enumerate(s.strip() for s in (row.get("product_list") or "").splitlines()):
            if email and sku:
                yield SampleEvent(f"wishlist:{index}:{position}", email, email, ShopperEvent.CART, sku)
    for index, row in enumerate(_rows(folder / REVIEWS)):
        name = slugify(row.get("reviewer") or "")
        if name and row.get("sku", "").strip():
            email = (row.get("email") or "").strip().lower()
            yield SampleEvent(
                f"reviews:{index}", f"luma-{name}"[:150], email, ShopperEvent.PURCHASE, row["sku"].strip()
            )


class ProductFinder:
    """The catalogue product a sample SKU (and colour) names, as the Luma importer named products."""

    def __init__(self) -> None:
        self.by_sku: dict[str, str] = {}
        self.by_parent: dict[str, str] = {}
        for pk, sku, parent in Product.objects.order_by("sku").values_list("pk", "sku", "parent_sku"):
            self.by_sku[sku] = str(pk)
            if parent:
                self.by_parent.setdefault(parent, str(pk))

    def find(self, sku: str, colour: str = "") -> str | None:
        parts = sku.split("-")
        names = [f"{sku}-{colour}"] if colour else []
        names.append(sku)
        # a simple product's SKU is "<parent>-<size>-<colour>": the record is "<parent>-<colour>"
        names += [f"{'-'.join(parts[:cut])}-{parts[-1]}" for cut in range(len(parts) - 1, 0, -1)]
        for name in names:
            if name in self.by_sku:
                return self.by_sku[name]
        return self.by_parent.get(sku)


def _key(event: SampleEvent) -> str:
    return KEY_PREFIX + hashlib.sha256(event.key.encode()).hexdigest()[:40]


def _when(event: SampleEvent, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    seconds = int(hashlib.sha256(event.key.encode()).hexdigest()[:12], 16) % int(SPREAD.total_seconds())
    return day - SPREAD + timedelta(seconds=seconds)


def import_sample_events(folder: Path, *, now: datetime | None = None, update_profiles: bool = True) -> EventReport:
    """Add the sample data's events (and their users) that are not there yet, then update those users' profiles.

    Args:
        folder: the Magento sample-data folder (the one ``import_catalog`` reads).
        now: the end of the 60 days the times are spread over (default: now).
        update_profiles: fold the users' events into their profiles in this process.
    """
    now = now or timezone.now()
    report = EventReport()
    finder = ProductFinder()
    events = list(read_sample_events(folder))
    existing = set(
        ShopperEvent.objects.filter(session__startswith=KEY_PREFIX, session__in=[_key(e) for e in events]).values_list(
            "session", flat=True
        )
    )
    users: dict[str, int] = {}
    touched: set[int] = set()
    model = get_user_model()
    with transaction.atomic():
        rows = []
        for event in events:
            key = _key(event)
            if key in existing:
                report.already += 1
                continue
            pk = finder.find(event.sku, event.colour)
            if pk is None:
                report.unknown_products.append(event.sku)
                continue
            if event.username not in users:
                user = model.objects.filter(username=event.username).first()
                if user is None:
                    user = model(username=event.username, email=event.email)
                    user.set_unusable_password()
                    user.save()
                    report.users_created += 1
                users[event.username] = user.pk
            existing.add(key)
            touched.add(users[event.username])
            report.added[event.kind] += 1
            rows.append(
                ShopperEvent(
                    kind=event.kind,
                    product_pk=pk,
                    session=key,
                    user_id=users[event.username],
                    created_at=_when(event, now),
                )
            )
        ShopperEvent.objects.bulk_create(rows, batch_size=500)
    if update_profiles:
        for user_id in sorted(touched):
            if services.update_profile(services.shopper_key(session_key=None, user_id=user_id) or "") is not None:
                report.profiles += 1
    return report
