"""The learned relevance layer: a logistic layer over fused (query, product) features.

Features are the per-modality signals of a candidate (text, photo-in-text-space,
keywords, colour), plus each one standardised within the query's candidate
pool, so the layer learns how much each modality should count and how sharp
a lead must be to matter. It re-scores the candidates of text queries.

It is trained by ``mmsearch_train`` without any evaluation query: pseudo-queries
are built from the catalogue itself (a product's head noun from its title, plus
the colour its photos show), and a candidate counts as relevant when its title
has that noun and its photos show that colour. Being linear, each score splits
exactly into per-modality shares for explanations.
"""
from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from multimodal_search import model_files

logger = logging.getLogger(__name__)

SIGNALS = ("text", "title", "image", "lexical", "colour", "neighbours", "gender", "category", "material")
FEATURES = (
    "text", "title", "image", "lexical", "colour", "neighbours", "gender", "category", "material",
    "text_z", "title_z", "image_z", "lexical_z", "colour_z", "neighbours_z", "gender_z", "category_z", "material_z",
    "text_top", "title_top", "image_top",
)
GROUPS = {
    "text": "text", "text_z": "text", "text_top": "text",
    "title": "title", "title_z": "title", "title_top": "title",
    "image": "image", "image_z": "image", "image_top": "image",
    "lexical": "lexical", "lexical_z": "lexical",
    "colour": "colour", "colour_z": "colour",
    "neighbours": "neighbours", "neighbours_z": "neighbours",
    "gender": "gender", "gender_z": "gender",
    "category": "category", "category_z": "category",
    "material": "material", "material_z": "material",
}
FILENAME = "reranker.json"
_STOP = {"and", "with", "the", "for", "from", "set", "pack", "kit", "size", "cm", "foot", "oz"}
_WORD = re.compile(r"[a-z]+")


