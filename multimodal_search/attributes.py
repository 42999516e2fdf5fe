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

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from multimodal_search import colour, model_files

logger = logging.getLogger(__name__)
_WORD = re.compile(r"[a-z0-9]+")

FILENAME = "attributes.json"
#: facets classified photo by photo (then averaged over a product's photos)
PHOTO_FACETS = ("colour", "gender")
#: facets classified per product, from its text vector and mean photo vector
PRODUCT_FACETS = ("category", "material")
FACETS = PHOTO_FACETS + PRODUCT_FACETS
#: facets where a product may have several values (one yes/no layer per value)
MULTI_VALUED = ("material",)
#: facets a query can name, matched against the learned values' words
NAMED_FACETS = ("category", "material")
MIN_PHOTOS_PER_CLASS = 4
GENDERS = {"men": "men", "man": "men", "mens": "men", "male": "men", "women": "women", "woman": "women",
           "womens": "women", "female": "women", "ladies": "women", "unisex": "unisex"}


def normal_gender(value: str) -> str | None:
    """"Men", "women's", "Unisex" -> "men" / "women" / "unisex"; anything else -> None."""
    word = "".join(ch for ch in (value or "").lower() if ch.isalpha())
    return GENDERS.get(word)


def normal_value(facet: str, value: str) -> str | None:
    """A facet value in the classifier's vocabulary (colours: the 12 canonical names)."""
    if facet == "colour":
        names = colour.colours_in_text(value)
        return names[0] if len(names) == 1 else None
    if facet == "category":
        leaf = (value or "").split(">")[-1].strip().lower()
        return leaf or None
    if facet == "material":
        names = normal_materials(value)
        return names[0] if names else None
    return normal_gender(value)


def normal_materials(value: str) -> list[str]:
    """"Organic Cotton, CoolTech™" -> ["organic cotton", "cooltech"]."""
    names = []
    for part in re.split(r"[,;/]", value or ""):
        name = " ".join(_WORD.findall(part.lower()))
        if name and name not in names:
            names.append(name)
    return names


def category_leaf(categories: Iterable[str]) -> str:
    """The leaf of the deepest category path ("Men > Tops > Hoodies" -> "hoodies"); "" when none."""
    paths = [str(c) for c in categories if c]
    return normal_value("category", max(paths, key=len)) or "" if paths else ""


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
        return {"classes": self.classes, "weights": np.round(self.weights, 5).tolist(), "multi": self.multi,
                "bias": self.bias.tolist(), "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Classifier":
        scale = np.asarray(data["scale"], dtype=np.float64)
        return cls(classes=list(data["classes"]), weights=np.asarray(data["weights"], dtype=np.float64),
                   bias=np.asarray(data["bias"], dtype=np.float64), mean=np.asarray(data["mean"], dtype=np.float64),
                   scale=np.where(scale > 1e-9, scale, 1.0), multi=bool(data.get("multi", False)))


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z-scored x, column means, column scales; 1 where a column barely varies)."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.where(std > 1e-9, std, 1.0)
    return (x - mean) / scale, mean, scale


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 1e-2, epochs: int = 300,
                lr: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class-balanced multinomial logistic regression, full-batch gradient descent."""
    z, mean, scale = standardise(x)
    onehot = np.eye(classes)[y]
    counts = np.maximum(onehot.sum(axis=0), 1.0)
    sample_weight = (1.0 / counts[y]) / classes
    weights = np.zeros((z.shape[1], classes))
    bias = np.zeros(classes)
    for _ in range(epochs):
        logits = z @ weights + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - onehot) * sample_weight[:, None]
        weights -= lr * (z.T @ error + l2 * weights)
        bias -= lr * error.sum(axis=0)
    return weights, bias, mean, scale


def fit_sigmoid(x: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None = None, l2: float = 1e-2,
                epochs: int = 300, lr: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One logistic layer per column of the target matrix ``y`` (n, c; soft targets allowed),
    by default each balanced between yes and no."""
    z, mean, scale = standardise(x)
    if sample_weight is None:
        positives = np.maximum(y.sum(axis=0), 1.0)
        negatives = np.maximum((1 - y).sum(axis=0), 1.0)
        sample_weight = np.where(y > 0, 0.5 / positives, 0.5 / negatives)
    weights = np.zeros((z.shape[1], y.shape[1]))
    bias = np.zeros(y.shape[1])
    for _ in range(epochs):
        p = 1 / (1 + np.exp(-np.clip(z @ weights + bias, -50, 50)))
        error = (p - y) * sample_weight
        weights -= lr * (z.T @ error + l2 * weights)
        bias -= lr * error.sum(axis=0)
    return weights, bias, mean, scale


