"""Read the Magento "Luma" sample-data folder into catalogue records (no database access).

Grain: one record per configurable parent x colour (SKU ``"MH01-Black"``, parent ``"MH01"``),
plus one per simple gear product (bags, watches, fitness equipment). Gear SKUs whose photos
show two colours (24-MB02, 24-WG03) are split into one record per colour
(``"24-MB02-Gray"``, ``"24-MB02-Blue"``, parent ``"24-MB02"``). Downloadable, bundle and
grouped products are not read. A photo path that leaves the media folder, or a file that is
not an image, is refused with a warning (``shop.catalog.importers.photos``).
"""

from __future__ import annotations

import csv
import html
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from shop.catalog.importers.photos import resolve_photo
from shop.catalog.importers.records import CatalogRecord

logger = logging.getLogger(__name__)

MAGENTO = Path("app/code/Magento")
CONFIGURABLE_PRODUCTS = MAGENTO / "ConfigurableSampleData/fixtures/products.csv"
SIMPLE_PRODUCTS = MAGENTO / "CatalogSampleData/fixtures/SimpleProduct"
MEDIA = Path("pub/media/catalog/product")

ROOT_CATEGORY = "Default Category"
NON_BROWSE_ROOTS = ("Collections", "Promotions")

# Colour codes and words in gear photo names ("ug05-gr-0.jpg", "mb02-blue-0.jpg").
# Checked against the photos: "gr" items are all grey, "sa" is a sand/beige watch,
# "lb" a light-blue bottle, "br" brown watches.
COLOR_CODES: dict[str, str] = {
    "bk": "Black",
    "black": "Black",
    "br": "Brown",
    "brown": "Brown",
    "gr": "Gray",
    "gray": "Gray",
    "grey": "Gray",
    "green": "Green",
    "lb": "Light Blue",
    "blue": "Blue",
    "sa": "Beige",
    "red": "Red",
    "pink": "Pink",
    "purple": "Purple",
    "orange": "Orange",
    "yellow": "Yellow",
    "white": "White",
}

FLAG_KEYS = ("eco_collection", "performance_fabric", "erin_recommends", "new", "sale")
LIST_KEYS = frozenset(
    {
        "material",
        "climate",
        "style_general",
        "style_bottom",
        "activity",
        "features_bags",
        "strap_bags",
        "style_bags",
        "category_gear",
    }
)
SKIPPED_KEYS = frozenset(
    {
        "has_options",
        "required_options",
        "size",
        "color",
        "gender",
        "special_price",
        "attribute_set",
        "url_key",
        "visibility",
        "qty",
    }
)


def is_luma_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a copy of magento2-sample-data."""
    return (Path(folder) / MAGENTO / "ConfigurableSampleData").is_dir()


def read_luma(folder: Path) -> Iterator[CatalogRecord]:
    """Yield one record per parent x colour from a Magento sample-data folder.

    Args:
        folder: root of the sample data (holds ``app/code/Magento`` and ``pub/media``).

    Returns:
        An iterator of records; photo paths are absolute and exist on disk. An
        alternate photo that is another record's main photo is dropped (the
        WB01/WB04 SKU clash between bra tops and bags).
    """
    folder = Path(folder).resolve()
    if not is_luma_folder(folder):
        raise FileNotFoundError(f"{folder} is not a Magento sample-data folder")
    media = folder / MEDIA
    records = list(_configurable_records(folder / CONFIGURABLE_PRODUCTS, media))
    records.extend(_simple_records(folder / SIMPLE_PRODUCTS, media))
    yield from _drop_clashing_alternates(records)


# --- shared helpers -------------------------------------------------------------------


def clean_text(value: str | None) -> str:
    """Unescape HTML entities and collapse whitespace (for names and attribute values)."""
    return " ".join(html.unescape(value or "").split())


def _values(raw: str, separator: str) -> list[str]:
    return [v for v in (clean_text(part) for part in raw.split(separator)) if v]


def _price(raw: str | None) -> Decimal | None:
    try:
        return Decimal(raw.strip()) if raw and raw.strip() else None
    except InvalidOperation:
        return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _image_kind(path: str) -> str:
    return "back" if "_back" in Path(path).stem else "alternate"


def _media_path(media: Path, relative: str) -> Path | None:
    """The photo's file, or None (a missing file silently; one outside ``media`` or not an image with a warning)."""
    relative = relative.strip().lstrip("/")
    if not relative:
        return None
    path, reason = resolve_photo(media, relative)
    if path is None and not reason.startswith("image file not found"):
        logger.warning("refused photo: %s", reason)
    return path


