"""Calibrated relevance: the probability that a result is relevant, and the page's ``match`` summary.

A :class:`Calibration` is Platt scaling with a few inputs beside the score: a logistic layer over the
re-ranker's logit and the pair's *absolute* similarities (text, title, photo-in-text-space cosines and
whether any query word matched). The re-ranker ranks within one query's candidates, so its logit
mostly says "better than the others"; the absolute inputs say whether the best is any good, which is
what tells a query the catalogue cannot answer ("xyzzy", "lipstick" in a clothes shop) from one it
can. ``mmsearch_train`` fits it on held-out pseudo-queries (``learning.calibration``), including
pseudo-queries for kinds of product the catalogue was made not to sell, and stores it with the
re-ranker (``ranking.reranker``). The ``signals`` calibration reads only the text and photo cosines
every text query collects, for the methods that do not run the re-ranker.

The ``broad`` calibration is for queries that name only a colour, a gender, a department and/or a
quality ("red", "women's black", "tops", "wool", "women's striped"; ``ranking.intent.facets_only``).
Every product of that colour, gender or department, or stating that quality, answers them, but their
words are far from any one product's text, so the ``rerank`` calibration, fitted on queries that name
a kind of product, calls their best results unlikely. It reads the re-ranker's logit and how surely
the product has each facet asked (the ``colour``, ``gender``, ``department`` and ``quality`` signals;
1 for a facet not asked), and is fitted on pseudo-queries of that shape (``learning.calibration``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from multimodal_search.ranking import vocabulary as v

#: the calibration used by the re-ranker, the one for every other method of a text query, and the
#: re-ranker's for a query of facets alone
RERANK = "rerank"
SIGNALS = "signals"
BROAD = "broad"
#: inputs of each calibration: "logit" is the re-ranker's, "lexical" whether any query word matched
INPUTS = {
    RERANK: ("logit", v.TEXT, v.TITLE, v.IMAGE, v.LEXICAL),
    SIGNALS: (v.TEXT, v.IMAGE),
    BROAD: ("logit", v.COLOUR, v.GENDER, v.DEPARTMENT, v.QUALITY),
}
#: inputs that say how surely a product has a facet the query asks for: 1 when the query does not ask
FACET_INPUTS = (v.COLOUR, v.GENDER, v.DEPARTMENT, v.QUALITY)
#: the cuts of the ``match`` summary (``RELATED`` is the storefront's threshold unless configured)
EXACT = "exact"
RELATED = "related"
NONE = "none"


def calibration_inputs(
    name: str,
    pool: Sequence[str],
    signals: Mapping[str, Mapping[str, float]],
    logits: np.ndarray | None = None,
    *,
    inputs: Sequence[str] | None = None,
) -> np.ndarray:
    """The inputs (len(pool), len(inputs)) of one calibration (``inputs``: default ``INPUTS[name]``);
    absent signals are 0, a facet the query does not ask for (its signal not collected) 1."""
    inputs = INPUTS[name] if inputs is None else inputs
    columns = []
    for column in inputs:
        if column == "logit":
            assert logits is not None, "the rerank calibration needs the re-ranker's logits"
            columns.append(np.asarray(logits, dtype=np.float64))
        elif column in FACET_INPUTS and column not in signals:
            columns.append(np.ones(len(pool), dtype=np.float64))
        else:
            values = signals.get(column, {})
            raw = np.array([values.get(pk, 0.0) for pk in pool], dtype=np.float64)
            columns.append((raw > 0).astype(np.float64) if column == v.LEXICAL else raw)
    return np.stack(columns, axis=1) if len(pool) else np.zeros((0, len(inputs)))


@dataclass
class Calibration:
    """A logistic layer from calibration inputs to the probability of relevance."""

    name: str
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    #: what it reads, in order: ``INPUTS[name]``, or fewer for one fitted before an input was added
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.inputs = tuple(self.inputs) or INPUTS[self.name]

    def probability(self, x: np.ndarray) -> np.ndarray:
        logits = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return 1 / (1 + np.exp(-np.clip(logits, -50, 50)))

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> Calibration | None:
        """The calibration, or None when it was fitted on inputs it no longer has (an older artefact). One
        fitted before an input was added (a ``broad`` one without ``department``) reads what it was
        fitted on until ``mmsearch_train`` fits it again."""
        inputs = [str(column) for column in data.get("inputs", [])]
        if name not in INPUTS or not inputs or not set(inputs) <= set(INPUTS[name]):
            return None
        return cls(
            name=name,
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=float(data["bias"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            inputs=tuple(inputs),
        )


@dataclass
class PhotoCalibration:
    """Photo queries: the probability that a result is the product in the photo, from its best-photo cosine
    (the ``visual`` signal) and, where ``mmsearch_train`` found it predicts better, its *margin*: that
    cosine minus the best one of any other candidate (how far it stands out, as in a ratio test: the
    catalogue photo itself stands out from the product's colour variants, a look-alike does not).
    Fitted on the catalogue's own second photos (``learning.photo_relevance``) and stored in the head
    file with its cuts."""

    weight: float
    bias: float
    mean: float
    scale: float
    #: the margin's weight, mean and scale (weight 0: not read; a head file fitted before it has none)
    margin_weight: float = 0.0
    margin_mean: float = 0.0
    margin_scale: float = 1.0

    def probability(self, similarity: np.ndarray, margin: np.ndarray | None = None) -> np.ndarray:
        """The probability of each candidate; ``margin`` (default: within ``similarity``, one query's
        candidates, :func:`margins`) is read only when the calibration has a margin weight."""
        similarity = np.asarray(similarity, dtype=np.float64)
        logits = (similarity - self.mean) / self.scale * self.weight + self.bias
        if self.margin_weight:
            margin = margins(similarity) if margin is None else np.asarray(margin, dtype=np.float64)
            logits = logits + (margin - self.margin_mean) / self.margin_scale * self.margin_weight
        return 1 / (1 + np.exp(-np.clip(logits, -50, 50)))

    def relevance(self, pool: Sequence[str], signals: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """Each candidate's probability; a candidate without a ``visual`` value counts as cosine 0."""
        visual = signals.get(v.VISUAL, {})
        probability = self.probability(np.array([visual.get(pk, 0.0) for pk in pool]))
        return {pk: float(probability[row]) for row, pk in enumerate(pool)}

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "input": v.VISUAL,
            "weight": self.weight,
            "bias": self.bias,
            "mean": self.mean,
            "scale": self.scale,
        }
        if self.margin_weight:
            found["margin"] = {"weight": self.margin_weight, "mean": self.margin_mean, "scale": self.margin_scale}
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PhotoCalibration | None:
        """The calibration, or None (none stored, or one over another input)."""
        if not data or data.get("input") != v.VISUAL:
            return None
        margin = data.get("margin") or {}
        return cls(
            float(data["weight"]),
            float(data["bias"]),
            float(data["mean"]),
            float(data["scale"]),
            float(margin.get("weight", 0.0)),
            float(margin.get("mean", 0.0)),
            float(margin.get("scale", 1.0)),
        )