def feature_matrix(pool: list[str], signals: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Features (len(pool), len(FEATURES)) of each candidate; absent signals are 0."""
    columns: dict[str, np.ndarray] = {}
    for name in SIGNALS:
        values = signals.get(name, {})
        raw = np.array([values.get(pk, 0.0) for pk in pool], dtype=np.float64)
        if name == "lexical" and raw.max(initial=0) > 0:
            raw = raw / raw.max()
        columns[name] = raw
        std = raw.std()
        columns[f"{name}_z"] = (raw - raw.mean()) / std if std > 1e-9 else np.zeros_like(raw)
    for name in ("text", "title", "image"):
        raw = columns[name]
        columns[f"{name}_top"] = raw - raw.max(initial=0) if len(raw) else raw
    return np.stack([columns[f] for f in FEATURES], axis=1) if pool else np.zeros((0, len(FEATURES)))


@dataclass
class Reranker:
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    version: str
    meta: dict[str, Any]

    def decision(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def score(
        self, pool: list[str], signals: Mapping[str, Mapping[str, float]]
    ) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, float]]:
        """Relevance of each candidate and, for explanations, each modality's part of it.

        Returns:
            (scores, parts by modality, unit weights by modality)
        """
        x = feature_matrix(pool, signals)
        logits = self.decision(x)
        probability = 1 / (1 + np.exp(-logits))
        terms = ((x - self.mean) / self.scale) * self.weights
        parts: dict[str, dict[str, float]] = {}
        for group in dict.fromkeys(GROUPS[f] for f in FEATURES):
            if group in signals:
                columns = [i for i, feature in enumerate(FEATURES) if GROUPS[feature] == group]
                parts[group] = dict(zip(pool, terms[:, columns].sum(axis=1).tolist()))
        scores = {pk: float(probability[row]) for row, pk in enumerate(pool)}
        return scores, parts, {group: 1.0 for group in parts}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "features": list(FEATURES), "weights": self.weights.tolist(),
            "bias": self.bias, "mean": self.mean.tolist(), "scale": self.scale.tolist(), "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Reranker":
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("re-ranker was trained on other features; run mmsearch_train again")
        return cls(
            weights=np.asarray(data["weights"], dtype=np.float64), bias=float(data["bias"]),
            mean=np.asarray(data["mean"], dtype=np.float64), scale=np.asarray(data["scale"], dtype=np.float64),
            version=str(data["version"]), meta=dict(data.get("meta", {})),
        )


def reranker_path() -> Path:
    return model_files.model_file(FILENAME)


def get_reranker() -> Reranker | None:
    """The trained re-ranker (reloaded when its file changes), or None."""
    return model_files.load_cached(reranker_path(), Reranker.from_json, "re-ranker")


# --------------------------------------------------------------------- training


def head_noun(title: str) -> str | None:
    """The last content word of a product title ("Chaz Kangeroo Hoodie" -> "hoodie")."""
    words = [w for w in _WORD.findall(title.lower()) if len(w) > 2 and w not in _STOP]
    return words[-1] if words else None


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _has_word(title: str, noun: str) -> bool:
    target = _stem(noun)
    return any(_stem(w) == target for w in _WORD.findall(title.lower()))


def _top_colour(profile: Mapping[str, float]) -> str | None:
    return max(profile, key=profile.get) if profile else None


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

    def noun_matches(self, noun: str) -> bool:
        return _has_word(self.title, noun) or _has_word(self.leaf, noun)

    def colour_matches(self, wanted: str) -> bool:
        from multimodal_search.colour import colours_in_text

        stated = colours_in_text(self.color)
        if stated:
            return wanted in stated
        return self.colours.get(wanted, 0.0) >= 0.25

    def gender_matches(self, gender: str) -> bool:
        return self.gender.lower() == gender.lower()

    def word_matches(self, word: str) -> bool:
        return _stem(word) in self.words


def text_stems(text: str) -> frozenset[str]:
    """Stems of the words of a text (what ``Facts.words`` holds)."""
    return frozenset(_stem(w) for w in _WORD.findall(text.lower()))


def descriptor_words(title: str, extra: str, document_frequency: Mapping[str, float], *,
                     low: float, high: float) -> tuple[str, ...]:
    """Words of a title (not its head noun) and of ``extra`` (e.g. its material) that a shopper
    could add to a query: shared with other products (not a model name) but not with most."""
    from multimodal_search.colour import colours_in_text

    noun = head_noun(title)
    found = []
    for word in _WORD.findall(f"{title} {extra}".lower()):
        if len(word) <= 2 or word in _STOP or word == noun or colours_in_text(word):
            continue
        if low <= document_frequency.get(_stem(word), 0.0) <= high and word not in found:
            found.append(word)
    return tuple(found)


def pseudo_query(facts: Facts, rng: random.Random) -> tuple[str, dict[str, str]] | None:
    """A shopper-like query from one product's facts: [gender] [colour] [descriptor] noun."""
    from multimodal_search.colour import colours_in_text

    leaf_noun = head_noun(facts.leaf) if facts.leaf else None
    noun = leaf_noun if leaf_noun and rng.random() < 0.5 else head_noun(facts.title)
    if not noun:
        return None
    asked: dict[str, str] = {"noun": noun}
    words = [noun]
    descriptors = [w for w in facts.descriptors if _stem(w) != _stem(noun)]
    if descriptors and rng.random() < 0.5:
        word = rng.choice(descriptors)
        asked["word"] = word
        words.insert(0, word)
    if rng.random() < 0.6:
        stated = colours_in_text(facts.color)
        wanted = stated[0] if stated else _top_colour(facts.colours)
        if wanted:
            asked["colour"] = wanted
            words.insert(0, wanted)
    if facts.gender and facts.gender.lower() in ("men", "women") and rng.random() < 0.4:
        asked["gender"] = facts.gender
        words.insert(0, f"{facts.gender.lower()}'s")
    return " ".join(words), asked


#: target of a candidate that is the kind of product asked for but misses another facet
#: (wrong colour or gender): a shopper still wants it above other kinds of product
PARTIAL_RELEVANCE = 1 / 3


def relevance(facts: Facts, asked: Mapping[str, str]) -> float:
    """Graded target: 1 = every facet matches, ``PARTIAL_RELEVANCE`` = only the noun, 0 = not the noun."""
    if not facts.noun_matches(asked["noun"]):
        return 0.0
    full = (
        ("colour" not in asked or facts.colour_matches(asked["colour"]))
        and ("gender" not in asked or facts.gender_matches(asked["gender"]))
        and ("word" not in asked or facts.word_matches(asked["word"]))
    )
    return 1.0 if full else PARTIAL_RELEVANCE


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, epochs: int = 400, lr: float = 0.5) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Class-balanced logistic regression by full-batch gradient descent on standardised features.

    ``y`` may hold graded targets in [0, 1] (cross-entropy with soft labels); exact matches
    (``y == 1``) and all other rows get equal total weight.
    """
    from multimodal_search.attributes import fit_sigmoid

    positives = max(float((y == 1).sum()), 1.0)
    negatives = max(float((y < 1).sum()), 1.0)
    sample_weight = np.where(y == 1, 0.5 / positives, 0.5 / negatives)[:, None]
    weights, bias, mean, scale = fit_sigmoid(x, y[:, None], sample_weight=sample_weight, l2=l2, epochs=epochs, lr=lr)
    return weights[:, 0], float(bias[0]), mean, scale


def build_training_set(
    seeds: Iterable[str],
    facts: Mapping[str, Facts],
    collect: Callable[[str], tuple[list[str], dict[str, dict[str, float]]]],
    *,
    max_queries: int = 400,
    seed: int = 13,
    progress: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pseudo-queries from seed products -> (features, labels, queries used).

    Args:
        seeds: pks of the products queries may be made from.
        facts: every candidate product's facts (for labels).
        collect: runs the first search stage for a query text -> (pool, signals).
    """
    rng = random.Random(seed)
    order = sorted(seeds)
    rng.shuffle(order)
    queries: dict[str, dict[str, str]] = {}
    for _round in range(3):  # several phrasings per product until the cap
        for pk in order:
            made = pseudo_query(facts[pk], rng)
            if made:
                queries.setdefault(made[0], made[1])
            if len(queries) >= max_queries:
                break
        if len(queries) >= max_queries:
            break
    rows, labels = [], []
    for text, asked in queries.items():
        pool, signals = collect(text)
        if progress:
            progress(1)
        pool = [pk for pk in pool if pk in facts]
        if not pool:
            continue
        y = np.array([relevance(facts[pk], asked) for pk in pool])
        if y.min() == y.max():  # every candidate equally relevant: nothing to learn from
            continue
        rows.append(feature_matrix(pool, signals))
        labels.append(y)
    if not rows:
        return np.zeros((0, len(FEATURES))), np.zeros(0), 0
    return np.concatenate(rows), np.concatenate(labels), len(rows)


def save_reranker(model: Reranker, path: Path | None = None) -> Path:
    return model_files.save_json(path or reranker_path(), model.to_json(), indent=1)


def new_version() -> str:
    return time.strftime("%Y%m%d%H%M%S")