def _add_attribute(attributes: dict[str, Any], key: str, values: list[str]) -> None:
    if key in SKIPPED_KEYS or not values:
        return
    if key in FLAG_KEYS:
        if values[0].lower() in ("yes", "1", "true"):
            attributes[key] = True
    elif key in LIST_KEYS:
        attributes[key] = values
    else:
        attributes[key] = ", ".join(values)


def _split_magento_attributes(raw: str) -> dict[str, str]:
    """Parse ``"k=v,k2=v2"``; a piece without ``=`` continues the previous value."""
    result: dict[str, str] = {}
    key = None
    for piece in raw.split(","):
        if "=" in piece:
            key, value = piece.split("=", 1)
            key = key.strip()
            result[key] = value
        elif key is not None:
            result[key] += "," + piece
    return result


def _gender_from(values: list[str]) -> str:
    if len(values) == 1:
        return values[0]
    return "Unisex" if values else ""


# --- configurable apparel ---------------------------------------------------------------


@dataclass
class _ColourGroup:
    color: str
    sizes: list[str] = field(default_factory=list)
    children: list[dict[str, str]] = field(default_factory=list)


def _category_paths(raw: str) -> list[list[str]]:
    paths = []
    for entry in raw.split(","):
        parts = [clean_text(p) for p in entry.split("/") if clean_text(p)]
        if parts and parts[0] == ROOT_CATEGORY:
            parts = parts[1:]
        if parts:
            paths.append(parts)
    return paths


def _main_category(paths: list[list[str]]) -> str | None:
    for parts in paths:
        if parts[0] not in NON_BROWSE_ROOTS:
            return " > ".join(parts)
    return " > ".join(paths[0]) if paths else None


def _collections(paths: list[list[str]]) -> list[str]:
    names: list[str] = []
    for parts in paths:
        if parts[0] == "Collections" and len(parts) > 1 and parts[-1] not in names:
            names.append(parts[-1])
    return names


def _colour_groups(parent: dict[str, str], by_sku: dict[str, dict[str, str]]) -> list[_ColourGroup]:
    groups: OrderedDict[str, _ColourGroup] = OrderedDict()
    for variation in parent["configurable_variations"].split("|"):
        spec = _split_magento_attributes(variation)
        child = by_sku.get(spec.get("sku", "").strip())
        if child is None:
            continue
        child_attrs = _split_magento_attributes(child["additional_attributes"])
        color = clean_text(spec.get("color") or child_attrs.get("color"))
        size = clean_text(spec.get("size") or child_attrs.get("size"))
        group = groups.setdefault(color, _ColourGroup(color))
        group.children.append(child)
        if size and size not in group.sizes:
            group.sizes.append(size)
    return list(groups.values())


def _photos(main: str, additional: Iterable[str], media: Path) -> list[tuple[Path, str]]:
    images: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    candidates = [(main, "main")] + [(a, _image_kind(a)) for a in additional]
    for relative, kind in candidates:
        path = _media_path(media, relative)
        if path is None or path in seen:
            continue
        if not images:
            kind = "main"
        seen.add(path)
        images.append((path, kind))
    return images


def _group_photos(group: _ColourGroup, parent: dict[str, str], media: Path) -> list[tuple[Path, str]]:
    with_photo = [c for c in group.children if c["base_image"].strip()]
    if with_photo:
        main = with_photo[0]["base_image"]
        additional = [a for c in with_photo for a in c["additional_images"].split(",") if a.strip()]
    else:
        main = parent["base_image"]
        additional = [a for a in parent["additional_images"].split(",") if a.strip()]
    return _photos(main, additional, media)


