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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multimodal_search import artefacts
from multimodal_search.ranking.attributes import NAME_STOP
from multimodal_search.ranking.colour import colours_in_text
from multimodal_search.ranking.text import normal_gender, stems

#: the artefact name (``artefacts``) of the catalogue's departments
ARTEFACT = "departments"


def segments(path: str) -> list[str]:
    """ "Women > Tops > Jackets" -> ["women", "tops", "jackets"]."""
    return [part.strip().lower() for part in str(path).split(">") if part.strip()]


def name_stems(name: str) -> frozenset[str]:
    """The content stems of a category name ("tops" -> {"top"}); a query names it when it has them all."""
    return frozenset(word for word in stems(name) if len(word) > 2 and word not in NAME_STOP)


def _kept(name: str, leaf_names: set[str]) -> bool:
    return bool(name_stems(name)) and name not in leaf_names and not normal_gender(name) and not colours_in_text(name)


@dataclass
class Departments:
    """Department name -> the category leaves below it (lower case, as ``FIELD_CATEGORY_LEAF``)."""

    leaves: dict[str, list[str]] = field(default_factory=dict)
    #: each department's name stems, worked out once (a query is matched against every department)
    _stems: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._stems = {name: name_stems(name) for name in self.leaves}

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> Departments:
        """The departments of a catalogue from its products' category paths (ancestors or not)."""
        trees = {tree for tree in (tuple(segments(path)) for path in paths) if tree}
        inner = {tree[:depth] for tree in trees for depth in range(1, len(tree))}
        leaf_trees = [tree for tree in trees if tree not in inner]
        leaf_names = {tree[-1] for tree in leaf_trees}
        below: dict[str, set[str]] = {}
        for tree in leaf_trees:
            for name in tree[:-1]:
                if _kept(name, leaf_names):
                    below.setdefault(name, set()).add(tree[-1])
        return cls({name: sorted(found) for name, found in sorted(below.items())})

    def of_product(self, categories: Iterable[str]) -> tuple[str, ...]:
        """The departments one product is in (the inner segments of its deepest path), outermost first."""
        deepest = max((segments(path) for path in categories if path), key=len, default=[])
        return tuple(name for name in deepest[:-1] if name in self.leaves)

    def named(self, text: str | None) -> dict[str, list[str]]:
        """The departments the words name ("men's tops" -> {"tops": [...]}), each with its leaves."""
        asked = set(stems(text or ""))
        if not asked:
            return {}
        return {name: self.leaves[name] for name, words in self._stems.items() if words <= asked}

    def to_json(self) -> dict[str, Any]:
        return {"leaves": self.leaves}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Departments:
        return cls({str(name): [str(leaf) for leaf in found] for name, found in dict(data.get("leaves", {})).items()})


def get_departments(model_id: str) -> Departments | None:
    """The departments ``mmsearch_train`` found for this encoder version (reloaded when the file changes)."""
    return artefacts.load(ARTEFACT, model_id, Departments.from_json)


def save_departments(model_id: str, departments: Departments) -> None:
    artefacts.save(ARTEFACT, model_id, departments.to_json(), indent=1)
