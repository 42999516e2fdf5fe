"""Autocomplete: products and categories whose words start with what the shopper is typing.

Fast on purpose: a prefix match on the stored titles' words (``store.suggest_products``, a GIN index)
and the per-category product counts (one ``GROUP BY``, counted again off the request after
``CATEGORY_CACHE_SECONDS``); no encoder, no ranking pipeline.
"""

from __future__ import annotations

import re
from typing import Any

from multimodal_search.adapters import get_adapter
from multimodal_search.ranking.colour import PALETTE, SYNONYMS
from multimodal_search.ranking.departments import get_departments, names_stems
from multimodal_search.ranking.intent import (
    ExclusionIntent,
    parse_exclusions,
    product_code,
    without_unfinished_exclusion,
)
from multimodal_search.ranking.text import GENDER_WORDS, QUERY_GENDERS, normal_gender
from multimodal_search.ranking.text import stem as stem_of
from multimodal_search.ranking.vocabulary import FIELD_COLOR, FIELD_GENDER
from multimodal_search.services.browse import left_out, unless_a_name
from multimodal_search.services.codes import coded_products
from multimodal_search.services.indexing import current_model_id
from multimodal_search.services.memo import kept_fresh
from multimodal_search.services.query import SearchError, correct_spelling, joined_prefix
from multimodal_search.services.relaxed import FILLER
from multimodal_search.store import get_store
from multimodal_search.store.base import StatedWords

MAX_PREFIX_LENGTH = 100
MAX_LIMIT = 20
MAX_WORDS = 10
#: how long the category counts are fresh (a re-index shows in the counts within about this time)
CATEGORY_CACHE_SECONDS = 60
#: how long counts are kept at all: older ones are counted again in the request
CATEGORY_STALE_SECONDS = 24 * 3600
#: extra products read, for those the adapter's queryset no longer returns (unpublished since indexing)
_SLACK = 4
#: products read per product suggested: a product's colours (its group) are one suggestion
_PER_GROUP = 4
_WORD = re.compile(r"[^\W_]+")
#: every word that names a colour -> the colour ("grey" -> "gray"), and each colour -> all its names
COLOUR_WORDS = {**{name: name for name in PALETTE}, **SYNONYMS}
_NAMES_OF = {colour: tuple(sorted(n for n, c in COLOUR_WORDS.items() if c == colour)) for colour in PALETTE}
_SEPARATOR = " > "


def check_prefix(prefix: str, limit: int) -> None:
    """Raise ``SearchError`` unless the text is at most ``MAX_PREFIX_LENGTH`` characters without NUL bytes
    and ``limit`` is 1..``MAX_LIMIT``."""
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise SearchError(f"q must be at most {MAX_PREFIX_LENGTH} characters.")
    if "\x00" in prefix:
        raise SearchError("Null characters are not allowed.")
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 1 and {MAX_LIMIT}.")


def words_of(text: str) -> list[str]:
    """Lower-case runs of letters and digits ("T-Shirt's" -> ["t", "shirt", "s"])."""
    return _WORD.findall(text.lower())