def train_multi_classifier(x: np.ndarray, value_sets: list[set[str]]) -> Classifier | None:
    """Yes/no layers for the values that at least ``MIN_PHOTOS_PER_CLASS`` rows have and some lack."""
    counts = Counter(value for values in value_sets for value in values)
    classes = sorted(v for v, n in counts.items() if MIN_PHOTOS_PER_CLASS <= n < len(value_sets))
    if not classes:
        return None
    y = np.array([[1.0 if c in values else 0.0 for c in classes] for values in value_sets])
    weights, bias, mean, scale = fit_sigmoid(x, y)
    return Classifier(classes, weights, bias, mean, scale, multi=True)


def train_classifier(x: np.ndarray, values: list[str]) -> Classifier | None:
    """A classifier for the values with enough photos, or None when fewer than two qualify."""
    classes = sorted(v for v, n in Counter(values).items() if n >= MIN_PHOTOS_PER_CLASS)
    if len(classes) < 2:
        return None
    keep = np.array([v in classes for v in values])
    index = {v: i for i, v in enumerate(classes)}
    y = np.array([index[v] for v, k in zip(values, keep) if k])
    weights, bias, mean, scale = fit_softmax(x[keep], y, len(classes))
    return Classifier(classes, weights, bias, mean, scale)


