"""Refining a search: facets with counts, price filter (and price intent in the words), sort and pages.

The storefront's search page and the API's search both call :func:`browse_products`. A query's
*result set* is its ranked candidate pool after the relevance cut (``search.rank_products``); the
filters select within it, and each facet's counts are over the result set with every *other*
facet's filter applied (disjunctive faceting: ticking "Black" still shows how many are "Blue").
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import zip_longest
from typing import Any

from PIL import Image

from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.ranking import attributes, calibration
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.colour import colours_in_text
from multimodal_search.ranking.departments import get_departments
from multimodal_search.ranking.intent import (
    BEST_SELLING,
    NEWEST,
    PHOTO_KINDS,
    PRICE_ASC,
    PRICE_DESC,
    ExclusionIntent,
    SizeIntent,
    joins_several,
    kind_parts,
    only_filler,
    parse_exclusions,
    parse_price,
    product_code,
)
from multimodal_search.ranking.personal import Taste
from multimodal_search.ranking.qualities import flags_among, get_qualities
from multimodal_search.ranking.spelling import Correction
from multimodal_search.ranking.text import stem, words
from multimodal_search.services.candidates import kind_words
from multimodal_search.services.codes import options
from multimodal_search.services.query import (
    PHOTO_KIND_NEIGHBOURS,
    SearchError,
    correct_spelling,
    current_encoder,
    sizes_typed,
)
from multimodal_search.services.recommend import POPULAR, popular_products, popularity
from multimodal_search.services.search import (
    MinRelevance,
    Ranked,
    SearchHit,
    SearchResponse,
    exact_cut,
    prefetch_products,
    rank_products,
    respond,
)
from multimodal_search.store import get_store

RELEVANCE = "relevance"
SORTS = (RELEVANCE, PRICE_ASC, PRICE_DESC, NEWEST, BEST_SELLING)
PRICE = "price"
#: the facet a size named in the words filters ("size m"), when ``FACETS["FIELDS"]`` has it
SIZE = "size"
#: the facet a colour left out by the words ("not black") is read from, when ``FACETS["FIELDS"]`` has it
COLOR = "color"
#: the facet whose values (category paths) say what kind of product a result is
CATEGORY = "category"
MAX_PAGE = 10_000
#: the products a search of price or size words alone ("under 50", "cheapest", "size m") filters and sorts: the most
#: popular, then the newest (the whole Luma catalogue has 463)
POPULAR_PRODUCTS = 1_000


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int
    selected: bool


@dataclass(frozen=True)
class PriceRange:
    """One of ``FACETS["PRICE_RANGES"]``: ``minimum <= price < maximum`` (None: open)."""

    minimum: Decimal | None
    maximum: Decimal | None
    count: int
    selected: bool


@dataclass
class SearchPage(SearchResponse):
    """One page of a refined search: ``hits`` is the page; the rest describes the whole filtered set."""

    total: int = 0
    page: int = 1
    pages: int = 0
    page_size: int = 24
    sort: str = RELEVANCE
    #: facet name -> its values with counts, in ``FACETS["FIELDS"]`` order
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)
    price_ranges: list[PriceRange] = field(default_factory=list)
    #: the price filter applied (from the parameters, or else from the words)
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    #: the active facet filters (name -> values)
    filters: dict[str, list[str]] = field(default_factory=dict)
    #: one result per product group, the others its ``variants``; the total and counts are of groups
    grouped: bool = False
    #: with a price filter: the results the same words and facet filters have at any price (None: no price filter)
    at_any_price: int | None = None


@dataclass
class _Row:
    hit: SearchHit
    facets: Mapping[str, Any]
    rank: int
    #: its product's group (``get_group``), or its own pk when results are not grouped
    group: str


def browse_products(
    text: str | None = None,
    image: Image.Image | None = None,
    *,
    category: str | None = None,
    method: str | None = None,
    min_relevance: MinRelevance = None,
    filters: Mapping[str, Iterable[str]] | None = None,
    price_min: Decimal | None = None,
    price_max: Decimal | None = None,
    sort: str | None = None,
    page: int = 1,
    page_size: int = 24,
    personal: Taste | None = None,
    clamp_page: bool = False,
    as_typed: bool = False,
    group_variants: bool | None = None,
    loose_sizes: bool = True,
) -> SearchPage:
    """Search, then filter, count facets, sort and cut one page.

    Args:
        text, image, category, method, min_relevance, personal, as_typed: as ``search_products``.
        filters: facet name -> values; a product passes a facet when it has any of its values, and
            the filter when it passes every facet. Names outside ``FACETS["FIELDS"]`` are an error.
        price_min, price_max: keep ``price_min <= price < price_max`` (products without a price drop
            out). When neither is given, a price named in the words ("under 50", "between 20 and 40")
            is used and taken out of the text that is searched. Words that name only a price or an order
            by price ("under 50", "cheapest") search nothing: the shop's popular products are filtered
            and sorted (``query["browse"]``).
        A size named in the words ("leggings size m", "size 32") is taken out of the text that is
            searched and, when ``filters`` has no ``size``, picks the size facet's values they name
            (``query["size"]``: "M", or "M, L"; none when no result states it). With ``loose_sizes``, so
            is a size word beside a kind of product ("large mens tee", "hoodie medium", "mens shorts 32";
            ``intent.parse_size``) when one of the first ``LOOSE_SIZE_ROWS`` results states that size; when
            none does ("large bag"), the words are searched again with it as a word.
        What the words ask to leave out ("jacket not black", "without a hood", "-white") is taken out of the
            text that is searched, and those products out of the result set (``query["excluded"]``,
            :func:`left_out`).
        sort: ``relevance``, ``price_asc``, ``price_desc``, ``newest`` or ``best_selling`` (the most viewed,
            carted and bought of the last 30 days first, ``popularity``; ties keep relevance order).
            None: as the words ask ("cheap wool": ``price_asc``, "most expensive bag": ``price_desc``,
            "latest hoodies", "new arrivals": ``newest``; "best selling hoodies": ``best_selling``; the
            words then not searched), else ``relevance`` (``best_selling`` for words of price or size alone).
        page: 1-based; a page past the last is empty, or with ``clamp_page`` the last page.
        page_size: results per page (``MIN_K``..``MAX_K``).
        group_variants: one result per product group (the adapter's ``get_group``: a product's colours),
            the group's best placed product in the filtered, sorted set, with the group's other products
            there as its ``variants``; the total, pages, facet and price-range counts are then of groups
            ("Purple (4)": four products have a purple one among the results). None:
            ``FACETS["GROUP_VARIANTS"]``.

    Returns:
        a ``SearchPage``: this page's hits, the filtered total, the pages, the facets' counts and
        the price ranges' counts; ``match`` describes the filtered set.

    Raises:
        SearchError: as ``search_products``, or an unknown sort or facet, a bad page or price range.
    """
    given = dict(locals())  # the arguments, for searching again with loose size words as words
    if sort is not None and sort not in SORTS:
        raise SearchError(f"Unknown sort {sort!r}; choose one of {', '.join(SORTS)}.")
    if not 1 <= page <= MAX_PAGE:
        raise SearchError(f"page must be between 1 and {MAX_PAGE}.")
    fields = facet_names()
    chosen = {name: sorted({str(value) for value in values}) for name, values in (filters or {}).items()}
    chosen = {name: values for name, values in chosen.items() if values}
    unknown = sorted(set(chosen) - set(fields))
    if unknown:
        raise SearchError(f"Unknown facet {unknown[0]!r}; the facets are: {', '.join(fields) or 'none'}.")
    intent = parse_price(text or "")
    # once per request: the sizes', the exclusions' and the kinds' reads
    model_id = current_encoder()[1] if intent.text else None
    # a size named in the words is not searched, and filters the size facet when no size filter is given
    loose = model_id if loose_sizes else None
    sized = sizes_typed(intent.text, loose, photo=image is not None) if SIZE in fields else None
    rest = sized.text if sized is not None else intent.text
    # "not black", "without a hood": left out of the result set, and not searched
    excluded = parse_exclusions(rest)
    if excluded is not None and model_id is not None:
        excluded = unless_a_name(excluded, model_id)
    rest = excluded.text if excluded is not None else rest
    worded = intent.worded or sized is not None or excluded is not None
    # price and size words are no description of the product: not searched ("under 50" alone: popular products)
    searched = (rest or None) if worded else text
    # "like this photo", "like this but under 50": with a photo, words that only point at it are not searched
    pointing = image is not None and only_filler(searched)
    searched = None if pointing else searched
    # "like this but not black", "like this but under 50": a photo's look-alikes that its words narrow. The
    # photo's ``auto`` cut keeps what is likely the product photographed, which such words leave out (the
    # jacket's other colours are other products): its look-alikes are all kept, the photo's kind first
    narrowing = image is not None and searched is None and worded
    cut = None if narrowing and min_relevance == "auto" else min_relevance
    alone = worded and not rest and image is None  # "under 50", "cheapest", "size m": no words to search
    price_from_text = intent.found and price_min is None and price_max is None
    sort_from_text = sort is None and intent.order is not None
    # the popular products of words alone come best sellers first: the select says so
    sort = (intent.order if sort_from_text else sort) or (BEST_SELLING if alone else RELEVANCE)
    if price_from_text:
        price_min, price_max = intent.minimum, intent.maximum
    if price_min is not None and price_max is not None and price_min >= price_max:
        raise SearchError("price_min must be below price_max.")

    adapter = get_adapter()
    grouped = bool(search_settings.FACETS["GROUP_VARIANTS"] if group_variants is None else group_variants)

    def by_group(hit: SearchHit) -> str:
        return adapter.get_group(hit.product) if grouped else hit.product_pk

    # the whole result set is filtered and counted, one page shown: photos and explanations for the page only
    lean = not adapter.facet_values_use_prefetch
    # the newest sort reads ``get_created_at``: every field then (a timestamp costs Django's loader ~13 µs)
    loaded = adapter.facet_fields if lean and sort != NEWEST else None
    if alone:
        ranked = _popular_alone(text or "", page_size, category, prefetch=not lean, fields=loaded)
    else:

        def rank(words: str | None) -> Ranked:
            return rank_products(
                words,
                image,
                k=page_size,
                category=category,
                method=method,
                min_relevance=cut,
                limit=None,
                personal=personal,
                prefetch=not lean,
                explain=False,
                fields=loaded,
                as_typed=as_typed,
            )

        # "hoodies and jackets": each kind searched on its own, the results taken in turn
        parts, correction = (
            kinds_asked(searched, model_id, as_typed=as_typed) if image is None and model_id else (None, None)
        )
        ranked = _in_turn(text, [rank(part) for part in parts], by_group) if parts else rank(searched)
        if parts:
            ranked.query["parts"] = parts
        if parts and correction is not None:  # "hodies and jackets": read as "hoodies and jackets"
            ranked.correction = correction
            ranked.query["corrected"] = correction.text.strip()
    if worded or pointing:
        ranked.query["text"] = (text or "").strip() or None
        ranked.query["searched"] = searched
        if ranked.correction is not None and text:  # the words as typed, read: "cheap backpack"
            ranked.query["corrected"] = ranked.correction.applied_to(text.strip())
    rows = [
        _Row(hit, adapter.get_facet_values(hit.product), rank, by_group(hit)) for rank, hit in enumerate(ranked.hits)
    ]
    # "large bag": no bag comes in sizes, so "large" is a word of the search
    if sized is not None and sized.loose and not _sized_alike(sized, rows, ranked.model_id):
        return browse_products(**{**given, "loose_sizes": False})
    # the kind a photo shows: that of its nearest products, read before anything is left out ("not black")
    shown_kind = _photo_kind(rows) if image is not None and searched is None else None
    # "like this but cheaper", "... more expensive": under or above the price of the product photographed,
    # in the photo's order (the cheapest first put the photographed product itself first, and dearer ones
    # of its kind after; the dearest first, the priciest of every kind)
    relative = _RELATIVE.get(sort) if narrowing and sort_from_text and price_min is None and price_max is None else None
    price = _price_of_photographed(rows, exact_cut(ranked)) if relative and relative[1].search(text or "") else None
    if relative is not None and price is not None:
        photographed = rows[0].hit
        ranked.query[relative[0]] = str(adapter.to_result(photographed.product).get("sku") or photographed.product_pk)
        if sort == PRICE_ASC:
            price_max = price
        else:  # above it: its own price is no dearer
            price_min = price
            rows = [row for row in rows if row.facets.get(PRICE) is not None and row.facets[PRICE] > price]
        price_from_text, sort, sort_from_text = True, RELEVANCE, False
    if price_from_text:
        ranked.query["price"] = {"min": _text(price_min), "max": _text(price_max)}
    if sort_from_text:
        ranked.query["sort"] = sort
    if excluded is not None:
        dropped = left_out(excluded, {row.hit.product_pk: row.facets for row in rows}, ranked.model_id)
        rows = [row for row in rows if row.hit.product_pk not in dropped]
        ranked.query["excluded"] = list(excluded.terms)
    if searched and image is None and rows:  # "hoodies on sale": only the products marked so
        rows, flags = _flagged(searched, rows, ranked.model_id)
        if flags:
            ranked.query["flags"] = flags
    sizes = []
    if sized is not None and SIZE not in chosen:
        sizes = sized.values_in({value for row in rows for value in row.facets.get(SIZE) or []})
    elif ranked.coded and SIZE in fields and SIZE not in chosen:  # "MH01-XS-Black": its size XS
        sizes = _coded_sizes(ranked, rows)
    if sizes:  # as the result set states them ("m" -> "M"); a size none of them has filters nothing
        chosen = {**chosen, SIZE: sorted(sizes)}
        ranked.query["size"] = ", ".join(sizes)
    in_price = [row for row in rows if _in_range(row.facets.get(PRICE), price_min, price_max)]

    def passes(row: _Row, skip: str | None = None) -> bool:
        return all(name == skip or set(values) & set(row.facets.get(name) or []) for name, values in chosen.items())

    facets = {name: _count(name, [row for row in in_price if passes(row, name)], chosen) for name in fields}
    in_facets = [row for row in rows if passes(row)]
    ranges = [
        PriceRange(
            low, high, len({row.group for row in in_facets if _in_range(row.facets.get(PRICE), low, high)}), selected
        )
        for low, high in _price_ranges()
        for selected in [(low, high) == (price_min, price_max)]
    ]
    kept = [row for row in in_facets if _in_range(row.facets.get(PRICE), price_min, price_max)]
    # a photo's look-alikes narrowed by a filter ("like this but not black", "under 50", a colour chosen): its kind first
    filtered = excluded is not None or price_min is not None or price_max is not None or bool(chosen)
    kind = shown_kind if filtered and sort == RELEVANCE else None
    groups = _grouped(_sorted(kept, sort, adapter, category, exact_cut(ranked), photo=image is not None, kind=kind))
    if clamp_page:
        page = min(page, max(1, math.ceil(len(groups) / page_size)))
    start = (page - 1) * page_size
    page_groups = groups[start : start + page_size]
    shown = [first.hit for first, _ in page_groups]
    ranked.explain(shown)
    variants = [_variants(first, others) for first, others in page_groups]
    if lean:  # the page's products and their variants (a swatch's photo, link and colour)
        prefetch_products(shown + [row.hit for rows in variants for row in rows], reload=loaded is not None)
    if grouped:
        for (first, _), rows in zip(page_groups, variants):
            first.hit.variants = [row.hit.product for row in rows]
    return respond(  # type: ignore[return-value]
        ranked,
        shown,
        SearchPage,
        total=len(groups),
        page=page,
        pages=math.ceil(len(groups) / page_size),
        page_size=page_size,
        sort=sort,
        facets=facets,
        price_ranges=ranges,
        price_min=price_min,
        price_max=price_max,
        filters=chosen,
        grouped=grouped,
        at_any_price=None if price_min is None and price_max is None else len({row.group for row in in_facets}),
        matched=[row.hit for row in kept],
    )


#: results of the kind a loose size word sizes of which one must state its size for it to be read as a
#: size ("large mens tee": a tee of the first five comes in L)
LOOSE_SIZE_ROWS = 5


def _sized_alike(sized: SizeIntent, rows: list[_Row], model_id: str) -> bool:
    """Whether, of the results whose title or category leaf names the kind a loose size word sizes
    (``candidates.kind_words``), one of the first ``LOOSE_SIZE_ROWS`` states its size ("large bag": no)."""
    pks = [row.hit.product_pk for row in rows]
    fields = get_store().product_fields(pks, model_id=model_id) if pks else {}
    for size, kind in zip(sized.loose, sized.loose_kinds):
        # the photo's look-alikes are of its kind ("this in large")
        of_kind = (
            rows
            if kind in PHOTO_KINDS
            else [row for row in rows if kind in kind_words(fields.get(row.hit.product_pk) or {})]
        )
        stated = {str(value) for row in of_kind[:LOOSE_SIZE_ROWS] for value in row.facets.get(SIZE) or []}
        if SizeIntent(sized.text, (size,)).values_in(stated):
            return True
    return False


def kinds_asked(
    text: str | None, model_id: str, *, as_typed: bool = False
) -> tuple[list[str] | None, Correction | None]:
    """The words as one search per kind of product they join ("hoodies and jackets"; ``intent.kind_parts``
    over the kinds ``mmsearch_train`` found), or None: one kind, a product code, no kinds known yet, or
    words of a product's title ("Salt & Pepper Grinder": a name; ``store.suggest_products``, one read).
    Words that join parts of which one names no kind are read with their typos corrected, unless
    ``as_typed`` ("hodies and jackets": ``correct_spelling``), and that correction is returned too."""
    if not text or product_code(text):
        return None, None
    departments = get_departments(model_id)
    if departments is None or not departments.kinds:
        return None, None
    parts, correction = kind_parts(text, departments.kinds), None
    if parts is None and not as_typed and joins_several(text):
        correction = correct_spelling(text, model_id)
        parts = kind_parts(correction.text, departments.kinds) if correction is not None else None
    if parts and is_a_title(model_id, text):
        return None, None
    return parts, correction if parts else None


def _blocks(hits: list[SearchHit], group: Callable[[SearchHit], str]) -> list[list[SearchHit]]:
    """``hits`` by group, the groups in the order of their first hit."""
    blocks: dict[str, list[SearchHit]] = {}
    for hit in hits:
        blocks.setdefault(group(hit), []).append(hit)
    return list(blocks.values())


#: what a part's search says of its own words only
_PART_ONLY = frozenset({"corrected", "expanded", "fallback", "read_as", "code"})


def _in_turn(text: str | None, rankings: list[Ranked], group: Callable[[SearchHit], str]) -> Ranked:
    """One ranking of several searches' results: the first group of each, then the second of each, ...,
    a group's products together in their order and a product once (the first search's query, method and
    cut; each result's relevance and explanation its own search's). ``group``: a hit's group, so that
    grouped results still alternate (its own pk: each product in turn)."""
    hits: list[SearchHit] = []
    seen: set[str] = set()
    source: dict[str, Ranked] = {}
    for row in zip_longest(*(_blocks(ranking.hits, group) for ranking in rankings)):
        for block, ranking in zip(row, rankings):
            for hit in block or ():
                if hit.product_pk not in seen:
                    seen.add(hit.product_pk)
                    hits.append(hit)
                    source[hit.product_pk] = ranking

    def explainer(hit: SearchHit) -> dict[str, float]:
        explain = source[hit.product_pk].explainer if hit.product_pk in source else None
        return explain(hit) if explain is not None else {}

    first = rankings[0]
    # a part's own readings (its spelling, expansions, fallback) are not the query's: the words as typed are
    query = {key: value for key, value in first.query.items() if key not in _PART_ONLY}
    query["text"] = (text or "").strip() or None
    return Ranked(hits, first.method, first.model_id, query, first.started, first.cut, first.cuts, explainer)


def _flagged(text: str, rows: list[_Row], model_id: str) -> tuple[list[_Row], list[str]]:
    """The rows of the products marked with each flag the words name (``qualities.flags_named``: "hoodies
    on sale" -> those whose attributes say ``"sale": true``), and those flags. A flag none of them has
    filters nothing. The stored flags are read only when the words name one of the catalogue's
    qualities (a flag is one: ``ranking.qualities``), and then only the names of their true attributes."""
    qualities = get_qualities(model_id)
    if qualities is None or not qualities.named(text):
        return rows, []
    stated = get_store().product_flags([row.hit.product_pk for row in rows], model_id=model_id)
    asked = {stem(word) for word in words(text)}
    marked = {pk: set(flags_among(asked, found)) for pk, found in stated.items()}
    flags: list[str] = []
    for flag in sorted({flag for found in marked.values() for flag in found}):
        kept = [row for row in rows if flag in marked.get(row.hit.product_pk, set())]
        if kept:
            rows, flags = kept, [*flags, flag]
    return rows, flags


def _coded_sizes(ranked: Ranked, rows: list[_Row]) -> list[str]:
    """The sizes a variant's code names beside its products' own codes ("MH01-XS-Black" of "MH01-Black":
    "XS"), as the found products state them; one read of their stored codes."""
    coded = set(ranked.coded)
    stated = {
        value.lower(): value for row in rows if row.hit.product_pk in coded for value in row.facets.get(SIZE) or []
    }
    if not stated:
        return []
    fields = get_store().product_fields(ranked.coded, model_id=ranked.model_id)
    skus = [str((fields.get(pk) or {}).get(v.FIELD_SKU) or pk) for pk in ranked.coded]
    return list(
        dict.fromkeys(stated[part] for part in options(str(ranked.query.get("code") or ""), skus) if part in stated)
    )


def unless_a_name(excluded: ExclusionIntent, model_id: str) -> ExclusionIntent | None:
    """``excluded``, or None when one of its phrases is words of a title of ``model_id``'s products ("No
    Limits Jacket", "Not Your Daughter's Jeans": a name, searched as words; ``store.suggest_products``,
    the titles' word index, one read per phrase)."""
    for phrase in excluded.phrases:
        if not phrase.startswith("-") and is_a_title(model_id, phrase):
            return None
    return excluded


def is_a_title(model_id: str, text: str) -> bool:
    """Whether every word of ``text`` starts a word of one title of ``model_id``'s products, in order of
    typing (``store.suggest_products``, the titles' word index, one read): a name, not words to read."""
    return bool(get_store().suggest_products(model_id, words(text), typed=text, limit=1))


def left_out(excluded: ExclusionIntent, facets: Mapping[str, Mapping[str, Any]], model_id: str) -> set[str]:
    """Which of the products (pk -> their facet values, ``adapter.get_facet_values``) have a term the words
    left out: a colour ("not black", "not light blue") by the ``color`` facet's values where the facets
    have it (a blue jacket whose description mentions black piping stays), any other word ("without a
    hood") by the product's stored text, English stemming (``store.having_every_word``: "hood" leaves out
    "hooded", not "hoodie")."""
    named = {term: excluded.colours(term) for term in excluded.terms}
    colours = {name for names in named.values() for name in names}
    by_facet = bool(colours) and COLOR in facet_names()
    by_text = [term for term, names in named.items() if not (by_facet and names)]
    having = get_store().having_every_word(model_id, list(facets), by_text) if by_text else set()
    if by_facet:
        having |= {
            pk
            for pk, values in facets.items()
            if colours & {name for value in values.get(COLOR) or [] for name in colours_in_text(str(value))}
        }
    return having


def _popular_alone(
    text: str, page_size: int, category: str | None, *, prefetch: bool, fields: tuple[str, ...] | None
) -> Ranked:
    """The result set of words that name only a price, an order by price or a size ("under 50", "cheapest",
    "size m"): the shop's ``POPULAR_PRODUCTS`` most popular products (``popular_products``: the newest fill the
    list), in the category, which the price and size filters and the sort then narrow and order. Their relevance
    is unknown (``match`` None), and ``query["browse"]`` is ``popular``. ``prefetch``, ``fields``: as
    ``rank_products``'."""
    started = time.perf_counter()
    _, model_id = current_encoder()
    hits = popular_products(k=POPULAR_PRODUCTS, category=category, prefetch=prefetch, fields=fields)
    query = {"text": text.strip() or None, "image": False, "k": page_size, "category": category, "browse": POPULAR}
    return Ranked(hits, POPULAR, model_id, query, started, None, {})


def facet_names() -> list[str]:
    """The facets counted and filtered by (``FACETS["FIELDS"]``)."""
    return list(search_settings.FACETS["FIELDS"])


def storefront_page_size() -> int:
    """Results per page of the storefront's search page (``FACETS["PAGE_SIZE"]``)."""
    return int(search_settings.FACETS["PAGE_SIZE"])


def _grouped(rows: list[_Row]) -> list[tuple[_Row, list[_Row]]]:
    """Each group's first row (in ``rows``' order) with the group's other rows, in that order (a row is its
    own group when results are not grouped)."""
    groups: dict[str, list[_Row]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return [(first, others) for first, *others in groups.values()]


def _variants(first: _Row, others: list[_Row]) -> list[_Row]:
    """The group's other rows a shopper picks between: the best placed of each colour that is not the first
    row's (a catalogue whose products are sizes lists a colour once; rows without a colour each count),
    at most ``FACETS["MAX_VARIANTS"]``."""
    seen = {_colour(first)} - {None}
    kept = []
    for row in others:
        colour = _colour(row)
        if colour is None or colour not in seen:
            seen.add(colour)
            kept.append(row)
    return kept[: int(search_settings.FACETS["MAX_VARIANTS"])]


def _colour(row: _Row) -> str | None:
    values = row.facets.get(COLOR) or []
    return ", ".join(sorted(str(value).strip().lower() for value in values)) or None


def _count(name: str, rows: list[_Row], chosen: Mapping[str, list[str]]) -> list[FacetValue]:
    """Each value's groups among ``rows`` (products, when results are not grouped)."""
    counts = Counter(value for value, _ in {(value, row.group) for row in rows for value in row.facets.get(name) or []})
    selected = set(chosen.get(name, []))
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0].lower()))[
        : int(search_settings.FACETS["MAX_VALUES"])
    ]
    shown = [FacetValue(value, count, value in selected) for value, count in top]
    # a ticked value stays listed (so it can be unticked) even when nothing else has it
    missing = sorted(selected - {value for value, _ in top})
    return shown + [FacetValue(value, counts.get(value, 0), True) for value in missing]