def suggest(prefix: str, limit: int = 8) -> dict[str, Any]:
    """Products and categories for a search box's dropdown while the shopper types.

    Args:
        prefix: what is typed so far; every word must start a word of the product's title (or of the
            category's path), and the last one may be unfinished.
        limit: at most this many products and this many categories (1..``MAX_LIMIT``).

    Returns:
        ``{"products": [{sku, title, url, image, detail}], "categories": [{path, count, query}]}``: products of
        the current encoder version the adapter's queryset still returns, titles starting with the
        typed text first, ``detail`` saying what tells them apart (the result's ``color``, and the sku of one
        found by its code, "Blue · MH07-Blue"); categories with their product counts, ``query`` being the words to search
        within one (the typed words it did not match, else its own name). Empty text: empty lists.
        Text that starts a product code ("mh0", "24-MB") puts the products whose identifier or sku starts
        with it first (``store.products_by_code``). When nothing matches and a typed word is one no
        product uses, those of the words as the search reads them (``query.correct_spelling``: "hoddie"
        -> "hoodie"), with ``"corrected"``; when no product matches and the last two words run together
        start a dictionary word ("back pa", "sweat sh": "backpack", "sweatshirt"), those of the words so
        read, with ``"corrected"`` ("backpa"). What the words leave out ("jacket not black", as the search
        reads it, ``ranking.intent.parse_exclusions``) is matched as the rest of them ("jacket"), its
        products left out and its phrase kept in each category's ``query``; a negation being typed
        ("jacket not") is not matched.

    Raises:
        SearchError: text over ``MAX_PREFIX_LENGTH`` characters, a NUL byte, or a bad ``limit``.
    """
    check_prefix(prefix, limit)
    if not words_of(prefix):
        return {"products": [], "categories": []}
    model_id = current_model_id()
    # "jacket not black", "jacket without": matched as "jacket", what they leave out left out
    excluded = parse_exclusions(prefix)
    if excluded is not None:
        excluded = unless_a_name(excluded, model_id)
    prefix = without_unfinished_exclusion(excluded.text if excluded is not None else prefix)
    if not words_of(prefix):
        return {"products": [], "categories": []}
    found = _matching(model_id, prefix, limit, excluded)
    joined = joined_prefix(prefix, model_id) if not found["products"] else None
    if joined is not None:  # "back pa", "sweat sh": the catalogue's one word ("backpack", "sweatshirt")
        together = _matching(model_id, joined, limit, excluded)
        if together["products"]:
            return {**together, "corrected": joined}
    if not found["products"] and not found["categories"]:
        # "hoddie": nothing starts so; the words as the search would read them ("hoodie")
        correction = correct_spelling(prefix, model_id)
        if correction is not None:
            return {**_matching(model_id, correction.text, limit, excluded), "corrected": correction.text}
    return found


def _matching(model_id: str, prefix: str, limit: int, excluded: ExclusionIntent | None) -> dict[str, Any]:
    words = words_of(prefix)[:MAX_WORDS]
    categories = _categories(model_id, words, limit)
    if excluded is not None:  # a category searches the words within it, still leaving out what they leave out
        for category in categories:
            category["query"] = " ".join([category["query"], *excluded.phrases])
    return {"products": _products(model_id, words, " ".join(prefix.split()), limit, excluded), "categories": categories}


def _products(
    model_id: str, words: list[str], typed: str, limit: int, excluded: ExclusionIntent | None = None
) -> list[dict[str, Any]]:
    store = get_store()
    # the start of a product code ("mh0", "24-mb"): the products whose code starts so, first
    code = product_code(typed)
    coded = coded_products(model_id, code, limit=limit + _SLACK, partial=True) if code else []
    read = _PER_GROUP * limit + _SLACK
    titled = [pk for pk, _ in store.suggest_products(model_id, words, typed=typed, limit=read)]
    stated = _stated(words) if not titled else None
    if stated is not None:  # "black hoo", "mens hoodie": titles with the other words, of that colour or gender
        rest, conditions = stated
        titled = [
            pk for pk, _ in store.suggest_products(model_id, rest, typed=" ".join(rest), limit=read, stated=conditions)
        ]
    found = list(dict.fromkeys(coded + titled))
    adapter = get_adapter()
    products = {str(p.pk): p for p in adapter.get_queryset().filter(pk__in=found)}
    if excluded is not None:
        facets = {pk: adapter.get_facet_values(product) for pk, product in products.items()}
        for pk in left_out(excluded, facets, model_id):
            del products[pk]
    # a product's colours (its group) are one suggestion, its first colour's; a code being typed names a
    # variant ("mh01-xs-bl"): each of those its own
    groups: dict[str, list[Any]] = {}
    for pk in found:
        if pk in products:
            key = f"code:{pk}" if pk in coded else adapter.get_group(products[pk])
            groups.setdefault(key, []).append(products[pk])
    results: list[dict[str, Any]] = []
    for key, members in list(groups.items())[:limit]:  # the shown groups' products only
        found_results = [adapter.to_result(product) for product in members]
        first = found_results[0]
        item = {name: str(first.get(name) or "") for name in ("sku", "title", "url", "image")}
        # what tells products of one title apart: their colours (in name order: the identifiers' order moved them
        # with the catalogue's history), and the code the words started
        colours = ", ".join(sorted({str(r.get("color") or "") for r in found_results if r.get("color")}))
        item["detail"] = " · ".join(part for part in (colours, item["sku"] if key.startswith("code:") else "") if part)
        results.append(item)
    return results