@dataclass
class AttributeModel:
    model_id: str
    classifiers: dict[str, Classifier]
    meta: dict[str, Any]

    def infer(self, photo_vectors: np.ndarray, text_vector: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        """Facet -> value -> probability for one product, from its photos' vectors (n, d) and,
        for the product-level facets, its text vector."""
        from multimodal_search.backends.pgvector import as_array

        text = as_array(text_vector).astype(np.float64) if text_vector is not None else None
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
            found[facet] = {name: round(float(v), 3) for name, v in zip(clf.classes, p) if v >= 0.005}
        return found

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "meta": self.meta,
                "classifiers": {facet: clf.to_json() for facet, clf in self.classifiers.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AttributeModel":
        return cls(model_id=str(data["model_id"]), meta=dict(data.get("meta", {})),
                   classifiers={f: Classifier.from_json(c) for f, c in data["classifiers"].items()})


def photo_matrix(feature_vectors: Iterable[Any], shared_vectors: Iterable[Any]) -> np.ndarray:
    """The classifier input of photos: text-space vector and visual features side by side."""
    from multimodal_search.backends.pgvector import as_array

    rows = [np.concatenate([as_array(s), as_array(f)]) for f, s in zip(feature_vectors, shared_vectors)]
    return np.stack(rows).astype(np.float64) if rows else np.zeros((0, 0))


def product_row(text: np.ndarray, photo_vectors: np.ndarray, photo_width: int) -> np.ndarray:
    """The input of product-level classifiers: the text vector, then the mean of the photos'
    rows (``photo_width`` zeros for a product without photos)."""
    if len(photo_vectors) and photo_vectors.shape[1] == photo_width:
        return np.concatenate([text, photo_vectors.mean(axis=0)])
    return np.concatenate([text, np.zeros(photo_width)])


def enrich_fields(fields: dict[str, Any], inferred: Mapping[str, Mapping[str, float]],
                  categories: Iterable[str] = ()) -> dict[str, Any]:
    """Fields with inferred facets merged in (stated values win); returns a new dict.

    ``categories`` are the product's category paths: their leaf is kept as
    ``category_leaf`` so the ``category`` signal can read the stated value.
    """
    fields = dict(fields)
    for key in ("gender_inferred", "colour_inferred", "category_inferred", "material_inferred", "category_leaf"):
        fields.pop(key, None)
    leaf = category_leaf(categories)
    if leaf:
        fields["category_leaf"] = leaf
    elif "category" in inferred:
        fields["category_inferred"] = dict(inferred["category"])
    if "material" in inferred and not normal_materials(str(fields.get("material") or "")):
        fields["material_inferred"] = dict(inferred["material"])
    if "gender" in inferred and not normal_gender(str(fields.get("gender") or "")):
        fields["gender_inferred"] = dict(inferred["gender"])
    if "colour" in inferred and not colour.colours_in_text(str(fields.get("color") or "")):
        fields["colour_inferred"] = dict(inferred["colour"])
    return fields


def colour_profile(fields: Mapping[str, Any]) -> dict[str, float]:
    """The colour profile queries are matched against: pixels, blended with the inferred colour."""
    pixels = fields.get("colours") or {}
    inferred = fields.get("colour_inferred")
    if not inferred:
        return pixels
    names = set(pixels) | set(inferred)
    return {name: 0.5 * pixels.get(name, 0.0) + 0.5 * inferred.get(name, 0.0) for name in names}


def gender_match(wanted: str, fields: Mapping[str, Any]) -> float:
    """How surely a product is for ``wanted`` ("men"/"women"): 1/0 when stated, else inferred."""
    stated = normal_gender(str(fields.get("gender") or ""))
    if stated:
        return 1.0 if stated in (wanted, "unisex") else 0.0
    inferred = fields.get("gender_inferred") or {}
    if not inferred:
        return 0.5
    return float(inferred.get(wanted, 0.0) + inferred.get("unisex", 0.0))


_GENDER_QUERY = {"men": ("men", "mens", "man", "male", "guys", "boys"),
                 "women": ("women", "womens", "woman", "female", "ladies", "lady", "girls")}


def gender_in_text(text: str) -> str | None:
    """"womens yoga pants" -> "women"; None when no (or both) genders are named."""
    words = {"".join(ch for ch in w if ch.isalpha()) for w in (text or "").lower().split()}
    found = [g for g, names in _GENDER_QUERY.items() if words & set(names)]
    return found[0] if len(found) == 1 else None


def _stems(text: str) -> list[str]:
    return [w[:-1] if w.endswith("s") and not w.endswith("ss") and len(w) > 3 else w
            for w in _WORD.findall((text or "").lower())]


_NAME_STOP = {"and", "the", "for", "with", "other", "misc", "all", "new", "sale"}


def named_values(text: str, classes: Iterable[str], facet: str) -> list[str]:
    """The learned values of a facet that a query names.

    Categories match when the query has any content word of the leaf ("sweatshirt"
    -> "hoodies & sweatshirts"); materials when it has the whole name, longest
    first ("organic cotton" names "organic cotton", not also "cotton").
    """
    words = _stems(text)
    if not words:
        return []
    found = []
    if facet == "category":
        wanted = set(words)
        for value in classes:
            content = {w for w in _stems(value) if len(w) > 2 and w not in _NAME_STOP}
            if content & wanted:
                found.append(value)
        return found
    padded = f" {' '.join(words)} "
    for value in sorted(classes, key=lambda v: -len(v)):
        phrase = f" {' '.join(_stems(value))} "
        if phrase.strip() and phrase in padded:
            found.append(value)
            padded = padded.replace(phrase, " | ")
    return found


def facet_match(facet: str, wanted: list[str], fields: Mapping[str, Any]) -> float:
    """How surely a product has one of the ``wanted`` categories (or all wanted materials):
    1/0 where its fields state the facet, else the classifier's probability, 0.5 when unknown."""
    if facet == "category":
        stated = fields.get("category_leaf")
        if stated:
            return 1.0 if stated in wanted else 0.0
        inferred = fields.get("category_inferred") or {}
        return min(1.0, float(sum(inferred.get(v, 0.0) for v in wanted))) if inferred else 0.5
    stated_materials = normal_materials(str(fields.get("material") or ""))
    if stated_materials:
        return float(np.mean([1.0 if v in stated_materials else 0.0 for v in wanted]))
    inferred = fields.get("material_inferred") or {}
    return float(np.mean([inferred.get(v, 0.0) for v in wanted])) if inferred else 0.5


# ------------------------------------------------------------------ storage


def model_path() -> Path:
    return model_files.model_file(FILENAME)


def get_model(model_id: str) -> AttributeModel | None:
    """The trained attribute model for this encoder version (reloaded when its file changes), or None."""
    model = model_files.load_cached(model_path(), AttributeModel.from_json, "attribute model")
    return model if model is not None and model.model_id == model_id else None


def save_model(model: AttributeModel, path: Path | None = None) -> Path:
    return model_files.save_json(path or model_path(), model.to_json())
