"""Text queries as shoppers type them, generated and graded from catalogue facts only.

Each item gets *facts*: the product nouns it answers to ("hoodie", "pants",
"backpack"), its colour, gender, activities ("yoga", "running", "gym"), materials
and features ("waterproof", "full zip"). Facts come from structured fields
(category, colour, gender, material, attributes) and from words of the product
name ("Running Short", "Yoga Pant"); descriptions are not read.

A query is a :class:`QuerySpec` (a noun plus up to two other facets), rendered in
shopper phrasing ("womens yoga pants", "black hoodie", "gym bag"). Grades:
2 = the item has the noun and every other facet; 1 = the item has the noun but
misses another facet (right kind of product, wrong colour or gender); unlisted = 0.
Nothing here looks at search results.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields

from shop.catalog.importers.records import CatalogRecord

#: facets other than the noun, in the order they are written before it
FACETS = ("gender", "colour", "feature", "material", "activity")

#: which facet combinations become queries (the noun is always there)
TEMPLATES: tuple[tuple[str, ...], ...] = (
    (),
    ("colour",),
    ("gender",),
    ("activity",),
    ("material",),
    ("feature",),
    ("gender", "colour"),
    ("gender", "activity"),
    ("colour", "activity"),
    ("gender", "feature"),
    ("gender", "material"),
    ("colour", "feature"),
)

GENDER_WORDS = {
    "men": ("mens", "men's", "{q} for men"),
    "women": ("womens", "women's", "ladies", "{q} for women"),
}
COLOUR_WORDS = {"gray": ("gray", "grey")}
ACTIVITY_WORDS = {"workout": ("workout", "training")}

# name word -> activity; attribute value -> activity
TITLE_ACTIVITIES = {
    "yoga": "yoga",
    "bikram": "yoga",
    "running": "running",
    "gym": "gym",
    "trek": "hiking",
    "trail": "hiking",
    "fitness": "workout",
    "workout": "workout",
    "bike": "cycling",
}
ATTRIBUTE_ACTIVITIES = {
    "gym": "gym",
    "yoga": "yoga",
    "hiking": "hiking",
    "trail": "hiking",
    "travel": "travel",
    "overnight": "travel",
    "school": "school",
}
# material in the catalogue -> words a shopper would use
MATERIALS = {
    "organic cotton": ("organic cotton", "cotton"),
    "cotton": ("cotton",),
    "wool": ("wool",),
    "fleece": ("fleece",),
    "polyester": ("polyester",),
    "nylon": ("nylon",),
    "spandex": ("spandex",),
    "hemp": ("hemp",),
    "leather": ("leather",),
    "mesh": ("mesh",),
}
FEATURE_WORDS = {
    "full zip": ("full zip", "zip up"),
    "quarter zip": ("quarter zip", "1/4 zip"),
    "v-neck": ("v-neck", "v neck"),
}

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class ItemFacts:
    """What a shopper could ask for that this item is."""

    sku: str
    parent_sku: str
    colour: str
    gender: str
    nouns: frozenset[str]
    activities: frozenset[str]
    materials: frozenset[str]
    features: frozenset[str]

    def values(self, facet: str) -> tuple[str, ...]:
        """Values of one facet, sorted (gender only when men or women)."""
        if facet == "colour":
            return (self.colour,) if self.colour else ()
        if facet == "gender":
            return (self.gender,) if self.gender in GENDER_WORDS else ()
        return tuple(
            sorted(getattr(self, {"activity": "activities", "material": "materials", "feature": "features"}[facet]))
        )


@dataclass(frozen=True)
class _Item:
    """Normalised view of a record that noun and feature rules read."""

    leaf: str
    words: frozenset[str]
    title: str
    attrs: dict[str, frozenset[str]]

    def attr(self, key: str) -> frozenset[str]:
        return self.attrs.get(key, frozenset())


@dataclass(frozen=True)
class Noun:
    key: str
    phrasings: tuple[str, ...]
    test: Callable[[_Item], bool]


def _title_has(*words: str) -> Callable[[_Item], bool]:
    return lambda item: any(word in item.words for word in words)


NOUNS: tuple[Noun, ...] = (
    Noun("hoodie", ("hoodie", "sweatshirt"), lambda i: i.leaf == "hoodies & sweatshirts"),
    Noun("jacket", ("jacket",), lambda i: i.leaf == "jackets"),
    Noun("tee", ("tee", "t-shirt", "t shirt"), lambda i: i.leaf == "tees"),
    Noun(
        "tank",
        ("tank top", "tank", "sleeveless top"),
        lambda i: i.leaf == "tanks" or (i.leaf == "bras & tanks" and "tank" in i.attr("style_general")),
    ),
    Noun("sports bra", ("sports bra", "bra"), lambda i: i.leaf == "bras & tanks" and "bra" in i.attr("style_general")),
    Noun("pants", ("pants", "trousers"), lambda i: i.leaf == "pants"),
    Noun(
        "leggings", ("leggings", "tights"), lambda i: bool({"leggings", "tights"} & (i.attr("style_bottom") | i.words))
    ),
    Noun("capris", ("capris", "capri pants"), lambda i: "capri" in i.attr("style_bottom") or "capri" in i.words),
    Noun("sweatpants", ("sweatpants", "joggers"), lambda i: "sweatpants" in i.attr("style_bottom")),
    Noun("track pants", ("track pants",), lambda i: "track pants" in i.attr("style_bottom")),
    Noun("shorts", ("shorts",), lambda i: i.leaf == "shorts"),
    Noun("bag", ("bag",), lambda i: i.leaf == "bags"),
    Noun(
        "backpack",
        ("backpack", "rucksack"),
        lambda i: i.leaf == "bags" and ("backpack" in i.attr("style_bags") or "backpack" in i.words),
    ),
    Noun(
        "duffle bag",
        ("duffle bag", "duffel bag", "holdall"),
        lambda i: i.leaf == "bags" and ("duffel" in i.attr("style_bags") or "duffle" in i.words),
    ),
    Noun(
        "messenger bag",
        ("messenger bag",),
        lambda i: i.leaf == "bags" and ("messenger" in i.attr("style_bags") or "messenger" in i.words),
    ),
    Noun(
        "tote",
        ("tote bag", "tote"),
        lambda i: i.leaf == "bags" and ("tote" in i.attr("style_bags") or "tote" in i.words),
    ),
    Noun("watch", ("watch",), lambda i: i.leaf == "watches"),
    Noun("water bottle", ("water bottle",), _title_has("bottle")),
    Noun("foam roller", ("foam roller",), _title_has("roller")),
    Noun("exercise ball", ("exercise ball", "fitness ball"), _title_has("ball")),
    Noun("resistance band", ("resistance band", "exercise band"), _title_has("band")),
    Noun("yoga strap", ("yoga strap",), _title_has("strap")),
    Noun("jump rope", ("jump rope", "skipping rope"), _title_has("rope")),
    Noun("yoga block", ("yoga block",), _title_has("brick")),
    Noun("push up grips", ("push up grips",), _title_has("pushup")),
)
NOUNS_BY_KEY = {noun.key: noun for noun in NOUNS}


def _normal_item(record: CatalogRecord) -> _Item:
    attrs: dict[str, frozenset[str]] = {}
    for key, value in record.attributes.items():
        values = value if isinstance(value, list) else [value]
        attrs[key] = frozenset(str(v).strip().lower() for v in values if isinstance(v, str))
    title = record.title.lower()
    leaf = (record.category or "").split(">")[-1].strip().lower()
    return _Item(leaf=leaf, words=frozenset(_WORD.findall(title)), title=title, attrs=attrs)


def _features(item: _Item) -> set[str]:
    style = item.attr("style_general")
    bags = item.attr("features_bags")
    found: set[str] = set()
    rules = {
        "waterproof": "rain coat" in style or "waterproof" in bags,
        "insulated": "insulated" in style,
        "full zip": "full zip" in style,
        "quarter zip": "¼ zip" in style,
        "lightweight": "lightweight" in style or "lightweight" in bags,
        "hooded": "hooded" in style,
        "windbreaker": "windbreaker" in style,
        "softshell": "soft shell" in style,
        "pullover": "pullover" in style,
        "long sleeve": "long-sleeve" in item.title or "long sleeve" in item.title,
        "v-neck": "v-neck" in item.title or "v-tee" in item.title,
        "compression": "compression" in item.attr("style_bottom") or "compression" in item.words,
        "laptop": "laptop" in item.attr("style_bags") or "laptop sleeve" in bags,
        "reflective": "reflective" in bags,
        "striped": any("striped" in p for p in item.attr("pattern")),
        "analog": "analog" in item.words,
        "digital": "digital" in item.words,
    }
    found.update(name for name, present in rules.items() if present)
    return found


def item_facts(record: CatalogRecord) -> ItemFacts:
    """Derive the facts of one catalogue record (see the module docstring)."""
    item = _normal_item(record)
    activities = {TITLE_ACTIVITIES[w] for w in item.words if w in TITLE_ACTIVITIES}
    activities |= {ATTRIBUTE_ACTIVITIES[a] for a in item.attr("activity") if a in ATTRIBUTE_ACTIVITIES}
    materials: set[str] = set()
    for part in record.material.split(","):
        name = re.sub(r"[®™]", "", part).strip().lower()
        materials.update(MATERIALS.get(name, ()))
    return ItemFacts(
        sku=record.sku,
        parent_sku=record.parent_sku or record.sku,
        colour=record.color.strip().lower(),
        gender=record.gender.strip().lower(),
        nouns=frozenset(noun.key for noun in NOUNS if noun.test(item)),
        activities=frozenset(activities),
        materials=frozenset(materials),
        features=frozenset(_features(item)),
    )


@dataclass(frozen=True)
class QuerySpec:
    """What a query asks for: a noun and optional facets."""

    noun: str
    gender: str | None = None
    colour: str | None = None
    feature: str | None = None
    material: str | None = None
    activity: str | None = None

    @property
    def facets(self) -> dict[str, str]:
        """The facets that are set, noun included."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def key(self) -> str:
        return "|".join(f"{name}={value}" for name, value in self.facets.items())

    def grade(self, item: ItemFacts) -> int:
        """2 = every facet matches, 1 = the noun matches but another facet does not, else 0."""
        if self.noun not in item.nouns:
            return 0
        matches = (
            (self.colour is None or item.colour == self.colour)
            and (self.gender is None or item.gender in (self.gender, "unisex"))
            and (self.activity is None or self.activity in item.activities)
            and (self.material is None or self.material in item.materials)
            and (self.feature is None or self.feature in item.features)
        )
        return 2 if matches else 1

    def render(self, seed: int) -> str:
        """Shopper phrasing; synonyms and spellings picked reproducibly per spec."""
        digest = hashlib.sha1(f"{seed}:{self.key()}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        words = []
        if self.colour:
            words.append(rng.choice(COLOUR_WORDS.get(self.colour, (self.colour,))))
        if self.feature:
            words.append(rng.choice(FEATURE_WORDS.get(self.feature, (self.feature,))))
        if self.material:
            words.append(self.material)
        if self.activity:
            words.append(rng.choice(ACTIVITY_WORDS.get(self.activity, (self.activity,))))
        words.append(rng.choice(NOUNS_BY_KEY[self.noun].phrasings))
        text = " ".join(words)
        if self.gender:
            pattern = rng.choice(GENDER_WORDS[self.gender])
            text = pattern.format(q=text) if "{q}" in pattern else f"{pattern} {text}"
        return text


def specs_for(item: ItemFacts) -> Iterator[QuerySpec]:
    """Every query spec this item (as a seed) gives through ``TEMPLATES``."""
    for noun in sorted(item.nouns):
        for template in TEMPLATES:
            choices = [item.values(facet) for facet in template]
            for values in itertools.product(*choices):
                yield QuerySpec(noun=noun, **dict(zip(template, values)))


@dataclass(frozen=True)
class TextQuery:
    text: str
    spec: QuerySpec
    graded: dict[str, int]


def generate_text_queries(facts: Iterable[ItemFacts], *, seed: int, max_exact: int = 30) -> list[TextQuery]:
    """Queries from every item's facts, graded against every item.

    A spec is kept when 1 to ``max_exact`` items get grade 2. Specs with the same
    grades (e.g. "sports bra" and "womens sports bra") are judged once: the one
    with fewest facets is kept. Output is sorted by query text.

    Args:
        facts: facts of all catalogue items.
        seed: picks synonyms and spellings.
        max_exact: skip queries with more grade-2 items than this (too vague to measure).

    Returns:
        the judged queries.
    """
    facts = list(facts)
    specs = sorted({spec for item in facts for spec in specs_for(item)}, key=lambda s: (len(s.facets), s.key()))
    seen_grades: set[tuple[tuple[str, int], ...]] = set()
    seen_texts: set[str] = set()
    queries = []
    for spec in specs:
        graded = {item.sku: g for item in facts if (g := spec.grade(item))}
        exact = sum(1 for g in graded.values() if g == 2)
        if not 1 <= exact <= max_exact:
            continue
        signature = tuple(sorted(graded.items()))
        text = spec.render(seed)
        if signature in seen_grades or text in seen_texts:
            continue
        seen_grades.add(signature)
        seen_texts.add(text)
        queries.append(TextQuery(text=text, spec=spec, graded=dict(sorted(graded.items()))))
    return sorted(queries, key=lambda q: q.text)
