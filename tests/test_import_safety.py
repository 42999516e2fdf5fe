"""Importers copy only image files from inside the catalogue folder into public media."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from PIL import Image

from shop.catalog.importers.jsonl import read_jsonl
from shop.catalog.importers.luma import CONFIGURABLE_PRODUCTS, MEDIA, SIMPLE_PRODUCTS, read_luma
from shop.catalog.importers.records import CatalogRecord, RecordError
from shop.catalog.importers.store import import_records
from shop.catalog.models import Product

pytestmark = pytest.mark.django_db

SECRET = b"root:x:0:0:secret\n"


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Path]:
    """Files next to (not inside) the catalogue folder: a secret and a real photo."""
    (tmp_path / "private").mkdir()
    secret = tmp_path / "private" / "passwd"
    secret.write_bytes(SECRET)
    photo = tmp_path / "private" / "photo.jpg"
    Image.new("RGB", (16, 16), "red").save(photo, format="JPEG")
    return {"secret": secret, "photo": photo}


def write_photo(path: Path, colour: str = "blue") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path, format="JPEG")


def media_bytes(media: Path) -> list[bytes]:
    return [p.read_bytes() for p in media.rglob("*") if p.is_file()] if media.exists() else []


def jsonl_catalogue(folder: Path, outside: dict[str, Path]) -> Path:
    write_photo(folder / "images" / "good.jpg")
    (folder / "images" / "notes.jpg").write_bytes(b"not a photo at all")
    (folder / "images" / "link.jpg").symlink_to(outside["photo"])
    rows = [
        {"sku": "GOOD", "title": "Good", "images": ["images/good.jpg"]},
        {"sku": "DOTDOT", "title": "Dot dot", "images": ["images/good.jpg", "../private/photo.jpg"]},
        {"sku": "ABSOLUTE", "title": "Absolute", "images": [str(outside["secret"])]},
        {"sku": "ETC", "title": "Etc", "images": ["/etc/passwd"]},
        {"sku": "LINK", "title": "Link", "images": ["images/link.jpg"]},
        {"sku": "TEXT", "title": "Text", "images": ["images/notes.jpg"]},
        {"sku": "TWO", "title": "Two", "images": [{"path": "../../x.jpg"}, "images/notes.jpg"]},
    ]
    path = folder / "products.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_refuses_photos_outside_the_folder_and_non_images(
    media: Path, tmp_path: Path, outside: dict[str, Path]
) -> None:
    path = jsonl_catalogue(tmp_path / "catalogue", outside)
    items = [item for _, item in read_jsonl(path)]
    errors = {item.ref: item.message for item in items if isinstance(item, RecordError)}
    assert [item.sku for item in items if isinstance(item, CatalogRecord)] == ["GOOD"]
    assert "leaves the catalogue folder: ../private/photo.jpg" in errors["line 2"]
    assert "leaves the catalogue folder" in errors["line 3"] and "leaves the catalogue folder" in errors["line 4"]
    assert "leaves the catalogue folder: images/link.jpg" in errors["line 5"]
    assert "not a readable image: images/notes.jpg" in errors["line 6"]
    assert "../../x.jpg" in errors["line 7"] and "images/notes.jpg" in errors["line 7"]  # one reason per file

    report = import_records(items)
    assert report.created == 1 and len(report.skipped) == 6
    assert SECRET not in media_bytes(media)
    assert outside["photo"].read_bytes() not in media_bytes(media)


def test_import_command_prints_one_line_per_refused_row(media: Path, tmp_path: Path, outside: dict[str, Path]) -> None:
    out = io.StringIO()
    call_command("import_catalog", str(jsonl_catalogue(tmp_path / "catalogue", outside)), stdout=out, verbosity=0)
    text = out.getvalue()
    assert "created 1" in text and "skipped 6" in text
    assert "line 4: image path leaves the catalogue folder: /etc/passwd" in text
    assert list(Product.objects.values_list("sku", flat=True)) == ["GOOD"]


def luma_folder(folder: Path, outside: dict[str, Path]) -> Path:
    """A minimal Magento sample-data layout with one gear product and crafted photo paths."""
    (folder / CONFIGURABLE_PRODUCTS).parent.mkdir(parents=True)
    (folder / CONFIGURABLE_PRODUCTS).write_text("sku,product_type\n", encoding="utf-8")
    simple = folder / SIMPLE_PRODUCTS
    simple.mkdir(parents=True)
    with (simple / "products_gear.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "name", "sku", "price", "description"])
        writer.writerow(["Gear\nBags", "Joust Duffle Bag", "24-MB01", "34", "<p>Bag</p>"])
    media = folder / MEDIA
    write_photo(media / "m" / "b" / "mb01-blue-0.jpg")
    (media / "m" / "b" / "mb01-notes.jpg").write_bytes(b"plain text")
    depth = "../" * (len(MEDIA.parts) + 2)
    with (simple / "images_gear.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "image"])
        for image in [
            "/m/b/mb01-blue-0.jpg",
            f"{depth}private/photo.jpg",
            f"/{depth}private/passwd",
            "/m/b/mb01-notes.jpg",
        ]:
            writer.writerow(["24-MB01", image])
    return folder


def test_luma_refuses_photos_outside_media_and_non_images(
    media: Path, tmp_path: Path, outside: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    folder = luma_folder(tmp_path / "luma", outside)
    with caplog.at_level(logging.WARNING, logger="shop.catalog.importers"):
        records = list(read_luma(folder))
    assert [r.sku for r in records] == ["24-MB01"]
    assert [p.name for p, _ in records[0].images] == ["mb01-blue-0.jpg"]
    refused = [r.getMessage() for r in caplog.records if r.name.startswith("shop.catalog.importers")]
    assert len(refused) == 3, refused
    assert sum("leaves the catalogue folder" in line for line in refused) == 2
    assert any("not a readable image: m/b/mb01-notes.jpg" in line for line in refused)

    report = import_records(records)
    assert report.created == 1
    assert SECRET not in media_bytes(media)
    assert outside["photo"].read_bytes() not in media_bytes(media)


def test_jsonl_photos_may_come_from_a_trusted_root(
    settings: Any, media: Path, tmp_path: Path, outside: dict[str, Path]
) -> None:
    settings.CATALOG_PHOTO_ROOTS = [str(outside["photo"].parent)]
    folder = tmp_path / "catalogue"
    folder.mkdir()
    rows = [
        {"sku": "SHARED", "title": "Shared photo", "images": ["../private/photo.jpg"]},
        {"sku": "SECRET", "title": "Still not an image", "images": ["../private/passwd"]},
        {"sku": "ETC", "title": "Still outside", "images": ["/etc/passwd"]},
    ]
    path = folder / "products.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    items = [item for _, item in read_jsonl(path)]
    assert isinstance(items[0], CatalogRecord) and items[0].images[0][0] == outside["photo"].resolve()
    assert isinstance(items[1], RecordError) and "not a readable image" in items[1].message
    assert isinstance(items[2], RecordError) and "leaves the catalogue folder" in items[2].message
