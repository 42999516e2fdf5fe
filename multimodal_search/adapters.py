"""How multimodal_search reads a project's product model.

A project points ``MULTIMODAL_SEARCH["ADAPTER"]`` at a subclass of
``BaseProductAdapter``; nothing else in this app knows the product model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.apps import apps
from django.db import models
from PIL import Image

from multimodal_search.imaging import open_image


@dataclass(frozen=True)
class ImageRef:
    """One product photo.

    Attributes:
        key: stable identifier (e.g. storage name), unique within a product.
        path: local file path the worker can open.
        url: public URL for result cards (may be empty).
    """

    key: str
    path: str
    url: str = ""

    def open(self) -> Image.Image:
        """The photo upright (EXIF orientation), RGB, decoded at reduced size within the pixel caps.

        Raises:
            PhotoError: unreadable, or over ``MAX_IMAGE_PIXELS`` / ``MAX_IMAGE_ASPECT``.
        """
        from multimodal_search.conf import search_settings

        return open_image(
            self.path,
            max_pixels=int(search_settings.MAX_IMAGE_PIXELS),
            max_aspect=float(search_settings.MAX_IMAGE_ASPECT),
        )


class BaseProductAdapter:
    """Reads text, photos, categories and display fields from products.

    Override ``get_text`` and ``get_images`` at least.
    """

    #: whether ``get_facet_values`` reads what ``get_queryset`` prefetches (the default does: its price
    #: comes from ``to_result``, which reads the photos). Set it False when yours does not: a search page
    #: then loads its whole result set (a few hundred products, filtered and counted) without the
    #: ``prefetch_related`` and runs it for the page's products only, most of the page's Python time.
    facet_values_use_prefetch = True
    #: the model fields ``get_facet_values`` reads, as ``QuerySet.only`` takes them (``"category__path"``
    #: through the queryset's ``select_related``) and ``get_group`` reads, or None: every field. With ``facet_values_use_prefetch``
    #: False, a search page sorted by relevance or price loads only these for its whole result set and
    #: then the page's own products in full (one more query): a product's description, attributes,
    #: timestamps and the like are not read and parsed for the few hundred products only counted.
    facet_fields: tuple[str, ...] | None = None

    def get_model(self) -> type[models.Model]:
        from multimodal_search.conf import search_settings

        return apps.get_model(search_settings.PRODUCT_MODEL)

    def get_queryset(self) -> models.QuerySet:
        """Products that should be searchable (others are removed from the index)."""
        return self.get_model()._default_manager.all()

    def get_text(self, product: Any) -> str:
        """The text the text encoder sees (title, description, attributes), as plain text: no tags, entities decoded."""
        raise NotImplementedError

    def get_title(self, product: Any) -> str:
        """A short line naming the product: short queries match it better than the full text.

        The default is the product's name. Adapters that know a few facts shoppers
        search by (colour, who it is for, kind of product) can add them here.
        """
        return str(self.to_result(product).get("title") or product)

    def get_images(self, product: Any) -> list[ImageRef]:
        """The product's photos, main photo first."""
        raise NotImplementedError

    def get_categories(self, product: Any) -> list[str]:
        """Category paths the product can be filtered by, ancestors included."""
        return []

    def get_fields(self, product: Any) -> dict[str, Any]:
        """Structured attributes, stored with the product's vectors and read by ranking.

        Ranking reads these keys (``ranking.vocabulary.ADAPTER_FIELDS``); give the ones the
        catalogue knows, as text, and leave the others out:

        * ``title``: the product's name (re-ranker training takes its head noun);
        * ``color``: the stated colour ("Navy", "Red/White"), matched against colour words;
        * ``gender``: "Men", "Women" or "Unisex", matched against "mens", "ladies"…;
        * ``material``: "Organic Cotton, Polyester", matched against material words;
        * ``group``: what colour variants share (a parent sku); hold-out splits keep a group whole;
          a search of it finds the group's products first;
        * ``sku``: the product's own code as shoppers see it ("MH07-Gray"); a search of it (or of its
          start up to a separator, "MH07") finds the product first, as does one of the primary key;
        * ``attributes``: other stated qualities, name -> a value, a list of values or ``True``
          (``{"pattern": "Striped", "activity": ["Yoga", "Gym"], "sale": True}``); a query of qualities
          alone ("wool", "striped", "sale") is matched against them, the title and the material
          (``ranking.qualities``).

        Other keys are stored and returned by the API's explanations, and ranking ignores them.
        """
        return {}

    def get_group(self, product: Any) -> str:
        """What the product's colour variants share (``get_fields()["group"]``, else its own primary key):
        a search page shows one result per group, the best placed, with the others as its variants
        (``FACETS["GROUP_VARIANTS"]``). Override it to read fewer fields: with ``facet_values_use_prefetch``
        False it reads the products loaded with ``facet_fields`` only."""
        return str(self.get_fields(product).get("group") or product.pk)

    def to_result(self, product: Any) -> dict[str, Any]:
        """Fields of one API/HTML search result: sku, title, url, image, price, ..."""
        images = self.get_images(product)
        return {
            "sku": str(product.pk),
            "title": str(product),
            "url": getattr(product, "get_absolute_url", lambda: "")(),
            "image": images[0].url if images else "",
        }

    def get_facet_values(self, product: Any) -> dict[str, Any]:
        """What the search page's facets and price filter read: facet name -> list of values, and ``price``.

        ``MULTIMODAL_SEARCH["FACETS"]["FIELDS"]`` names the facets shown. The default gives
        ``category`` (the product's deepest category path), every other facet from ``get_fields()``
        (a comma-separated string becomes a list), and ``price`` from ``to_result()`` as a
        ``Decimal`` (None: unknown; such products drop out of a price filter).
        """
        from multimodal_search.conf import search_settings

        fields = self.get_fields(product)
        values: dict[str, Any] = {}
        for name in search_settings.FACETS["FIELDS"]:
            if name == "category":
                categories = self.get_categories(product)
                values[name] = [max(categories, key=len)] if categories else []
            else:
                values[name] = split_values(fields.get(name))
        values["price"] = to_price(self.to_result(product).get("price"))
        return values

    def get_created_at(self, product: Any) -> datetime | None:
        """When the product was added (the ``newest`` sort); the default reads ``created_at``."""
        value = getattr(product, "created_at", None)
        return value if isinstance(value, datetime) else None

    def lookup(self, identifier: str) -> Any:
        """Find one product by its public identifier (sku); raise DoesNotExist."""
        return self.get_queryset().get(pk=identifier)

    def watched_models(self) -> dict[type[models.Model], Callable[[Any], Iterable[Any]]]:
        """Related models whose changes re-index products: model -> (row -> product pks)."""
        return {}


def split_values(value: Any) -> list[str]:
    """A facet's values as a list of non-empty strings: "S, M,L" -> ["S", "M", "L"]; None -> []."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    return [text for item in items if (text := str(item).strip())]


def to_price(value: Any) -> Decimal | None:
    """A price as a ``Decimal`` (None when missing or not a number)."""
    if value is None or value == "":
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() else None


def get_adapter() -> BaseProductAdapter:
    from multimodal_search.conf import search_settings

    adapter_cls = search_settings.ADAPTER
    return adapter_cls()