def margins(similarity: np.ndarray) -> np.ndarray:
    """Each candidate's similarity minus the best similarity of the *other* candidates (one query's);
    0 for a lone candidate."""
    similarity = np.asarray(similarity, dtype=np.float64)
    if len(similarity) < 2:
        return np.zeros(len(similarity))
    order = np.argsort(-similarity, kind="stable")
    best, second = similarity[order[0]], similarity[order[1]]
    others = np.full(len(similarity), best)
    others[order[0]] = second
    return similarity - others


@dataclass
class PhotoDomain:
    """Whether a query photo shows the kind of thing the catalogue sells, from the encoder's classifier.

    ``mixture`` is the mean class distribution of the catalogue's photos; a photo's *support* is the log
    of the probability that it and a random catalogue photo get the same class
    (``log sum_c p(c) mixture(c)``): high for photos of the kinds the catalogue shows, whatever the
    backdrop or framing, low for a plate or a lamp in a clothes shop. ``cut`` is what ``mmsearch_train``
    found all but a few of the catalogue's own photos above, their products' kind counted only from the
    *other* products (``learning.photo_domain``). Below it, no result is relevant.
    """

    mixture: np.ndarray
    cut: float

    def support(self, classes: np.ndarray) -> float:
        return float(np.log(max(float(np.asarray(classes, dtype=np.float64) @ self.mixture), 1e-300)))

    def sells(self, classes: np.ndarray) -> bool:
        return self.support(classes) >= self.cut

    def to_json(self) -> dict[str, Any]:
        return {"mixture": [float(f"{value:.4g}") for value in self.mixture], "cut": self.cut}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PhotoDomain | None:
        """The domain, or None (none stored)."""
        if not data or not data.get("mixture"):
            return None
        return cls(np.asarray(data["mixture"], dtype=np.float64), float(data["cut"]))


#: a result at least this likely relevant is called a likely match, whatever the cuts
EVEN_ODDS = 0.5


def likely_match(relevance: float | None, exact: float | None) -> bool:
    """Whether one result is called a likely match: at least even odds, or at least the ``exact`` cut
    (where a top result is the one asked for 90% of the time: the photo calibration's can be under even
    odds, and a page whose ``match`` is ``exact`` must not call its top result merely similar)."""
    if relevance is None:
        return False
    return relevance >= EVEN_ODDS or (exact is not None and relevance >= exact)


def match_summary(relevances: Sequence[float | None], exact: float | None, related: float | None) -> str | None:
    """``exact`` when the top result is at least ``exact`` relevant, ``related`` when a result is at
    least ``related`` relevant, ``none`` when no result passes (or there are none); ``None`` when the
    top result's relevance is unknown (nothing calibrated for this query)."""
    if not relevances:
        return NONE
    top = relevances[0]
    if top is None:
        return None
    if exact is not None and top >= exact:
        return EXACT
    known = [value for value in relevances if value is not None]
    if related is None or any(value >= related for value in known):
        return RELATED
    return NONE