def _price_ranges() -> list[tuple[Decimal | None, Decimal | None]]:
    return [
        (None if low is None else Decimal(str(low)), None if high is None else Decimal(str(high)))
        for low, high in search_settings.FACETS["PRICE_RANGES"]
    ]


def _in_range(price: Any, low: Decimal | None, high: Decimal | None) -> bool:
    if low is None and high is None:
        return True
    if price is None:
        return False
    return (low is None or price >= low) and (high is None or price < high)


def _sorted(
    rows: list[_Row],
    sort: str,
    adapter: Any,
    category: str | None,
    exact: float | None,
    *,
    photo: bool = False,
    kind: AbstractSet[str] | None = None,
) -> list[_Row]:
    """``rows`` (in relevance order) in ``sort``'s order. Another order than relevance sorts the likely
    matches first and the similar items after them ("cheap backpack": the cheapest backpacks, then the
    cheapest of what else the words found, such as yoga straps), where the rows have any likely match. Of
    a ``photo``'s similar items, those of the kind it shows come first (:func:`_photo_kind` of ``rows``): a
    jacket's photo sorted by price shows jackets before cheaper tees.

    In relevance order the rows stay as ranked, unless a ``kind`` is given: a photo's look-alikes that a
    filter narrowed ("like this but not black", "under 50") are then the likely matches, the photo's kind
    (read before the filter), the rest, each in relevance order. Its own product gone, a black hoodie's
    photo showed a gray hoodie, then two jackets before the other hoodies."""
    if sort == RELEVANCE and not kind:
        return rows
    if kind is None:
        kind = _photo_kind(rows) if photo else frozenset()
    tiers: tuple[list[_Row], list[_Row], list[_Row]] = ([], [], [])  # likely matches, the photo's kind, the rest
    for row in rows:
        tier = 0 if calibration.likely_match(row.hit.relevance, exact) else 1 if _kinds(row) & kind else 2
        tiers[tier].append(row)
    return [row for tier in tiers for row in _ordered(tier, sort, adapter, category)]


