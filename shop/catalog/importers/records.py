"""Plain data passed from the catalogue readers (Luma, JSON Lines) to the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

IMAGE_KINDS = ("main", "alternate", "back")


@dataclass(kw_only=True)
class CatalogRecord:
    """One sellable item (a parent product in one colour), ready to be stored.

    ``images`` lists ``(absolute_path, kind)`` pairs in display order; ``kind`` is
    one of ``IMAGE_KINDS``. ``category`` is a path such as ``"Men > Tops > Tees"``.
    ``source`` says where the record came from ("line 3"), for error reports.
    """

    sku: str
    parent_sku: str = ""
    title: str
    description: str = ""
    category: str | None = None
    color: str = ""
    gender: str = ""
    material: str = ""
    sizes: str = ""
    price: Decimal | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    images: list[tuple[Path, str]] = field(default_factory=list)
    active: bool = True
    source: str = ""

    @property
    def ref(self) -> str:
        """How reports name this record: its source line, else its SKU."""
        return self.source or f"sku {self.sku}"


@dataclass(frozen=True)
class RecordError:
    """A row a reader could not turn into a record; ``ref`` is e.g. ``"line 7"``."""

    ref: str
    message: str


@dataclass
class ImportReport:
    """Counts of an import run; ``skipped`` holds ``(ref, message)`` pairs."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def imported(self) -> int:
        """Records that ended up in the catalogue (created, updated or unchanged)."""
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        return (
            f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, skipped {len(self.skipped)}"
        )
