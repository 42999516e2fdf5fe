"""Query expansion with shopper synonyms: the words shoppers type that catalogues rarely use.

Catalogues say "pants", "backpack", "duffle"; shoppers type "trousers", "rucksack",
"holdall". Neither the keyword index nor a small sentence encoder bridges that
well, so a query that names one phrase of a group is expanded with the others
("black holdall" -> "black holdall duffle bag duffel bag weekender bag").
Keyword search ORs the terms; the text encoder sees the expanded query.

``DEFAULT_GROUPS`` is general English (UK and US) apparel and fitness vocabulary,
not any one catalogue's. Shops replace or extend it with
``MULTIMODAL_SEARCH["SYNONYMS"]`` (a list of groups; ``[]`` turns expansion off). Groups and
one-way rewrites edited in the admin (``services.merchandising``) are passed in as ``groups`` and
``rewrites``: a rewrite ``(("sweater",), ("hoodie",))`` adds "hoodie" to a query naming "sweater"
but not the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from multimodal_search.ranking.text import phrase_key, words

DEFAULT_GROUPS: tuple[tuple[str, ...], ...] = (
    # apparel as a whole ("clothing" is also a class of departments: ``ranking.departments``)
    ("clothing", "clothes", "apparel"),
    # bottoms
    ("trousers", "pants", "slacks"),
    ("joggers", "sweatpants", "jogging pants", "jogging bottoms", "tracksuit bottoms"),
    ("tights", "leggings"),
    ("capris", "capri pants", "cropped pants", "three quarter pants"),
    ("shorts", "short pants"),
    # tops
    ("tee", "t-shirt", "t shirt", "tshirt"),
    ("tank top", "tank", "singlet", "sleeveless top", "vest top"),
    ("hoodie", "hoody", "hooded sweatshirt"),
    ("sweatshirt", "crewneck", "sweat top"),
    ("jumper", "sweater", "pullover"),
    ("sports bra", "athletic bra", "workout bra"),
    ("polo", "polo shirt"),
    # outerwear
    ("raincoat", "rain jacket", "waterproof jacket"),
    ("windbreaker", "windcheater", "wind jacket"),
    ("gilet", "bodywarmer", "sleeveless jacket"),
    ("parka", "winter coat"),
    # footwear
    ("trainers", "sneakers", "running shoes", "athletic shoes"),
    ("flip flops", "sandals"),
    # bags
    ("rucksack", "backpack", "knapsack", "daypack"),
    ("holdall", "duffle bag", "duffel bag", "weekender bag", "duffle", "duffel"),
    ("messenger bag", "satchel", "shoulder bag"),
    ("tote", "tote bag", "shopper bag"),
    ("bum bag", "fanny pack", "waist bag", "belt bag"),
    # gear
    ("watch", "wristwatch"),
    ("water bottle", "drinks bottle", "sports bottle"),
    ("jump rope", "skipping rope"),
    ("exercise ball", "fitness ball", "stability ball", "swiss ball", "yoga ball", "gym ball"),
    ("resistance band", "exercise band", "workout band"),
    ("yoga block", "yoga brick"),
    ("yoga mat", "exercise mat", "fitness mat"),
    ("dumbbell", "hand weight"),
    ("push up grips", "push up bars", "pushup handles"),
    # features
    ("full zip", "zip up", "zip-up", "full-zip"),
    ("quarter zip", "1/4 zip", "half zip", "quarter-zip"),
    ("waterproof", "water resistant", "rainproof"),
    ("long sleeve", "long-sleeve", "long sleeved"),
)


Rewrite = tuple[Sequence[str], Sequence[str]]

#: one-way: the words shoppers use for a gender that catalogues do not ("ladies tee" also searches
#: "women": the re-ranker ranked men's tees first for it, as no women's product says "ladies")
DEFAULT_REWRITES: tuple[Rewrite, ...] = (
    (("ladies", "lady", "female"), ("women",)),
    (("guys", "male"), ("men",)),
)


def phrase_words(groups: Iterable[Sequence[str]], rewrites: Iterable[Rewrite] = ()) -> list[list[str]]:
    """The words of every phrase of ``groups`` and of both sides of ``rewrites`` ("zip-up" -> ["zip", "up"])."""
    sides = [*groups, *(side for rewrite in rewrites for side in rewrite)]
    return [words(phrase) for side in sides for phrase in side]


@lru_cache(maxsize=8)
def vocabulary(groups: tuple[tuple[str, ...], ...], rewrites: tuple[Rewrite, ...]) -> frozenset[str]:
    """Every word of ``groups``' and ``rewrites``' phrases, and each phrase run together ("zipup"), made once
    per vocabulary (the configured one: ``configured_groups``, ``configured_rewrites``)."""
    said = phrase_words(groups, rewrites)
    return frozenset([word for phrase in said for word in phrase] + ["".join(phrase) for phrase in said])


@lru_cache(maxsize=8)
def _compiled(groups: tuple[tuple[str, ...], ...]) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """Each group as (normalised phrases, original phrases)."""
    return tuple((tuple(phrase_key(p) for p in group), tuple(group)) for group in groups if len(group) > 1)


def configured_groups() -> tuple[tuple[str, ...], ...]:
    from multimodal_search.conf import search_settings

    groups = search_settings.SYNONYMS
    if groups is None:
        return DEFAULT_GROUPS
    return tuple(tuple(str(p) for p in group) for group in groups)


def configured_rewrites() -> tuple[Rewrite, ...]:
    """The built-in one-way rewrites, unless ``SYNONYMS`` replaces the built-in vocabulary."""
    from multimodal_search.conf import search_settings

    return DEFAULT_REWRITES if search_settings.SYNONYMS is None else ()


def expansions(text: str, groups: Iterable[Sequence[str]] | None = None, rewrites: Iterable[Rewrite] = ()) -> list[str]:
    """Phrases to add to ``text``: the other members of every group it names, and the right side of
    every one-way rewrite whose left side it names."""
    groups = tuple(tuple(g) for g in groups) if groups is not None else configured_groups()
    normal = phrase_key(text)
    added: list[str] = []
    for normal_phrases, phrases in _compiled(groups):
        if any(p in normal for p in normal_phrases):
            added.extend(p for p, n in zip(phrases, normal_phrases) if n not in normal and p not in added)
    for sources, targets in rewrites:
        if any(phrase_key(p) in normal for p in sources):
            added.extend(p for p in targets if phrase_key(p) not in normal and p not in added)
    return added


def named(text: str, groups: Iterable[Sequence[str]] | None = None) -> list[str]:
    """The phrases of the groups that ``text`` names ("black holdall" -> ["holdall"])."""
    groups = tuple(tuple(g) for g in groups) if groups is not None else configured_groups()
    normal = phrase_key(text)
    return [p for normal_phrases, phrases in _compiled(groups) for p, n in zip(phrases, normal_phrases) if n in normal]


def variants(text: str, groups: Iterable[Sequence[str]] | None = None, limit: int = 8) -> list[str]:
    """``text`` (lower-cased), then ``text`` with one phrase of a group it names put as another of that
    group ("quarter zip" -> "1/4 zip", "half zip", "quarter-zip"), at most ``limit`` in all."""
    groups = tuple(tuple(g) for g in groups) if groups is not None else configured_groups()
    normal = phrase_key(text)
    found = [normal]
    for normal_phrases, _ in _compiled(groups):
        for named_phrase in (n for n in normal_phrases if n in normal):
            found += [normal.replace(named_phrase, other) for other in normal_phrases if other != named_phrase]
    return list(dict.fromkeys(phrase.strip() for phrase in found))[: int(limit)]


def expand(text: str, groups: Iterable[Sequence[str]] | None = None, rewrites: Iterable[Rewrite] = ()) -> str:
    """``text`` followed by its expansions ("holdall" -> "holdall duffle bag duffel bag …")."""
    extra = expansions(text, groups, rewrites)
    return f"{text} {' '.join(extra)}" if extra else text