#: words that ask for a lower or a higher price than the product photographed ("cheaper than 50" is a bound
#: of its own), and what the answer's ``query`` names that product by: an order read from the words -> both
_RELATIVE = {
    PRICE_ASC: ("cheaper_than", re.compile(r"\b(?:cheaper|less\s+expensive)\b", re.IGNORECASE)),
    PRICE_DESC: (
        "pricier_than",
        re.compile(r"\b(?:more\s+expensive|pricier|dearer|higher[\s-]+priced)\b", re.IGNORECASE),
    ),
}


def _price_of_photographed(rows: list[_Row], exact: float | None) -> Decimal | None:
    """The price of the product a photo shows: its best result's, when that is likely the product
    photographed (``calibration.likely_match``) and has a price; else None (a shopper's photo of
    something else: "cheaper" is then the cheapest first)."""
    first = rows[0] if rows else None
    if first is None or not calibration.likely_match(first.hit.relevance, exact):
        return None
    price = first.facets.get(PRICE)
    return None if price is None else Decimal(str(price))


def _photo_kind(rows: list[_Row]) -> AbstractSet[str]:
    """The kind a photo shows: the category leaves of its best results (``attributes.photo_kinds``, as
    ``query.photo_kind`` reads them from the photo's nearest products)."""
    best = [dict.fromkeys(_kinds(row), 1.0) for row in rows[:PHOTO_KIND_NEIGHBOURS]]
    return set(attributes.photo_kinds(best))


