"""JSON Lines import: validation, upsert by SKU, photo copying and the command."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models.signals import post_save
from PIL import Image

from shop.catalog.importers.jsonl import read_jsonl
from shop.catalog.importers.records import CatalogRecord, RecordError
from shop.catalog.importers.store import import_records
from shop.catalog.models import Product, ProductImage


@pytest.fixture
def media(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    return settings.MEDIA_ROOT


def write_photo(path: Path, colour: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path, format="JPEG")
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_rows() -> list[dict[str, Any]]:
    return [
        {
            "sku": "TEE-RED",
            "title": "Breeze Tee",
            "description": "<p>Light &amp; soft.</p>",
            "category": "Men > Tops > Tees",
            "color": "Red",
            "price": 19.5,
            "images": ["images/tee-red.jpg", "images/tee-red_back.jpg", "images/tee-red_alt1.jpg"],
            "parent_sku": "TEE",
            "sizes": ["S", "M"],
            "attributes": {"material": ["Cotton"]},
        },
        {
            "sku": "TEE-BLUE",
            "title": "Breeze Tee",
            "description": "<p>Light &amp; soft.</p>",
            "category": "Men > Tops > Tees",
            "color": "Blue",
            "price": 19.5,
            "images": ["images/tee-blue.jpg"],
            "parent_sku": "TEE",
        },
    ]


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    folder = tmp_path / "catalogue"
    write_photo(folder / "images/tee-red.jpg", "red")
    write_photo(folder / "images/tee-red_back.jpg", "darkred")
    write_photo(folder / "images/tee-red_alt1.jpg", "pink")
    write_photo(folder / "images/tee-blue.jpg", "blue")
    return write_jsonl(folder / "products.jsonl", good_rows())


def media_files(media: Path) -> list[Path]:
    return sorted(p for p in Path(media).rglob("*") if p.is_file())


def run_import(path: Path):
    return import_records(item for _, item in read_jsonl(path))


def test_read_jsonl_parses_records(catalogue: Path) -> None:
    items = list(read_jsonl(catalogue))

    assert [number for number, _ in items] == [1, 2]
    record = items[0][1]
    assert isinstance(record, CatalogRecord)
    assert record.sku == "TEE-RED"
    assert record.parent_sku == "TEE"
    assert record.price == Decimal("19.50")
    assert record.category == "Men > Tops > Tees"
    assert record.sizes == "S, M"
    assert [kind for _, kind in record.images] == ["main", "back", "alternate"]
    assert all(path.is_absolute() and path.is_file() for path, _ in record.images)
    assert record.source == "line 1"


@pytest.mark.django_db
def test_import_creates_products_and_copies_photos(media: Path, catalogue: Path) -> None:
    report = run_import(catalogue)

    assert (report.created, report.updated, report.unchanged, report.skipped) == (2, 0, 0, [])
    red = Product.objects.get(sku="TEE-RED")
    assert red.title == "Breeze Tee"
    assert red.parent_sku == "TEE"
    assert red.price == Decimal("19.50")
    assert red.color == "Red"
    assert red.category.path == "Men > Tops > Tees"
    assert red.attributes == {"material": ["Cotton"]}
    images = list(red.images.all())
    assert [(i.kind, i.position) for i in images] == [("main", 0), ("back", 1), ("alternate", 2)]
    assert images[0].image.name == "products/tee-red/tee-red.jpg"
    assert Path(images[0].image.path).is_file()
    assert len(media_files(media)) == 4


@pytest.mark.django_db
def test_reimport_is_unchanged_then_updates_without_duplicates(media: Path, catalogue: Path) -> None:
    run_import(catalogue)
    files_before = media_files(media)
    saved: list[str] = []

    def count(sender: type, instance: Product, **kwargs: Any) -> None:
        saved.append(instance.sku)

    post_save.connect(count, sender=Product)
    try:
        again = run_import(catalogue)
        assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
        assert saved == []

        rows = good_rows()
        rows[0]["title"] = "Breeze Tee II"
        write_jsonl(catalogue, rows)
        changed = run_import(catalogue)
    finally:
        post_save.disconnect(count, sender=Product)

    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 1)
    assert saved == ["TEE-RED"]
    assert Product.objects.count() == 2
    assert Product.objects.get(sku="TEE-RED").title == "Breeze Tee II"
    assert ProductImage.objects.count() == 4
    assert media_files(media) == files_before


@pytest.mark.django_db
def test_changed_photo_content_is_copied_again(media: Path, catalogue: Path) -> None:
    run_import(catalogue)
    photo = catalogue.parent / "images/tee-blue.jpg"
    write_photo(photo, "green")

    report = run_import(catalogue)

    assert (report.updated, report.unchanged) == (1, 1)
    stored = ProductImage.objects.get(product__sku="TEE-BLUE")
    assert stored.image.name == "products/tee-blue/tee-blue.jpg"
    assert Path(stored.image.path).read_bytes() == photo.read_bytes()
    assert len(media_files(media)) == 4


@pytest.mark.django_db
def test_removed_photo_row_is_deleted(media: Path, catalogue: Path) -> None:
    run_import(catalogue)
    rows = good_rows()
    rows[0]["images"] = ["images/tee-red.jpg"]
    write_jsonl(catalogue, rows)

    report = run_import(catalogue)

    assert report.updated == 1
    assert [i.image.name for i in Product.objects.get(sku="TEE-RED").images.all()] == ["products/tee-red/tee-red.jpg"]


@pytest.mark.django_db
def test_record_failing_in_store_is_rolled_back_alone(media: Path, tmp_path: Path) -> None:
    good = write_photo(tmp_path / "ok.jpg", "red")
    records = [
        CatalogRecord(sku="GONE", title="Gone", category="Gear > Bags", images=[(tmp_path / "gone.jpg", "main")]),
        CatalogRecord(sku="OK", title="Ok", category="Gear > Bags", images=[(good, "main")]),
    ]

    report = import_records(records)

    assert report.created == 1
    assert report.skipped[0][0] == "sku GONE"
    assert "FileNotFoundError" in report.skipped[0][1]
    assert list(Product.objects.values_list("sku", "category__path")) == [("OK", "Gear > Bags")]


def bad_file(folder: Path) -> Path:
    rows = good_rows()
    missing_sku = {**rows[1], "sku": "", "images": []}
    missing_image = {**rows[1], "sku": "TEE-GREEN", "images": ["images/nope.jpg"]}
    bad_price = {**rows[1], "sku": "TEE-PINK", "price": "abc"}
    return write_jsonl(
        folder / "products.jsonl",
        [rows[0], '{"sku": "BROKEN", ', missing_sku, missing_image, bad_price, rows[1]],
    )


def test_bad_rows_are_reported_by_line(catalogue: Path) -> None:
    path = bad_file(catalogue.parent)
    (catalogue.parent / "images/not-a-photo.jpg").write_text("hello")
    with path.open("a") as handle:
        handle.write(json.dumps({"sku": "X", "title": "X", "images": ["images/not-a-photo.jpg"]}) + "\n")
        handle.write(json.dumps({"sku": "Y", "title": "Y", "price": True}) + "\n")
        handle.write(json.dumps(["not", "an", "object"]) + "\n")

    errors = {n: item.message for n, item in read_jsonl(path) if isinstance(item, RecordError)}

    assert sorted(errors) == [2, 3, 4, 5, 7, 8, 9]
    assert errors[2].startswith("invalid JSON")
    assert errors[3] == "empty sku"
    assert "image file not found: images/nope.jpg" in errors[4]
    assert "price must be a number" in errors[5]
    assert "not a readable image" in errors[7]
    assert "price" in errors[8]
    assert errors[9] == "expected a JSON object"


@pytest.mark.django_db
def test_bad_rows_are_skipped_and_good_rows_import(media: Path, catalogue: Path) -> None:
    report = run_import(bad_file(catalogue.parent))

    assert report.created == 2
    assert [ref for ref, _ in report.skipped] == ["line 2", "line 3", "line 4", "line 5"]
    assert set(Product.objects.values_list("sku", flat=True)) == {"TEE-RED", "TEE-BLUE"}


@pytest.mark.django_db
def test_command_prints_summary_and_skipped_rows(media: Path, catalogue: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_catalog", str(bad_file(catalogue.parent)), stdout=out, stderr=err)

    text = out.getvalue()
    assert "created 2, updated 0, unchanged 0, skipped 4" in text
    assert "line 2: invalid JSON" in text
    assert "line 3: empty sku" in text
    assert "line 4: image file not found: images/nope.jpg" in text
    assert "line 5: price must be a number" in text

    out = io.StringIO()
    write_jsonl(catalogue, good_rows())
    call_command("import_catalog", str(catalogue), stdout=out, stderr=err)
    assert "created 0, updated 0, unchanged 2, skipped 0" in out.getvalue()


@pytest.mark.django_db
def test_command_limit(media: Path, catalogue: Path) -> None:
    call_command("import_catalog", str(catalogue), "--limit", "1", stdout=io.StringIO(), stderr=io.StringIO())

    assert list(Product.objects.values_list("sku", flat=True)) == ["TEE-RED"]


@pytest.mark.django_db
def test_command_fails_when_every_row_is_bad(media: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", ["nonsense", {"title": "no sku"}])

    with pytest.raises(CommandError, match="nothing imported"):
        call_command("import_catalog", str(path), stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize("name", ["missing.jsonl", "folder", "notes.txt"])
def test_command_rejects_invalid_path(tmp_path: Path, name: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("hi")

    with pytest.raises(CommandError) as info:
        call_command("import_catalog", str(tmp_path / name), stdout=io.StringIO(), stderr=io.StringIO())

    assert "\n" not in str(info.value)
