"""Qualities: what a catalogue's products state about themselves besides what they are ("wool",
"striped", "yoga", "waterproof", "eco friendly"), as a query names them.

A shopper who types "wool" asks for every wool product, but, as with "tops" (``ranking.departments``),
the word is far from any one product's text, so the relevance calibration fitted on queries that name
a kind of product called the best results unlikely: on Luma the storefront showed "No results" for
"wool" (66 wool products, the top ten all wool), "polyester", "striped", "waterproof" and "eco
friendly". A query whose words are only qualities, colours, genders and departments is a *broad* one
(``ranking.intent.facets_only``): its results get the ``broad`` calibration, which reads the share of
the qualities asked that each product states (the ``quality`` signal). The signal feeds only that
calibration, never a ranking.

A quality is a word of a product's stated title, material or attribute values (the adapter's
``attributes`` field; an attribute that is simply true, ``{"sale": true}``, states its name), stated by
products of at least two groups (a model name is not one), and not a kind of product: not the head
noun of a title nor a word of a category leaf ("fleece" also names a kind: a query for it ranks and
is calibrated as one). Colours, genders and short or filler words are left out. ``mmsearch_train``
finds them in the indexed products' stored fields and keeps them beside the re-ranker
(:data:`ARTEFACT`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from multimodal_search import artefacts
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.attributes import NAME_STOP
from multimodal_search.ranking.colour import colours_in_text
from multimodal_search.ranking.text import normal_gender, stem, words

#: the artefact name (``artefacts``) of the catalogue's qualities
ARTEFACT = "qualities"
#: products of this many groups (parents) must state a word for it to be a quality
MIN_GROUPS = 2
#: words never a quality: fillers (a query's, a category name's) and units; "new" and "sale" may be
#: one ({"sale": true} states it)
_NOT_QUALITY = (NAME_STOP - {"new", "sale"}) | {"for", "colour", "color", "size", "one", "inch", "foot"}


def _values(value: Any, name: str) -> list[str]:
    """An attribute's stated words: a string, each string of a list, the name of one that is true."""
    if value is True:
        return [name.replace("_", " ")]
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str)]
    return []


def stated_text(fields: Mapping[str, Any]) -> str:
    """What a product states about itself, from its stored fields: title, material, attribute values."""
    parts = [str(fields.get(v.FIELD_TITLE) or ""), str(fields.get(v.FIELD_MATERIAL) or "")]
    found = fields.get(v.FIELD_ATTRIBUTES)
    if isinstance(found, Mapping):
        parts += [text for name, value in found.items() for text in _values(value, str(name))]
    return " ".join(part for part in parts if part)


def _word_stems(text: str) -> dict[str, str]:
    """Stem -> the first word it came from, of the words that could be a quality."""
    found: dict[str, str] = {}
    for word in words(text):
        if len(word) > 2 and word.isalpha() and word not in _NOT_QUALITY:
            found.setdefault(stem(word), word)
    return found


def stated_stems(fields: Mapping[str, Any]) -> frozenset[str]:
    """The stems of what one product states (``stated_text``)."""
    return frozenset(_word_stems(stated_text(fields)))


@dataclass
class Qualities:
    """Quality stem -> the word a query would use ("stripes" -> "stripe"), and how many groups state it."""

    words: dict[str, str] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_products(cls, stated: Iterable[tuple[str, str]], kinds: Iterable[str]) -> Qualities:
        """The qualities of a catalogue from ``(group, stated text)`` per product; ``kinds`` are the
        stems of its kinds of product (titles' head nouns, leaves' words), never qualities."""
        groups: dict[str, set[str]] = {}
        surface: dict[str, str] = {}
        for group, text in stated:
            for word_stem, word in _word_stems(text).items():
                groups.setdefault(word_stem, set()).add(group)
                surface.setdefault(word_stem, word)
        left_out = set(kinds)
        kept = {
            word_stem: surface[word_stem]
            for word_stem, found in groups.items()
            if len(found) >= MIN_GROUPS
            and word_stem not in left_out
            and not colours_in_text(surface[word_stem])
            and not normal_gender(surface[word_stem])
        }
        return cls(dict(sorted(kept.items())), {word_stem: len(groups[word_stem]) for word_stem in sorted(kept)})

    def most_stated(self) -> list[str]:
        """The qualities as a query names them, the most stated first."""
        return [self.words[s] for s in sorted(self.words, key=lambda s: (-self.groups.get(s, 0), s))]

    def named(self, text: str | None) -> list[str]:
        """The quality stems the words name ("women's wool" -> ["wool"])."""
        return sorted({stem(word) for word in words(text or "")} & self.words.keys())

    def of_product(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        """The qualities one product states, as a query would name them."""
        return tuple(self.words[word_stem] for word_stem in sorted(stated_stems(fields) & self.words.keys()))

    def to_json(self) -> dict[str, Any]:
        return {"words": self.words, "groups": self.groups}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Qualities:
        return cls(
            {str(key): str(word) for key, word in dict(data.get("words", {})).items()},
            {str(key): int(n) for key, n in dict(data.get("groups", {})).items()},
        )


def flags_named(text: str | None, fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The product's flags the words name: attributes that are simply true (``{"sale": true}``,
    ``{"eco_collection": true}``) whose name's words are all words of the text ("hoodies on sale" ->
    ("sale",); "eco collection tees" -> ("eco collection",)), by stem."""
    return flags_asked({stem(word) for word in words(text or "")}, fields)


def flags_asked(asked: Set[str], fields: Mapping[str, Any]) -> tuple[str, ...]:
    """:func:`flags_named` for the stems of the words (worked out once for a search's many products)."""
    found = fields.get(v.FIELD_ATTRIBUTES)
    if not asked or not isinstance(found, Mapping):
        return ()
    return flags_among(asked, [str(name) for name, value in found.items() if value is True])


def flags_among(asked: Set[str], flags: Iterable[str]) -> tuple[str, ...]:
    """The ``flags`` (names of a product's attributes that are true: ``store.product_flags``) whose words'
    stems are all among the ``asked`` stems, as words ("eco_collection" -> "eco collection")."""
    names = [str(name).replace("_", " ").lower() for name in flags]
    return tuple(sorted(name for name in names if words(name) and {stem(word) for word in words(name)} <= asked))


def quality_match(asked: Iterable[str], fields: Mapping[str, Any]) -> float:
    """The share of the ``asked`` quality stems the product states (1.0 when none is asked): a word of
    its ``stated_text`` whose stem is the asked one. One regular expression per stem searches the text
    (a search reads about 450 candidates: stemming each one's every word took 6.6 ms)."""
    asked = list(asked)
    if not asked:
        return 1.0
    text = stated_text(fields).lower()
    return sum(1 for word_stem in asked if _stated(word_stem).search(text)) / len(asked)


@lru_cache(maxsize=1024)
def _stated(word_stem: str) -> re.Pattern[str]:
    """The words (``text.words``: runs of a-z and 0-9) whose stem is ``word_stem``: itself, and its plural."""
    forms = [word_stem] + ([word_stem + "s"] if stem(word_stem + "s") == word_stem else [])
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, forms)) + r")(?![a-z0-9])")


def get_qualities(model_id: str) -> Qualities | None:
    """The qualities ``mmsearch_train`` found for this encoder version (reloaded when the file changes)."""
    return artefacts.load(ARTEFACT, model_id, Qualities.from_json)


def save_qualities(model_id: str, qualities: Qualities) -> None:
    artefacts.save(ARTEFACT, model_id, qualities.to_json(), indent=1)
