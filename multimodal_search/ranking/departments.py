"""Departments: the catalogue's inner categories ("Tops" in "Women > Tops > Jackets"), as a query names them.

A shopper who types "tops" or "men's bottoms" asks for every product in that part of the category
tree, but the word is far from any one product's text (a text cosine of 0.2 where "tees" gets 0.5),
so the relevance calibration fitted on queries that name a kind of product called the best results
of "tops" unlikely and the storefront showed "No results" on Luma. Such a query is a *broad* one,
like "red" or "women's" (``ranking.intent.facets_only``): its results get the ``broad`` calibration,
which reads how surely each product is in the department named (the ``department`` signal: 1/0 from
its stated category leaf, else the category classifier's probability). The signal feeds only that
calibration, never a ranking: the re-ranker and the fusion methods do not read it.

A department is a category with categories below it, named by its last segment. Names that are a
gender ("Women", "Men": the ``gender`` signal has them) or a colour, and names that are also some
leaf's ("Jackets" both above and at the bottom of a tree: a query that names a leaf is not broad)
are left out. ``mmsearch_train`` reads the tree from the indexed products' category paths and keeps
it beside the re-ranker (:data:`ARTEFACT`), so a department added later is known after the next
training.

*Classes* are the words above the tree: "clothing" and "garments" name Luma's tops and bottoms, which
no category does, and the search found three bags for "clothing" (their text mentions clothes). A
class is a WordNet noun (:mod:`ranking.wordnet`) above the commonest goods sense of the words of
leaves' names, within :data:`CLASS_DEPTH` links ("jackets": coat, overgarment, garment, clothing).
It names the leaves of every department most of whose leaves it is above (a leaf under no department
counts as one): WordNet reads "tees" as golf tees and "tanks" as army tanks, and the other tops carry
them. A class must name the leaves of at least two such groups (within one department, the
department's own name is the word) and not every leaf ("artifact" names everything). Of its lemmas,
those whose commonest goods sense it is, that are not a department's, a leaf's, a colour or a
gender, name it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multimodal_search import artefacts
from multimodal_search.ranking import wordnet
from multimodal_search.ranking.attributes import NAME_STOP
from multimodal_search.ranking.colour import colours_in_text
from multimodal_search.ranking.text import normal_gender, stems, words

#: the artefact name (``artefacts``) of the catalogue's departments
ARTEFACT = "departments"
#: hypernym links looked up above a leaf word's sense for the classes it is in ("jacket" -> "clothing": 4)
CLASS_DEPTH = 5


def segments(path: str) -> list[str]:
    """ "Women > Tops > Jackets" -> ["women", "tops", "jackets"]."""
    return [part.strip().lower() for part in str(path).split(">") if part.strip()]


def name_stems(name: str) -> frozenset[str]:
    """The content stems of a category name ("tops" -> {"top"}); a query names it when it has them all."""
    return frozenset(word for word in stems(name) if len(word) > 2 and word not in NAME_STOP)


def names_stems(names: Iterable[str]) -> frozenset[str]:
    """The content stems of several category names together (:func:`name_stems`)."""
    return frozenset(word for name in names for word in name_stems(name))


def _kept(name: str, leaf_names: set[str]) -> bool:
    return bool(name_stems(name)) and name not in leaf_names and not normal_gender(name) and not colours_in_text(name)


def classes(
    departments: Mapping[str, Iterable[str]], leaves: Iterable[str], synonyms: Iterable[Sequence[str]] = ()
) -> dict[str, list[str]]:
    """Class name -> the leaves it names (see the module's docstring), from the catalogue's departments
    (name -> leaves) and all its leaf names; {} without the WordNet data. A phrase of a group of
    ``synonyms`` (``ranking.synonyms``) that holds a class's name names it too ("clothes", "apparel":
    WordNet files them under one more sense, which is above no garment)."""
    every = set(leaves)
    if not every or not wordnet.available():
        return {}
    in_department = {leaf for found in departments.values() for leaf in found}
    groups = [frozenset(found) for found in departments.values()] + [
        frozenset({leaf}) for leaf in every - in_department
    ]
    above: dict[int, set[str]] = {}
    for leaf in every:
        for word in words(leaf):
            sense = wordnet.first_goods_sense(word) if len(word) > 2 and word not in NAME_STOP else None
            for offset in wordnet.ancestors(sense, CLASS_DEPTH) if sense is not None else ():
                above.setdefault(offset, set()).add(leaf)
    taken = {word for name in [*departments, *every] for word in name_stems(name)}
    found: dict[str, set[str]] = {}
    for offset, below in above.items():
        named = [group for group in groups if 2 * len(group & below) > len(group)]
        union = set().union(*named) if named else set()
        if len(named) < 2 or union >= every:
            continue
        for lemma in wordnet.synset(offset).lemmas:
            if _kept(lemma, set()) and not name_stems(lemma) & taken and wordnet.first_goods_sense(lemma) == offset:
                found.setdefault(lemma, set()).update(union)
    for group in synonyms:
        for name in [name for name in group if name in found]:
            for other in group:
                if other not in found and _kept(other, set()) and not name_stems(other) & taken:
                    found[other] = set(found[name])
    return {name: sorted(below) for name, below in sorted(found.items())}


@dataclass
class Departments:
    """Department name -> the category leaves below it (lower case, as ``FIELD_CATEGORY_LEAF``), and
    class name -> the leaves it names (:func:`classes`)."""

    leaves: dict[str, list[str]] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    #: the stems of the catalogue's kinds of product: titles' head nouns, leaves' words ("hoodie", "pant";
    #: ``ranking.intent.kind_parts`` reads them)
    kinds: list[str] = field(default_factory=list)
    #: each department's and class's name stems, worked out once (a query is matched against every one)
    _stems: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._stems = {name: name_stems(name) for name in [*self.leaves, *self.classes]}

    def name_words(self) -> frozenset[str]:
        """The stems of every department's, leaf's and class's name ("gear", "fitness", "equipment")."""
        leaves = {leaf for below in self.leaves.values() for leaf in below}
        return frozenset().union(*self._stems.values(), *(name_stems(leaf) for leaf in leaves))

    @classmethod
    def from_paths(
        cls, paths: Iterable[str], synonyms: Iterable[Sequence[str]] = (), kinds: Iterable[str] = ()
    ) -> Departments:
        """The departments of a catalogue from its products' category paths (ancestors or not), the
        classes above them (:func:`classes`; ``synonyms``: groups of phrases that mean the same) and its
        ``kinds`` (stems)."""
        trees = {tree for tree in (tuple(segments(path)) for path in paths) if tree}
        inner = {tree[:depth] for tree in trees for depth in range(1, len(tree))}
        leaf_trees = [tree for tree in trees if tree not in inner]
        leaf_names = {tree[-1] for tree in leaf_trees}
        below: dict[str, set[str]] = {}
        for tree in leaf_trees:
            for name in tree[:-1]:
                if _kept(name, leaf_names):
                    below.setdefault(name, set()).add(tree[-1])
        departments = {name: sorted(found) for name, found in sorted(below.items())}
        return cls(departments, classes(below, leaf_names, synonyms), sorted(set(kinds)))

    def of_product(self, categories: Iterable[str]) -> tuple[str, ...]:
        """The departments one product is in (the inner segments of its deepest path), outermost first."""
        deepest = max((segments(path) for path in categories if path), key=len, default=[])
        return tuple(name for name in deepest[:-1] if name in self.leaves)

    def named(self, text: str | None) -> dict[str, list[str]]:
        """The departments and classes the words name ("men's tops" -> {"tops": [...]}, "clothing" ->
        {"clothing": [...]}), each with its leaves."""
        asked = set(stems(text or ""))
        if not asked:
            return {}
        return {
            name: self.leaves.get(name) or self.classes[name]
            for name, found in self._stems.items()
            if found and found <= asked
        }

    def spelled_out(self, names: Iterable[str]) -> list[str]:
        """What the classes among ``names`` stand for in the catalogue's own words, for the text searched:
        the departments whose leaves they name, and the other leaves ("clothes" -> ["bottoms", "tops"]).
        A class's word is rarely a product's (Luma's bags "have room for clothes", its hoodies never
        say the word), and its results are judged by the same calibration as a department's, fitted on
        queries that name the department."""
        found: list[str] = []
        for name in names:
            if name in self.leaves or name not in self.classes:
                continue
            below = set(self.classes[name])
            departments = [department for department, leaves in self.leaves.items() if set(leaves) <= below]
            covered = {leaf for department in departments for leaf in self.leaves[department]}
            found += departments + sorted(below - covered)
        return list(dict.fromkeys(found))

    def to_json(self) -> dict[str, Any]:
        return {"leaves": self.leaves, "classes": self.classes, "kinds": self.kinds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Departments:
        def read(key: str) -> dict[str, list[str]]:
            return {str(name): [str(leaf) for leaf in found] for name, found in dict(data.get(key, {})).items()}

        # a file written before classes and kinds has none
        return cls(read("leaves"), read("classes"), [str(kind) for kind in data.get("kinds", [])])


def get_departments(model_id: str) -> Departments | None:
    """The departments ``mmsearch_train`` found for this encoder version (reloaded when the file changes)."""
    return artefacts.load(ARTEFACT, model_id, Departments.from_json)


def save_departments(model_id: str, departments: Departments) -> None:
    artefacts.save(ARTEFACT, model_id, departments.to_json(), indent=1)