def _configurable_records(path: Path, media: Path) -> Iterator[CatalogRecord]:
    rows = _read_csv(path)
    by_sku = {row["sku"].strip(): row for row in rows if row["product_type"] == "simple"}
    for parent in rows:
        if parent["product_type"] != "configurable":
            continue
        parent_sku = parent["sku"].strip()
        paths = _category_paths(parent["categories"])
        category = _main_category(paths)
        attributes: dict[str, Any] = {}
        for key, raw in _split_magento_attributes(parent["additional_attributes"]).items():
            _add_attribute(attributes, key, _values(raw, "|"))
        collections = _collections(paths)
        if collections:
            attributes["collections"] = collections
        material = ", ".join(attributes.get("material", []))
        root = category.split(" > ")[0] if category else ""
        gender = root if root in ("Men", "Women") else ""
        for group in _colour_groups(parent, by_sku):
            yield CatalogRecord(
                sku=f"{parent_sku}-{group.color}" if group.color else parent_sku,
                parent_sku=parent_sku,
                title=clean_text(parent["name"]),
                description=parent["description"].strip(),
                category=category,
                color=group.color,
                gender=gender,
                material=material,
                sizes=", ".join(group.sizes),
                price=_price(parent["price"]),
                attributes=dict(attributes),
                images=_group_photos(group, parent, media),
            )


# --- simple gear ------------------------------------------------------------------------


def _colour_in_name(name: str) -> str:
    for token in re.split(r"[-_.\s]+", Path(name).stem.lower()):
        if token in COLOR_CODES:
            return COLOR_CODES[token]
    return ""


def _gear_category(raw: str) -> tuple[str | None, list[str]]:
    """The category column lists (parent, child) name pairs, one name per line."""
    lines = [clean_text(line) for line in raw.splitlines() if clean_text(line)]
    pairs = [lines[i : i + 2] for i in range(0, len(lines) - 1, 2)]
    paths = [pair for pair in pairs if len(pair) == 2]
    return _main_category(paths), _collections(paths)


def _gear_images(folder: Path) -> dict[str, list[str]]:
    images: dict[str, list[str]] = {}
    for path in sorted(folder.glob("images_*.csv")):
        for row in _read_csv(path):
            images.setdefault(row["sku"].strip(), []).append(row["image"].strip())
    return images


def _gear_colour(row: dict[str, str]) -> str:
    # A colour spelt in the SKU wins over the colour column: the pink balls
    # ("24-WG081-pink", pink photo) say "Red" in that column.
    sku_colour = COLOR_CODES.get(row["sku"].strip().rsplit("-", 1)[-1].lower(), "")
    return sku_colour or clean_text(row.get("color"))


def _simple_records(folder: Path, media: Path) -> Iterator[CatalogRecord]:
    images = _gear_images(folder)
    for path in sorted(folder.glob("products_*.csv")):
        for row in _read_csv(path):
            sku = row["sku"].strip()
            category, collections = _gear_category(row.get("category", ""))
            attributes: dict[str, Any] = {}
            for key, raw in row.items():
                if key in ("category", "name", "sku", "price", "description") or key is None:
                    continue
                _add_attribute(attributes, key, _values(raw or "", "\n"))
            if collections:
                attributes["collections"] = collections
            base = CatalogRecord(
                sku=sku,
                parent_sku=sku,
                title=clean_text(row["name"]),
                description=(row.get("description") or "").strip(),
                category=category,
                color=_gear_colour(row),
                gender=_gender_from(_values(row.get("gender") or "", "\n")),
                material=", ".join(attributes.get("material", [])),
                sizes=clean_text(row.get("size")),
                price=_price(row.get("price")),
                attributes=attributes,
            )
            yield from _split_by_photo_colour(base, images.get(sku, []), media)


def _split_by_photo_colour(base: CatalogRecord, names: list[str], media: Path) -> Iterator[CatalogRecord]:
    by_colour: OrderedDict[str, list[str]] = OrderedDict()
    for name in names:
        by_colour.setdefault(_colour_in_name(name), []).append(name)
    named = [colour for colour in by_colour if colour]
    if len(named) <= 1:
        if not base.color and named:
            base.color = named[0]
        base.images = _photos(names[0], names[1:], media) if names else []
        yield base
        return
    for colour in named:
        photos = by_colour[colour] + by_colour.get("", [])
        yield CatalogRecord(
            **{
                **base.__dict__,
                "sku": f"{base.sku}-{colour}",
                "color": colour,
                "attributes": dict(base.attributes),
                "images": _photos(photos[0], photos[1:], media),
            }
        )


# --- cross-record fixes ------------------------------------------------------------------


def _drop_clashing_alternates(records: list[CatalogRecord]) -> list[CatalogRecord]:
    main_photos = {r.images[0][0] for r in records if r.images}
    for record in records:
        own_main = record.images[0][0] if record.images else None
        record.images = [
            (path, kind)
            for path, kind in record.images
            if kind == "main" or path == own_main or path not in main_photos
        ]
    return records
