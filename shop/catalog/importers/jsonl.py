"""Read the generic JSON Lines catalogue format, validating each line.

One JSON object per line::

    {"sku": "TEE-1-RED", "title": "Red tee", "description": "<p>Soft.</p>",
     "category": "Men > Tops > Tees", "color": "Red", "price": 19.5,
     "images": ["images/tee-red.jpg", "images/tee-red_back.jpg"]}

Optional keys: ``gender``, ``material``, ``sizes`` (string or list), ``attributes``
(object), ``parent_sku``, ``active`` (boolean). Image paths are relative to the
file's folder; the first is the main photo, a name containing ``_back`` is a back
view, the rest are alternates. An image may also be ``{"path": ..., "kind": ...}``.
A line whose photo path leaves the file's folder (``../``, an absolute path, a link
out; ``settings.CATALOG_PHOTO_ROOTS`` lists further trusted folders) or names a file
that is not an image is skipped, each refused photo named.
Blank lines are ignored; unknown keys are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from shop.catalog.importers.photos import resolve_photo, trusted_photo_roots
from shop.catalog.importers.records import IMAGE_KINDS, CatalogRecord, RecordError

MAX_SKU_LENGTH = 64
MAX_TITLE_LENGTH = 300
MAX_PRICE = Decimal("99999999.99")
OPTIONAL_STRINGS = ("description", "color", "gender", "material", "parent_sku")


class InvalidRow(ValueError):
    """Raised while parsing one line; its message goes into the import report."""


def read_jsonl(path: Path) -> Iterator[tuple[int, CatalogRecord | RecordError]]:
    """Yield ``(line_number, record_or_error)`` for each non-blank line of ``path``.

    Args:
        path: a ``.jsonl`` file; image paths inside are relative to its folder.

    Returns:
        An iterator; a bad line gives a ``RecordError`` (ref ``"line N"``) and
        reading goes on with the next line.

    Raises:
        OSError: the file itself cannot be read.
    """
    path = Path(path)
    base = path.resolve().parent
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = parse_row(line, base)
            except InvalidRow as exc:
                yield number, RecordError(f"line {number}", str(exc))
            else:
                record.source = f"line {number}"
                yield number, record


def parse_row(line: str, base: Path) -> CatalogRecord:
    """Turn one JSON line into a record, or raise ``InvalidRow``."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidRow(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise InvalidRow("expected a JSON object")
    sku = _required_string(data, "sku", MAX_SKU_LENGTH)
    title = _required_string(data, "title", MAX_TITLE_LENGTH)
    strings = {key: _optional_string(data, key) for key in OPTIONAL_STRINGS}
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidRow("attributes must be an object")
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise InvalidRow("active must be true or false")
    return CatalogRecord(
        sku=sku,
        parent_sku=strings["parent_sku"] or sku,
        title=title,
        description=strings["description"],
        category=_category(data.get("category")),
        color=strings["color"],
        gender=strings["gender"],
        material=strings["material"],
        sizes=_sizes(data.get("sizes")),
        price=_price(data.get("price")),
        attributes=attributes,
        images=_images(data.get("images"), base),
        active=active,
    )


def _required_string(data: dict[str, Any], key: str, max_length: int) -> str:
    value = data.get(key)
    if value is None:
        raise InvalidRow(f"missing {key}")
    if not isinstance(value, str):
        raise InvalidRow(f"{key} must be a string")
    value = value.strip()
    if not value:
        raise InvalidRow(f"empty {key}")
    if len(value) > max_length:
        raise InvalidRow(f"{key} is longer than {max_length} characters")
    return value


def _optional_string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRow(f"{key} must be a string or null")
    return value.strip()


def _category(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRow('category must be a string like "A > B" or null')
    parts = [part.strip() for part in value.split(">") if part.strip()]
    return " > ".join(parts) or None


def _sizes(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(v.strip() for v in value if v.strip())
    raise InvalidRow("sizes must be a string or a list of strings")


def _price(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRow(f"price must be a number or null, not {json.dumps(value)}")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRow(f"price must be a number, not {json.dumps(value)}") from None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise InvalidRow(f"price out of range: {value}")
    return price.quantize(Decimal("0.01"))


def _images(value: Any, base: Path) -> list[tuple[Path, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRow("images must be a list of paths")
    images: list[tuple[Path, str]] = []
    refused: list[str] = []
    for index, item in enumerate(value):
        kind = None
        if isinstance(item, dict):
            kind = item.get("kind")
            item = item.get("path")
            if kind is not None and kind not in IMAGE_KINDS:
                raise InvalidRow(f"image kind must be one of {', '.join(IMAGE_KINDS)}")
        if not isinstance(item, str) or not item.strip():
            raise InvalidRow("each image must be a path string")
        path, reason = resolve_photo(base, item.strip(), trusted_photo_roots())
        if path is None:
            refused.append(reason)
            continue
        if kind is None:
            kind = "main" if index == 0 else ("back" if "_back" in path.stem else "alternate")
        images.append((path, kind))
    if refused:
        raise InvalidRow("; ".join(refused))
    return images
