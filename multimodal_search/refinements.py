"""The search page's refinements: the form that reads them from the GET address, and the links that
change one of them (facet values, price ranges, sort, pages), every other parameter kept, so that
each state of the page has an address that can be shared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.http import QueryDict

from multimodal_search import services
from multimodal_search.ranking.intent import parse_exclusions, without_flag

#: the parameters a refinement link changes; every other one (q, photo, category...) is kept
FILTER, PRICE_MIN, PRICE_MAX, SORT, PAGE = "filter", "price_min", "price_max", "sort", "page"
#: the words' parameter (a size named in them is read as the size facet's filter), and the one that
#: searches them as typed ("Search instead for ...", when a word was corrected)
QUERY, AS_TYPED = "q", "as_typed"
SORT_LABELS = {
    "relevance": "Relevance",
    "price_asc": "Price: low to high",
    "price_desc": "Price: high to low",
    "newest": "Newest",
    "best_selling": "Best sellers",
}


class RefineForm(forms.Form):
    """Facet filters (``filter=color:Black``, repeated), price range, sort and page; a bad value is left out."""

    filter = forms.Field(required=False, widget=forms.MultipleHiddenInput)
    price_min = forms.DecimalField(required=False, min_value=0, max_digits=12, decimal_places=2)
    price_max = forms.DecimalField(required=False, min_value=0, max_digits=12, decimal_places=2)
    sort = forms.ChoiceField(required=False, choices=[(name, SORT_LABELS[name]) for name in services.SORTS])
    page = forms.IntegerField(required=False, min_value=1, max_value=10_000)

    def clean_filter(self) -> dict[str, list[str]]:
        chosen: dict[str, list[str]] = {}
        known = services.facet_names()
        for item in self.cleaned_data.get("filter") or []:
            name, colon, value = str(item).partition(":")
            if colon and name.strip() in known and value.strip():
                chosen.setdefault(name.strip(), []).append(value.strip()[:1000])
        return chosen

    def refinements(self) -> dict[str, Any]:
        """The valid refinements as ``services.browse_products`` keywords (invalid ones dropped)."""
        self.is_valid()
        data = self.cleaned_data
        low, high = data.get("price_min"), data.get("price_max")
        if low is not None and high is not None and low >= high:
            data["price_min"] = data["price_max"] = None
        return {
            "filters": data.get("filter") or {},
            "price_min": data.get("price_min"),
            "price_max": data.get("price_max"),
            "sort": data.get("sort") or None,  # None: as the words ask ("cheap wool"), else relevance
            "page": data.get("page") or 1,
        }


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    selected: bool = False
    count: int | None = None


def refinement_links(path: str, params: QueryDict, page: services.SearchPage) -> dict[str, Any]:
    """Everything the page's sidebar, sort select and page links show, with their addresses.

    Args:
        path: the search page's path.
        params: the current GET parameters.
        page: the answer of ``services.browse_products``.
    """

    def url(**changes: list[str]) -> str:
        query = params.copy()
        query.pop(PAGE, None)  # a changed refinement starts again at page 1
        for name, values in changes.items():
            query.setlist(name, values)
        return f"{path}?{query.urlencode()}" if query else path

    filters = params.getlist(FILTER)
    # a size the words named ("leggings size m"): unticked, the words are searched without it (and with any other)
    worded_sizes = str(page.query.get("size") or "").split(", ")
    photo = bool(page.query.get("image"))
    sized = services.sizes_in_words(params.get(QUERY, ""), photo=photo) if page.query.get("size") else None
    facets = []
    applied = 0  # facet values ticked
    for name, values in page.facets.items():
        links = []
        for item in values:
            token = f"{name}:{item.value}"
            toggled = [f for f in filters if f != token] if item.selected else [*filters, token]
            target = url(filter=toggled)
            if sized is not None and item.selected and name == services.SIZE and item.value in worded_sizes:
                target = url(q=[sized.text_without(item.value)])
            links.append(Link(item.value, target, item.selected, item.count))
            applied += item.selected
        if links:
            label = name.replace("_", " ").capitalize()
            facets.append(
                {"name": name, "label": label, "links": links, "from_words": bool(sized) and name == services.SIZE}
            )
    # what the words left out ("jacket not black"): each with the address of the words without its phrase
    left_out = parse_exclusions(params.get(QUERY, "")) if page.query.get("excluded") else None
    excluded = [Link(term, url(q=[left_out.text_without(term)]), False) for term in left_out.terms] if left_out else []
    # the flags the words named ("hoodies on sale"): each with the address of the words without it
    typed = params.get(QUERY, "")
    flags = [Link(flag, url(q=[without_flag(typed, flag)]), False) for flag in page.query.get("flags") or []]
    explicit = bool(params.get(PRICE_MIN) or params.get(PRICE_MAX))
    worded_price = bool(page.query.get("price")) and not explicit
    prices = [
        Link(
            price_label(item.minimum, item.maximum),
            url(price_min=[], price_max=[])
            if item.selected and explicit
            else url(price_min=_param(item.minimum), price_max=_param(item.maximum)),
            item.selected,
            item.count,
        )
        for item in page.price_ranges
    ]
    pages = [
        Link(str(number), _page_url(path, params, number), number == page.page)
        for number in range(max(1, page.page - 4), min(page.pages, page.page + 4) + 1)
    ]
    return {
        "facets": facets,
        "prices": prices,
        "price_applied": price_label(page.price_min, page.price_max) if page.price_min or page.price_max else None,
        # how many filters are on (a phone shows it on the folded panel's title)
        "applied": applied + bool(page.price_min or page.price_max),
        "price_from_words": bool(page.query.get("price")),
        "excluded": excluded,
        "flags": flags,
        "clear_price": url(price_min=[], price_max=[]) if explicit else None,
        "any_price": _any_price(page, url, worded_price),
        "as_typed": url(**{AS_TYPED: ["1"]}) if page.query.get("corrected") else None,
        "sorts": [(name, SORT_LABELS[name], name == page.sort) for name in services.SORTS],
        "sort_from_words": bool(page.query.get("sort")),
        "sort_hidden": [
            (name, value) for name, values in params.lists() if name not in (SORT, PAGE) for value in values
        ],
        "pages": pages if page.pages > 1 else [],
        "previous": _page_url(path, params, page.page - 1) if 1 < page.page <= page.pages else None,
        "next": _page_url(path, params, page.page + 1) if page.page < page.pages else None,
    }


def _any_price(page: services.SearchPage, url: Callable[..., str], worded_price: bool) -> str | None:
    """Nothing in the price range but something at any price ("tee under 20"): the address of the same search
    without its price (the words without theirs), or None. Words of a price alone ("under 5") have nothing
    else to search."""
    if page.total or not page.at_any_price:
        return None
    if not worded_price:
        return url(price_min=[], price_max=[])
    searched = page.query.get("searched")
    return url(price_min=[], price_max=[], **{QUERY: [searched]}) if searched else None


def price_label(minimum: Decimal | None, maximum: Decimal | None) -> str:
    """ "Under $25", "$25 to $50", "$100 and over"."""
    if minimum is None and maximum is not None:
        return f"Under ${maximum:g}"
    if maximum is None and minimum is not None:
        return f"${minimum:g} and over"
    return f"${minimum:g} to ${maximum:g}"


def _param(value: Decimal | None) -> list[str]:
    return [] if value is None else [f"{value:g}"]


def _page_url(path: str, params: QueryDict, number: int) -> str:
    query = params.copy()
    query[PAGE] = str(number)
    return f"{path}?{query.urlencode()}"