def _kinds(row: _Row) -> set[str]:
    """The leaves of a row's categories, whatever the department: a men's hoodie's photo shows hoodies, and
    a women's hoodie is of its kind ("Men > Tops > Hoodies" and "Women > Tops > Hoodies": "Hoodies")."""
    return {path.rsplit(">", 1)[-1].strip() for path in _categories(row)}


def _categories(row: _Row) -> set[str]:
    return {str(path) for path in row.facets.get(CATEGORY) or []}


def _ordered(rows: list[_Row], sort: str, adapter: Any, category: str | None) -> list[_Row]:
    if sort == RELEVANCE:
        return rows
    if sort == BEST_SELLING:  # the shop's most interacted-with first; the others keep relevance order
        sold = popularity(category)
        return sorted(rows, key=lambda row: (-sold.get(row.hit.product_pk, 0.0), row.rank))
    if sort == NEWEST:
        moments = {row.rank: adapter.get_created_at(row.hit.product) for row in rows}
        oldest = datetime.min
        dated = [row for row in rows if moments[row.rank] is not None]
        undated = [row for row in rows if moments[row.rank] is None]
        return sorted(dated, key=lambda row: (moments[row.rank] or oldest, -row.rank), reverse=True) + undated
    priced = [row for row in rows if row.facets.get(PRICE) is not None]
    unpriced = [row for row in rows if row.facets.get(PRICE) is None]
    if sort == PRICE_ASC:
        return sorted(priced, key=lambda row: (row.facets[PRICE], row.rank)) + unpriced
    return sorted(priced, key=lambda row: (-row.facets[PRICE], row.rank)) + unpriced


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