def _stated(words: list[str]) -> tuple[list[str], list[StatedWords]] | None:
    """The words that are no colour or gender, and what the others ask of the products' stated colour
    (``fields["color"]``, one of the colour's names as a word of it) and gender (the gender, unisex, or
    none stated); the last word may start a colour's name ("hoodie bl": black or blue). None when no
    word is a colour or a gender, or no other word is left. No title has "black" or "mens", so "black
    hoo" and "mens hoodie" suggested no product."""
    rest: list[str] = []
    conditions: list[StatedWords] = []
    for position, word in enumerate(words, start=1):
        colour, gender = COLOUR_WORDS.get(word), normal_gender(word)
        # the last word may be a colour still being typed ("hoodie bl": black or blue)
        started = [name for name in COLOUR_WORDS if name.startswith(word)] if position == len(words) else []
        if colour is not None:
            conditions.append(StatedWords(FIELD_COLOR, _NAMES_OF[colour]))
        elif len(word) >= 2 and started:
            names = sorted({name for found in started for name in _NAMES_OF[COLOUR_WORDS[found]]})
            conditions.append(StatedWords(FIELD_COLOR, tuple(names)))
        elif gender in QUERY_GENDERS:
            conditions.append(
                StatedWords(FIELD_GENDER, GENDER_WORDS[gender] + GENDER_WORDS["unisex"], or_unstated=True)
            )
        elif word != "s":  # "women's": the possessive's "s"
            rest.append(word)
    return (rest, conditions) if conditions and rest else None


def category_counts(model_id: str) -> dict[str, int]:
    """category path -> products of ``model_id`` in it. Counting reads every product row (3.5 s at
    1,000,000), so no keystroke waits for it once it has been counted (``memo.kept_fresh``): counts
    older than ``CATEGORY_CACHE_SECONDS`` are returned while a thread counts them again, and a keystroke
    that comes during another's first count gets none (no categories suggested)."""
    return kept_fresh(
        _counts_key(model_id),
        lambda: get_store().category_counts(model_id),
        fresh=CATEGORY_CACHE_SECONDS,
        keep=CATEGORY_STALE_SECONDS,
        busy={},
    )


def _counts_key(model_id: str) -> str:
    return f"mmsearch:suggest:categories:v2:{model_id}"  # v2: (counted at, counts)


def _categories(model_id: str, words: list[str], limit: int) -> list[dict[str, Any]]:
    # a gender typed in full ("mens sh"): its categories, never the other gender's, and the word says no more
    typed = [normal_gender(word) for word in words[:-1]] + [None]  # the last word may be unfinished
    named = set(typed) & set(QUERY_GENDERS)
    ranked = []
    for path, count in category_counts(model_id).items():
        leaf = path.split(_SEPARATOR)[-1]
        path_words, leaf_words = words_of(path), words_of(leaf)
        genders = {gender for word in path_words if (gender := normal_gender(word)) in QUERY_GENDERS}
        if len(named) == 1 and genders and not genders & named:
            continue  # "mens sh": Men > Shorts, not Women > Shorts
        matched = [
            word
            for word, gender in zip(words, typed)
            if any(w.startswith(word) for w in path_words) or gender in genders
        ]
        # the word being typed must match: "black hood" offers Hoodies, to search "black" in
        if words[-1] not in matched:
            continue
        in_leaf = any(w.startswith(words[-1]) for w in leaf_words)
        rest = [word for word in words if word not in matched and word not in FILLER]
        ranked.append(((-len(matched), not in_leaf, -count, path.count(_SEPARATOR), path), path, count, rest, leaf))
    if not ranked:  # "clothes": the categories of the departments a word above them names
        ranked = _under_a_class(model_id, words)
    ranked.sort(key=lambda row: row[0])
    return [
        {"path": path, "count": count, "query": " ".join(rest) or leaf} for _, path, count, rest, leaf in ranked[:limit]
    ]


def _under_a_class(model_id: str, words: list[str]) -> list[tuple[Any, str, int, list[str], str]]:
    """The department categories ("Men > Tops", "Women > Bottoms") of the classes the words name
    ("clothes": ``Departments.spelled_out``), the most products first, each searching the other words."""
    departments = get_departments(model_id)
    named = departments.named(" ".join(words)) if departments is not None else {}
    spelled = set(departments.spelled_out(named)) if departments is not None and named else set()
    if not spelled:
        return []
    used = names_stems(named)
    rest = [word for word in words if stem_of(word) not in used and word not in FILLER]
    found = []
    for path, count in category_counts(model_id).items():
        leaf = path.split(_SEPARATOR)[-1]
        if leaf.strip().lower() in spelled:
            found.append(((-count, path.count(_SEPARATOR), path), path, count, rest, leaf))
    return found
