"""Write catalogue records into the database: upsert by SKU, photos copied into media.

A record whose fields and photos match what is stored is counted "unchanged" and
nothing is saved (so no indexing is triggered). Otherwise the product and its photo
rows are written inside one ``transaction.atomic()`` block, so on-commit hooks see
the product together with its photos. Photo files go to
``products/<sku-slug>/<filename>`` in the image field's storage and are copied only
when their content differs from the stored file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any, cast

from django.core.files import File
from django.core.files.storage import Storage
from django.db import DatabaseError, transaction
from django.utils.text import get_valid_filename, slugify

from shop.catalog.importers.records import CatalogRecord, ImportReport, RecordError
from shop.catalog.models import Category, Product, ProductImage

BATCH_SIZE = 100

Progress = Callable[[int], Any]


@dataclass(frozen=True)
class PlannedImage:
    source: Path
    name: str
    kind: str
    position: int
    alt: str


def import_records(records: Iterable[CatalogRecord | RecordError], *, progress: Progress | None = None) -> ImportReport:
    """Create or update one product per record; report what happened.

    Args:
        records: records to store; ``RecordError`` items (rows a reader rejected)
            are passed straight into ``report.skipped``.
        progress: called with ``1`` after each item (e.g. ``tqdm.update``).

    Returns:
        An ``ImportReport``. A record that fails (unreadable photo, database
        error) is rolled back alone and listed in ``skipped``.
    """
    report = ImportReport()
    importer = _Importer(report)
    for batch in _batches(records, BATCH_SIZE):
        importer.load_existing([r.sku for r in batch if isinstance(r, CatalogRecord)])
        for item in batch:
            if isinstance(item, RecordError):
                report.skipped.append((item.ref, item.message))
            else:
                importer.store(item)
            if progress is not None:
                progress(1)
    return report


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def image_storage() -> Storage:
    """The storage that ``ProductImage.image`` writes to."""
    return ProductImage._meta.get_field("image").storage


def image_name(sku: str, source: Path) -> str:
    """Storage name of a product photo: ``products/<sku-slug>/<filename>``."""
    folder = slugify(sku) or hashlib.sha1(sku.encode()).hexdigest()[:12]
    name = f"products/{folder}/{get_valid_filename(source.name)}"
    # a FileField always has a max_length (100 unless set); django-stubs types Field.max_length as int | None
    max_length = cast(int, ProductImage._meta.get_field("image").max_length)
    if len(name) > max_length:
        raise ValueError(f"photo name {name!r} is longer than {max_length} characters")
    return name


def file_digest(handle: Any) -> str:
    """sha1 of an open binary file, read in chunks."""
    digest = hashlib.sha1()
    for chunk in iter(lambda: handle.read(1 << 16), b""):
        digest.update(chunk)
    return digest.hexdigest()


class _Importer:
    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.storage = image_storage()
        self.categories: dict[str, Category] = {}
        self.existing: dict[str, Product] = {}
        self._same_file_cache: dict[tuple[Path, str], bool] = {}

    def load_existing(self, skus: list[str]) -> None:
        """Fetch the stored products (with photos) of the next batch of SKUs."""
        self.existing = {}
        for product in Product.objects.filter(sku__in=skus).prefetch_related("images"):
            self.existing[product.sku] = product

    def store(self, record: CatalogRecord) -> None:
        try:
            with transaction.atomic():
                outcome = self._store(record)
        except (OSError, ValueError, DatabaseError) as exc:
            # Rolled back: forget rows this record may have created.
            self.categories.clear()
            self.existing.pop(record.sku, None)
            self.existing.update((p.sku, p) for p in Product.objects.filter(sku=record.sku).prefetch_related("images"))
            self.report.skipped.append((record.ref, f"{exc.__class__.__name__}: {exc}"))
            return
        setattr(self.report, outcome, getattr(self.report, outcome) + 1)

    def _store(self, record: CatalogRecord) -> str:
        values = self._field_values(record)
        planned = self._plan_images(record)
        product = self.existing.get(record.sku)
        if product is None:
            product = Product(sku=record.sku, **values)
            outcome = "created"
        else:
            fields_same = all(getattr(product, k) == v for k, v in values.items())
            if fields_same and self._images_same(product, planned):
                return "unchanged"
            for key, value in values.items():
                setattr(product, key, value)
            outcome = "updated"
        product.save()
        self._sync_images(product, planned)
        self.existing[record.sku] = product
        return outcome

    def _field_values(self, record: CatalogRecord) -> dict[str, Any]:
        category = self._category(record.category)
        return {
            "parent_sku": record.parent_sku,
            "title": record.title,
            "description": record.description,
            "price": record.price.quantize(Decimal("0.01")) if record.price is not None else None,
            "category_id": category.pk if category else None,
            "color": record.color,
            "gender": record.gender,
            "material": record.material,
            "sizes": record.sizes,
            "attributes": record.attributes,
            "active": record.active,
        }

    def _category(self, path: str | None) -> Category | None:
        if not path:
            return None
        if path not in self.categories:
            self.categories[path] = Category.from_path(path)
        return self.categories[path]

    def _plan_images(self, record: CatalogRecord) -> list[PlannedImage]:
        planned: list[PlannedImage] = []
        names: set[str] = set()
        label = f"{record.title} ({record.color})" if record.color else record.title
        for source, kind in record.images:
            name = image_name(record.sku, Path(source))
            if name in names:
                continue
            names.add(name)
            view = "" if kind == "main" else f", {kind} view"
            planned.append(PlannedImage(Path(source), name, kind, len(planned), f"{label}{view}"[:300]))
        return planned

    # --- photos ---------------------------------------------------------------------

    def _images_same(self, product: Product, planned: list[PlannedImage]) -> bool:
        current = list(product.images.all())
        if [(i.image.name, i.kind, i.position, i.alt) for i in current] != [
            (p.name, p.kind, p.position, p.alt) for p in planned
        ]:
            return False
        return all(self._stored_file_matches(p.source, p.name) for p in planned)

    def _stored_file_matches(self, source: Path, name: str) -> bool:
        key = (source, name)
        if key not in self._same_file_cache:
            self._same_file_cache[key] = self._compare(source, name)
        return self._same_file_cache[key]

    def _compare(self, source: Path, name: str) -> bool:
        if not self.storage.exists(name):
            return False
        if self.storage.size(name) != source.stat().st_size:
            return False
        with self.storage.open(name, "rb") as stored, source.open("rb") as new:
            return file_digest(stored) == file_digest(new)

    def _put_file(self, source: Path, name: str) -> None:
        if self._stored_file_matches(source, name):
            return
        if self.storage.exists(name):
            self.storage.delete(name)
        with source.open("rb") as handle:
            saved = self.storage.save(name, File(handle, name=source.name))
        if saved != name:
            raise OSError(f"storage saved {name!r} as {saved!r}")
        self._same_file_cache[(source, name)] = True

    def _sync_images(self, product: Product, planned: list[PlannedImage]) -> None:
        # the column is NOT NULL, so each name is a str (django-stubs types FieldFile.name as str | None)
        current = {cast(str, image.image.name): image for image in product.images.all()}
        wanted = {p.name for p in planned}
        for name, image in current.items():
            if name not in wanted:
                image.delete()
                self._delete_file_on_commit(name)
        for plan in planned:
            self._put_file(plan.source, plan.name)
            stored = current.get(plan.name)
            if stored is None:
                ProductImage.objects.create(
                    product=product,
                    image=plan.name,
                    kind=plan.kind,
                    position=plan.position,
                    alt=plan.alt,
                )
            elif (stored.kind, stored.position, stored.alt) != (plan.kind, plan.position, plan.alt):
                stored.kind, stored.position, stored.alt = plan.kind, plan.position, plan.alt
                stored.save(update_fields=["kind", "position", "alt"])
        # Drop the prefetched photos so later comparisons read the new rows.
        getattr(product, "_prefetched_objects_cache", {}).pop("images", None)

    def _delete_file_on_commit(self, name: str) -> None:
        def delete() -> None:
            if not ProductImage.objects.filter(image=name).exists() and self.storage.exists(name):
                self.storage.delete(name)
            self._same_file_cache = {k: v for k, v in self._same_file_cache.items() if k[1] != name}

        transaction.on_commit(delete)
