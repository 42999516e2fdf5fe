"""Attributes inferred from photos and text: colour, gender, category and material classifiers.

Catalogues are sparse: new products arrive without a colour field, titles do not
say who a garment is for. ``mmsearch_train`` fits one softmax layer per facet on
the photos of the products whose facet is known (their indexed fields, or a
``--labels`` file), over each photo's stored vectors (its text-space vector and
its visual features). For every product the facet is then *inferred* from its
photos (the mean of its photos' class probabilities) and kept in its
``fields``:

* ``colours``, the product's colour profile that colour words in queries are
  matched against, becomes half pixel naming, half the colour classifier, for
  products that state no colour;
* ``gender_inferred`` holds the gender distribution, which the ``gender`` signal
  reads when a product states none;
* ``category_inferred`` (the category leaf, one of the known leaves) and
  ``material_inferred`` (each known material, several may hold) come from
  product-level classifiers over the product's text vector and its mean photo
  vector. A query that names a known leaf ("sweatshirt" -> "Hoodies &
  Sweatshirts") or material ("organic cotton") gets a ``category`` or
  ``material`` signal: 1/0 where the product states it, else the probability.

A facet is learned only when at least two of its values have enough photos;
stated values always win over inferred ones. The model file is tied to one
encoder ``model_id`` (the vectors it reads) and is ignored for any other.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from multimodal_search import artefacts
from multimodal_search.ranking import colour
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.text import normal_gender, stems, words

#: facets classified photo by photo (then averaged over a product's photos)
PHOTO_FACETS = (v.COLOUR, v.GENDER)
#: facets classified per product, from its text vector and mean photo vector
PRODUCT_FACETS = (v.CATEGORY, v.MATERIAL)
FACETS = PHOTO_FACETS + PRODUCT_FACETS
#: facets where a product may have several values (one yes/no layer per value)
MULTI_VALUED = (v.MATERIAL,)
#: facets a query can name, matched against the learned values' words
NAMED_FACETS = (v.CATEGORY, v.MATERIAL)


def normal_value(facet: str, value: str) -> str | None:
    """A facet value in the classifier's vocabulary (colours: the 12 canonical names)."""
    if facet == v.COLOUR:
        names = colour.colours_in_text(value)
        return names[0] if len(names) == 1 else None
    if facet == v.CATEGORY:
        leaf = (value or "").split(">")[-1].strip().lower()
        return leaf or None
    if facet == v.MATERIAL:
        names = normal_materials(value)
        return names[0] if names else None
    return normal_gender(value)


def normal_materials(value: str) -> list[str]:
    """ "Organic Cotton, CoolTech™" -> ["organic cotton", "cooltech"]."""
    names = []
    for part in re.split(r"[,;/]", value or ""):
        name = " ".join(words(part))
        if name and name not in names:
            names.append(name)
    return names


def category_leaf(categories: Iterable[str]) -> str:
    """The leaf of the deepest category path ("Men > Tops > Hoodies" -> "hoodies"); "" when none."""
    paths = [str(c) for c in categories if c]
    return normal_value(v.CATEGORY, max(paths, key=len)) or "" if paths else ""


@dataclass
class Classifier:
    """One facet's softmax layer over standardised photo vectors."""

    classes: list[str]
    weights: np.ndarray  # (d, c)
    bias: np.ndarray  # (c,)
    mean: np.ndarray
    scale: np.ndarray
    #: one yes/no (sigmoid) output per class instead of one softmax over the classes
    multi: bool = False

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        logits = np.nan_to_num(((x - self.mean) / self.scale) @ self.weights + self.bias)
        if self.multi:
            return 1 / (1 + np.exp(-np.clip(logits, -50, 50)))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "weights": np.round(self.weights, 5).tolist(),
            "multi": self.multi,
            "bias": self.bias.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Classifier:
        scale = np.asarray(data["scale"], dtype=np.float64)
        return cls(
            classes=list(data["classes"]),
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=np.asarray(data["bias"], dtype=np.float64),
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.where(scale > 1e-9, scale, 1.0),
            multi=bool(data.get("multi", False)),
        )


