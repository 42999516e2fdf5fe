"""Pseudo-queries for training the re-ranker, made from the catalogue itself (no judged queries).

A query is ``[gender] [colour] [descriptor] noun`` taken from one product's facts (its title's head
noun or category leaf, its stated or photographed colour, a descriptor word shared by a few
products). Every candidate is then graded as a shopper would: 1 when it matches every facet asked,
``PARTIAL_RELEVANCE`` when it is the right kind of product only, 0 otherwise.

A *broad* query (:func:`broad_query`, for the relevance calibration of queries of facets alone) is
``[gender] [colour]``, ``[gender] department`` or ``[gender] quality`` without a noun ("red",
"women's", "men's black", "tops", "women's bottoms", "wool", "men's striped"): 1 for every product
that matches each facet asked, 0 otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from multimodal_search.ranking.colour import colours_in_text
from multimodal_search.ranking.text import HEAD_STOP, head_noun, stem, stems, words


def _has_word(title: str, noun: str) -> bool:
    return stem(noun) in stems(title)


def _top_colour(profile: Mapping[str, float]) -> str | None:
    return max(profile, key=profile.__getitem__) if profile else None


@dataclass
class Facts:
    """What the catalogue itself says about one product (used to label pseudo-queries)."""

    title: str
    colours: Mapping[str, float]
    color: str = ""
    gender: str = ""
    leaf: str = ""
    #: stems of every word the product's text says (title, description, material)
    words: frozenset[str] = frozenset()
    #: words a query for this product may add to the noun ("yoga", "cotton", "zip")
    descriptors: tuple[str, ...] = ()
    #: the catalogue's departments the product is in ("tops"; ``ranking.departments``)
    departments: tuple[str, ...] = ()
    #: the catalogue's qualities the product states, as a query names them ("wool"; ``ranking.qualities``)
    qualities: tuple[str, ...] = ()

    def noun_matches(self, noun: str) -> bool:
        return _has_word(self.title, noun) or _has_word(self.leaf, noun)

    def colour_matches(self, wanted: str) -> bool:
        stated = colours_in_text(self.color)
        if stated:
            return wanted in stated
        return self.colours.get(wanted, 0.0) >= 0.25

    def gender_matches(self, gender: str) -> bool:
        return self.gender.lower() == gender.lower()

    def word_matches(self, word: str) -> bool:
        return stem(word) in self.words

    def department_matches(self, department: str) -> bool:
        return department in self.departments

    def quality_matches(self, quality: str) -> bool:
        return stem(quality) in {stem(word) for word in self.qualities}


def text_stems(text: str) -> frozenset[str]:
    """Stems of the words of a text (what ``Facts.words`` holds)."""
    return frozenset(stems(text))


def descriptor_words(
    title: str, extra: str, document_frequency: Mapping[str, float], *, low: float, high: float
) -> tuple[str, ...]:
    """Words of a title (not its head noun) and of ``extra`` (e.g. its material) that a shopper
    could add to a query: shared with other products (not a model name) but not with most."""
    noun = head_noun(title)
    found: list[str] = []
    for word in words(f"{title} {extra}"):
        if len(word) <= 2 or word in HEAD_STOP or word == noun or colours_in_text(word):
            continue
        if low <= document_frequency.get(stem(word), 0.0) <= high and word not in found:
            found.append(word)
    return tuple(found)


def pseudo_query(facts: Facts, rng: random.Random) -> tuple[str, dict[str, str]] | None:
    """A shopper-like query from one product's facts: [gender] [colour] [descriptor] noun."""
    leaf_noun = head_noun(facts.leaf) if facts.leaf else None
    noun = leaf_noun if leaf_noun and rng.random() < 0.5 else head_noun(facts.title)
    if not noun:
        return None
    asked: dict[str, str] = {"noun": noun}
    terms = [noun]
    descriptors = [w for w in facts.descriptors if stem(w) != stem(noun)]
    if descriptors and rng.random() < 0.5:
        word = rng.choice(descriptors)
        asked["word"] = word
        terms.insert(0, word)
    if rng.random() < 0.6:
        stated = colours_in_text(facts.color)
        wanted = stated[0] if stated else _top_colour(facts.colours)
        if wanted:
            asked["colour"] = wanted
            terms.insert(0, wanted)
    if facts.gender and facts.gender.lower() in ("men", "women") and rng.random() < 0.4:
        asked["gender"] = facts.gender
        terms.insert(0, f"{facts.gender.lower()}'s")
    return " ".join(terms), asked


def broad_query(facts: Facts, rng: random.Random) -> tuple[str, dict[str, str]] | None:
    """A query of facets alone from one product's facts: its colour, its gender, or both; or one of its
    departments or of its qualities, alone or with its gender."""
    stated = colours_in_text(facts.color)
    colour = stated[0] if stated else _top_colour(facts.colours)
    gender = facts.gender.lower() if facts.gender.lower() in ("men", "women") else None
    department = rng.choice(facts.departments) if facts.departments else None
    quality = rng.choice(facts.qualities) if facts.qualities else None
    # (gender, colour, department or quality, which of the two) asked, each one the product has
    shapes: list[tuple[str | None, str | None, str | None, str]] = []
    if colour:
        shapes.append((None, colour, None, ""))
    if gender:
        shapes.append((gender, None, None, ""))
    if gender and colour:
        shapes.append((gender, colour, None, ""))
    for key, named in (("department", department), ("quality", quality)):
        if named:
            shapes.append((None, None, named, key))
        if named and gender:
            shapes.append((gender, None, named, key))
    if not shapes:
        return None
    asked_gender, asked_colour, asked_name, key = rng.choice(shapes)
    asked: dict[str, str] = {}
    terms = []
    if asked_gender:
        asked["gender"] = facts.gender
        terms.append(f"{asked_gender}'s")
    if asked_colour:
        asked["colour"] = asked_colour
        terms.append(asked_colour)
    if asked_name:
        asked[key] = asked_name
        terms.append(asked_name)
    return " ".join(terms), asked


#: target of a candidate that is the kind of product asked for but misses another facet
#: (wrong colour or gender): a shopper still wants it above other kinds of product
PARTIAL_RELEVANCE = 1 / 3


def relevance(facts: Facts, asked: Mapping[str, str]) -> float:
    """Graded target: 1 = every facet matches, ``PARTIAL_RELEVANCE`` = only the noun, 0 = not the noun
    (a broad query, without a noun: 1 or 0)."""
    if "noun" in asked and not facts.noun_matches(asked["noun"]):
        return 0.0
    full = (
        ("colour" not in asked or facts.colour_matches(asked["colour"]))
        and ("gender" not in asked or facts.gender_matches(asked["gender"]))
        and ("word" not in asked or facts.word_matches(asked["word"]))
        and ("department" not in asked or facts.department_matches(asked["department"]))
        and ("quality" not in asked or facts.quality_matches(asked["quality"]))
    )
    if "noun" not in asked:
        return 1.0 if full else 0.0
    return 1.0 if full else PARTIAL_RELEVANCE
