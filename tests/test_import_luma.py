"""Reading the Magento Luma sample data (shared dataset; skipped when absent)."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command

from shop.catalog.importers.luma import is_luma_folder, read_luma
from shop.catalog.importers.records import CatalogRecord
from shop.catalog.importers.store import import_records
from shop.catalog.models import Product, ProductImage
from tests.data_paths import LUMA

pytestmark = pytest.mark.skipif(not is_luma_folder(LUMA), reason=f"no Luma sample data at {LUMA}")


@pytest.fixture(scope="module")
def records() -> dict[str, CatalogRecord]:
    return {record.sku: record for record in read_luma(LUMA)}


def test_one_record_per_parent_and_colour(records: dict[str, CatalogRecord]) -> None:
    assert len(records) == 463
    assert len({r.parent_sku for r in records.values()}) == 191
    assert all(r.images for r in records.values())
    assert all(path.is_file() for r in records.values() for path, _ in r.images)


def test_apparel_record(records: dict[str, CatalogRecord]) -> None:
    hoodie = records["MH01-Black"]

    assert hoodie.parent_sku == "MH01"
    assert hoodie.title == "Chaz Kangeroo Hoodie"
    assert hoodie.color == "Black"
    assert hoodie.gender == "Men"
    assert hoodie.category == "Men > Tops > Hoodies & Sweatshirts"
    assert hoodie.sizes == "XS, S, M, L, XL"
    assert str(hoodie.price) == "52"
    assert hoodie.images[0][1] == "main"
    assert str(hoodie.images[0][0]).endswith("mh01-black_main.jpg")
    assert hoodie.attributes["collections"] == ["Eco Friendly"]
    assert hoodie.attributes["eco_collection"] is True
    assert "<p>" in hoodie.description
    gray = records["MH01-Gray"]
    assert [(p.name, kind) for p, kind in gray.images] == [
        ("mh01-gray_main.jpg", "main"),
        ("mh01-gray_alt1.jpg", "alternate"),
        ("mh01-gray_back.jpg", "back"),
    ]


def test_gear(records: dict[str, CatalogRecord]) -> None:
    bags = [r for r in records.values() if r.category == "Gear > Bags"]
    assert len(bags) == 15
    assert records["24-MB01"].color == "Blue"
    assert records["24-MG01"].color == "Black"  # "bk" in the photo name
    assert records["24-WG09"].color == "Gray"  # "gr"
    assert records["24-UG06"].color == "Light Blue"  # "lb"
    assert records["24-WG081-pink"].color == "Pink"  # the colour column says "Red"
    assert records["24-MG01"].gender == "Men"
    assert records["24-UG06"].gender == "Unisex"
    # Two colours in one SKU's photos: one record per colour.
    assert "24-MB02" not in records
    assert {records["24-MB02-Gray"].color, records["24-MB02-Blue"].color} == {"Gray", "Blue"}
    assert records["24-MB02-Blue"].parent_sku == "24-MB02"
    assert {r.sku for r in records.values() if r.parent_sku == "24-WG03"} == {
        "24-WG03-Gray",
        "24-WG03-Beige",
    }


def test_no_alternate_photo_is_another_items_main_photo(
    records: dict[str, CatalogRecord],
) -> None:
    mains = Counter(r.images[0][0] for r in records.values())
    for record in records.values():
        for path, kind in record.images[1:]:
            assert kind in ("alternate", "back")
            assert path not in mains, f"{record.sku} shows {path.name}"
    assert all(p.name != "wb01-black-0.jpg" for p, _ in records["WB01-Black"].images[1:])
    assert sum(len(r.images) - 1 for r in records.values()) == 253


def test_titles_have_no_html_entities(records: dict[str, CatalogRecord]) -> None:
    entity = re.compile(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", re.I)
    assert not [r.title for r in records.values() if entity.search(r.title)]
    assert records["MS09-Blue"].title == "Ryker LumaTech™ Tee (Crew-neck)"


@pytest.mark.django_db
def test_import_subset_twice(settings, tmp_path: Path, records: dict[str, CatalogRecord]) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    subset = [r for r in records.values() if r.parent_sku in ("MH01", "24-MB02", "WB01")]

    first = import_records(subset)
    second = import_records(subset)

    assert (first.created, first.skipped) == (len(subset), [])
    assert (second.created, second.updated, second.unchanged) == (0, 0, len(subset))
    hoodie = Product.objects.get(sku="MH01-Black")
    assert hoodie.category.path == "Men > Tops > Hoodies & Sweatshirts"
    assert hoodie.images.get().image.name == "products/mh01-black/mh01-black_main.jpg"
    assert ProductImage.objects.count() == sum(len(r.images) for r in subset)


@pytest.mark.django_db
def test_command_on_luma_folder(settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    out = io.StringIO()

    call_command("import_catalog", str(LUMA), "--limit", "3", stdout=out, stderr=io.StringIO())

    assert "created 3, updated 0, unchanged 0, skipped 0" in out.getvalue()
    assert Product.objects.count() == 3