@dataclass
class AttributeModel:
    model_id: str
    classifiers: dict[str, Classifier]
    meta: dict[str, Any]

    def infer(self, photo_vectors: np.ndarray, text_vector: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        """Facet -> value -> probability for one product, from its photos' vectors (n, d) and,
        for the product-level facets, its text vector."""
        text = np.asarray(text_vector, dtype=np.float32).astype(np.float64) if text_vector is not None else None
        found: dict[str, dict[str, float]] = {}
        for facet, clf in self.classifiers.items():
            if facet in PRODUCT_FACETS:
                if text is None:
                    continue
                p = clf.probabilities(product_row(text, photo_vectors, clf.mean.size - text.size)[None])[0]
            elif len(photo_vectors):
                p = clf.probabilities(photo_vectors).mean(axis=0)
            else:
                continue
            # values below 0.5% are dropped: fields stay small (they are read for every candidate)
            found[facet] = {name: round(float(share), 3) for name, share in zip(clf.classes, p) if share >= 0.005}
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "meta": self.meta,
            "classifiers": {facet: clf.to_json() for facet, clf in self.classifiers.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributeModel:
        return cls(
            model_id=str(data["model_id"]),
            meta=dict(data.get("meta", {})),
            classifiers={f: Classifier.from_json(c) for f, c in data["classifiers"].items()},
        )


def photo_matrix(feature_vectors: Iterable[Any], shared_vectors: Iterable[Any]) -> np.ndarray:
    """The classifier input of photos: text-space vector and visual features side by side."""
    rows = [
        np.concatenate([np.asarray(s, dtype=np.float32), np.asarray(f, dtype=np.float32)])
        for f, s in zip(feature_vectors, shared_vectors)
    ]
    return np.stack(rows).astype(np.float64) if rows else np.zeros((0, 0))


def product_row(text: np.ndarray, photo_vectors: np.ndarray, photo_width: int) -> np.ndarray:
    """The input of product-level classifiers: the text vector, then the mean of the photos'
    rows (``photo_width`` zeros for a product without photos)."""
    if len(photo_vectors) and photo_vectors.shape[1] == photo_width:
        return np.concatenate([text, photo_vectors.mean(axis=0)])
    return np.concatenate([text, np.zeros(photo_width)])


def enrichment(
    fields: dict[str, Any], inferred: Mapping[str, Mapping[str, float]], categories: Iterable[str] = ()
) -> dict[str, Any]:
    """What :func:`enrich_fields` adds to a product's stated ``fields``: every inferred facet (None where
    the product states it or nothing is inferred) and the category leaf when it has one. Stored apart from
    the fields (``store.base.ProductVectors.inferred``), which reads merge it over."""
    enriched = enrich_fields(fields, inferred, categories)
    added: dict[str, Any] = {key: enriched.get(key) for key in v.INFERRED_FIELDS}
    if category_leaf(categories):
        added[v.FIELD_CATEGORY_LEAF] = enriched[v.FIELD_CATEGORY_LEAF]
    return added


def enrich_fields(
    fields: dict[str, Any], inferred: Mapping[str, Mapping[str, float]], categories: Iterable[str] = ()
) -> dict[str, Any]:
    """Fields with inferred facets merged in (stated values win); returns a new dict.

    ``categories`` are the product's category paths: their leaf is kept as
    ``category_leaf`` so the ``category`` signal can read the stated value.
    """
    fields = dict(fields)
    for key in v.INFERRED_FIELDS:
        fields.pop(key, None)
    leaf = category_leaf(categories)
    if leaf:
        fields[v.FIELD_CATEGORY_LEAF] = leaf
    elif v.CATEGORY in inferred:
        fields[v.FIELD_CATEGORY_INFERRED] = dict(inferred[v.CATEGORY])
    if v.MATERIAL in inferred and not normal_materials(str(fields.get(v.FIELD_MATERIAL) or "")):
        fields[v.FIELD_MATERIAL_INFERRED] = dict(inferred[v.MATERIAL])
    if v.GENDER in inferred and not stated_gender(fields):
        fields[v.FIELD_GENDER_INFERRED] = dict(inferred[v.GENDER])
    if v.COLOUR in inferred and not colour.colours_in_text(str(fields.get(v.FIELD_COLOR) or "")):
        fields[v.FIELD_COLOUR_INFERRED] = dict(inferred[v.COLOUR])
    return fields


def colour_profile(fields: Mapping[str, Any]) -> dict[str, float]:
    """The colour profile queries are matched against: pixels, blended with the inferred colour."""
    pixels = fields.get(v.FIELD_COLOURS) or {}
    inferred = fields.get(v.FIELD_COLOUR_INFERRED)
    if not inferred:
        return pixels
    names = set(pixels) | set(inferred)
    return {name: 0.5 * pixels.get(name, 0.0) + 0.5 * inferred.get(name, 0.0) for name in names}


def stated_gender(fields: Mapping[str, Any]) -> str | None:
    """The gender a product's stored ``fields`` state ("men", "women", "unisex"), or None."""
    return normal_gender(str(fields.get(v.FIELD_GENDER) or ""))


def states_another_gender(fields: Mapping[str, Any], gender: str | None) -> bool:
    """Whether a product's stored ``fields`` state a gender other than ``gender`` ("men", "women"): never
    for a unisex product, one stating none, or ``gender`` None or "unisex"."""
    if gender in (None, "unisex"):
        return False
    return stated_gender(fields) not in (None, gender, "unisex")


def shared_gender(products: Iterable[Mapping[str, Any]]) -> str | None:
    """ "men" or "women" when at least two thirds of the products (their stored fields) that state "men"
    or "women" state it: what a shopper's history says they shop for. None when none states
    one (unisex products say nothing) or they are mixed (a shopper buying for two)."""
    stated = Counter(gender for gender in map(stated_gender, products) if gender not in (None, "unisex"))
    if not stated:
        return None
    gender, count = stated.most_common(1)[0]
    return gender if 3 * count >= 2 * sum(stated.values()) else None


def product_group(pk: str, fields: Mapping[str, Any]) -> str:
    """A product's group (``fields["group"]``: its colours share it), else its own pk."""
    return str(fields.get(v.FIELD_GROUP) or pk)


def gender_match(wanted: str, fields: Mapping[str, Any]) -> float:
    """How surely a product is for ``wanted`` ("men"/"women"): 1/0 when stated, else inferred."""
    stated = stated_gender(fields)
    if stated:
        return 1.0 if stated in (wanted, "unisex") else 0.0
    inferred = fields.get(v.FIELD_GENDER_INFERRED) or {}
    if not inferred:
        return 0.5
    return float(inferred.get(wanted, 0.0) + inferred.get("unisex", 0.0))


#: words of a category name that name nothing by themselves ("All Other Gear": "all", "other")
NAME_STOP = frozenset({"and", "the", "for", "with", "other", "misc", "all", "new", "sale"})


def named_values(text: str, classes: Iterable[str], facet: str) -> list[str]:
    """The learned values of a facet that a query names.

    Categories match when the query has any content word of the leaf ("sweatshirt"
    -> "hoodies & sweatshirts"); materials when it has the whole name, longest
    first ("organic cotton" names "organic cotton", not also "cotton").
    """
    asked = stems(text)
    if not asked:
        return []
    found = []
    if facet == v.CATEGORY:
        wanted = set(asked)
        for value in classes:
            content = {w for w in stems(value) if len(w) > 2 and w not in NAME_STOP}
            if content & wanted:
                found.append(value)
        return found
    padded = f" {' '.join(asked)} "
    for value in sorted(classes, key=lambda name: -len(name)):
        phrase = f" {' '.join(stems(value))} "
        if phrase.strip() and phrase in padded:
            found.append(value)
            padded = padded.replace(phrase, " | ")
    return found


def leaf_odds(fields: Mapping[str, Any]) -> dict[str, float]:
    """A product's category leaf -> how surely it is in it: its stored leaf (1.0), else the classifier's
    inferred leaves (``FIELD_CATEGORY_INFERRED``)."""
    leaf = fields.get(v.FIELD_CATEGORY_LEAF)
    inferred = fields.get(v.FIELD_CATEGORY_INFERRED) or {}
    return {str(leaf): 1.0} if leaf else {str(name): float(p) for name, p in inferred.items()}


def facet_match(facet: str, wanted: list[str], fields: Mapping[str, Any]) -> float:
    """How surely a product has one of the ``wanted`` categories (or all wanted materials):
    1/0 where its fields state the facet, else the classifier's probability, 0.5 when unknown.

    A material the product's title names counts as stated, whatever its material field says: "Helena
    Hooded Fleece" (stated "Cotton, Polyester, Spandex" in Luma) is a fleece, and "fleece" ranked
    it eighth, under jackets whose material field says fleece."""
    if facet == v.CATEGORY:
        stated = fields.get(v.FIELD_CATEGORY_LEAF)
        if stated:
            return 1.0 if stated in wanted else 0.0
        inferred = fields.get(v.FIELD_CATEGORY_INFERRED) or {}
        return min(1.0, float(sum(inferred.get(value, 0.0) for value in wanted))) if inferred else 0.5
    titled = f" {' '.join(stems(str(fields.get(v.FIELD_TITLE) or '')))} "
    named = {value for value in wanted if f" {' '.join(stems(value))} " in titled}
    stated_materials = normal_materials(str(fields.get(v.FIELD_MATERIAL) or ""))
    if stated_materials or named == set(wanted):
        return float(np.mean([1.0 if value in stated_materials or value in named else 0.0 for value in wanted]))
    inferred = fields.get(v.FIELD_MATERIAL_INFERRED) or {}
    if not inferred:
        return 0.5 if not named else float(np.mean([1.0 if value in named else 0.5 for value in wanted]))
    return float(np.mean([1.0 if value in named else inferred.get(value, 0.0) for value in wanted]))


# ------------------------------------------------------------------ storage

#: the artefact name (``artefacts``) of the trained attribute model
ARTEFACT = "attributes"


def get_model(model_id: str) -> AttributeModel | None:
    """The attribute model trained for this encoder version (reloaded when its file changes), or None."""
    return artefacts.load(ARTEFACT, model_id, AttributeModel.from_json)


def photo_kinds(nearest: Sequence[Mapping[str, float]]) -> list[str]:
    """The kinds a photo shows, from its nearest products' kinds, nearest first (each kind -> how surely the
    product is of it): the nearest product's likeliest (a tie: each), then any at least half of them are in."""
    first = next((found for found in nearest if found), None)
    if first is None:
        return []
    top = max(first.values())
    firsts = [kind for kind, share in first.items() if share == top]
    votes: Counter[str] = Counter()
    for found in nearest:
        votes.update(found)
    return firsts + [kind for kind, share in votes.items() if share >= len(nearest) / 2 and kind not in firsts]
