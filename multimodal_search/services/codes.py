"""Products by their code, as a shopper types it from a label, an order or a catalogue.

A code is a product's identifier or its ``fields["sku"]`` ("MH07-Gray"), the start of one ("MH07"), or
its group's ("MH07", a parent sku): ``store.products_by_code``. Orders and labels often carry a
variant's code, the product's with an option inserted ("MH07-XS-Gray": size XS of "MH07-Gray"), which
no product has. Such a code finds the product it is a variant of: of the products of its longest leading
code ("MH07-XS", then "MH07"), those whose code's parts are all parts of the typed one, else all of them
("MH07-XS": every colour of MH07).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.intent import product_code
from multimodal_search.store import get_store

#: what separates a code's parts ("MH07-XS-Gray", "24.MB01", "wj12_s")
_PARTS = re.compile(r"[-_./]+")


def coded_products(
    model_id: str, code: str, *, categories: Sequence[str] = (), limit: int = 100, partial: bool = False
) -> list[str]:
    """Up to ``limit`` products of ``model_id`` a code finds (``store.products_by_code``; ``partial``:
    a code still being typed), else those of the product the code is a variant of ("MH07-XS-Gray" ->
    "MH07-Gray"; "MH07-XS" -> MH07's products)."""
    store = get_store()
    found = store.products_by_code(model_id, code, categories=categories, limit=limit, partial=partial)
    return found or _variant_of(model_id, code, categories, limit, partial)


def options(code: str, skus: Sequence[str]) -> list[str]:
    """The parts of a variant's code that are none of its products' own ("MH07-XS-Gray" of "MH07-Gray":
    ["xs"]), lower case: an option such as a size, as orders and labels insert it."""
    own = {part for sku in skus for part in _parts(sku)}
    return [part for part in _parts(code) if part not in own]


def _parts(code: str) -> list[str]:
    """A code's parts, lower case ("MH07-XS-Gray" -> ["mh07", "xs", "gray"])."""
    return [part for part in _PARTS.split(code.lower()) if part]


def _variant_of(model_id: str, code: str, categories: Sequence[str], limit: int, partial: bool) -> list[str]:
    code = code.lower()
    ends = [match.start() for match in _PARTS.finditer(code)]
    parts = _parts(code)
    if len(parts) < 2:
        return []
    store = get_store()
    family: list[str] = []
    for end in reversed(ends):  # the longest leading code that is one ("24-MB01-XS": "24-MB01", never "24")
        leading = code[:end]
        if product_code(leading) is None:
            break
        family = store.products_by_code(model_id, leading, categories=categories, limit=limit)
        if family:
            break
    if not family:
        return []
    fields = store.product_fields(family, model_id=model_id)
    typed, last = set(parts), parts[-1]

    def fits(pk: str) -> bool:  # every part of the product's code is a typed part (the last, still typed: begun)
        own = str((fields.get(pk) or {}).get(v.FIELD_SKU) or pk).lower()
        return all(part in typed or (partial and part.startswith(last)) for part in _parts(own))

    return [pk for pk in family if fits(pk)] or family
