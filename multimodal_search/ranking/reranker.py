"""The learned relevance layer: a logistic layer over fused (query, product) features.

Features are the per-modality signals of a candidate (text, photo-in-text-space,
keywords, colour), plus each one standardised within the query's candidate
pool, so the layer learns how much each modality should count and how sharp
a lead must be to matter. It re-scores the candidates of text queries.

It is trained by ``mmsearch_train`` without any evaluation query: pseudo-queries
are built from the catalogue itself (a product's head noun from its title, plus
the colour its photos show), and a candidate counts as relevant when its title
has that noun and its photos show that colour. Being linear, each score splits
exactly into per-modality shares for explanations. Its artefact also holds the calibrations that
turn scores into relevance probabilities, and the cuts chosen for them (``ranking.calibration``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multimodal_search import artefacts
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.calibration import Calibration, calibration_inputs

#: the artefact name (``artefacts``) of the trained re-ranker
ARTEFACT = "reranker"
SIGNALS = (v.TEXT, v.TITLE, v.IMAGE, v.LEXICAL, v.COLOUR, v.NEIGHBOURS, v.GENDER, v.CATEGORY, v.MATERIAL)
FEATURES = (
    "text",
    "title",
    "image",
    "lexical",
    "colour",
    "neighbours",
    "gender",
    "category",
    "material",
    "text_z",
    "title_z",
    "image_z",
    "lexical_z",
    "colour_z",
    "neighbours_z",
    "gender_z",
    "category_z",
    "material_z",
    "text_top",
    "title_top",
    "image_top",
)
GROUPS = {
    "text": "text",
    "text_z": "text",
    "text_top": "text",
    "title": "title",
    "title_z": "title",
    "title_top": "title",
    "image": "image",
    "image_z": "image",
    "image_top": "image",
    "lexical": "lexical",
    "lexical_z": "lexical",
    "colour": "colour",
    "colour_z": "colour",
    "neighbours": "neighbours",
    "neighbours_z": "neighbours",
    "gender": "gender",
    "gender_z": "gender",
    "category": "category",
    "category_z": "category",
    "material": "material",
    "material_z": "material",
}


def feature_matrix(pool: list[str], signals: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Features (len(pool), len(FEATURES)) of each candidate; absent signals are 0."""
    columns: dict[str, np.ndarray] = {}
    for name in SIGNALS:
        values = signals.get(name, {})
        raw = np.array([values.get(pk, 0.0) for pk in pool], dtype=np.float64)
        if name == v.LEXICAL and raw.max(initial=0) > 0:
            raw = raw / raw.max()
        columns[name] = raw
        std = raw.std()
        columns[f"{name}_z"] = (raw - raw.mean()) / std if std > 1e-9 else np.zeros_like(raw)
    for name in (v.TEXT, v.TITLE, v.IMAGE):
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
    #: calibration name (``ranking.calibration.INPUTS``) -> the fitted calibration
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    #: ``related`` / ``exact`` -> the relevance cut chosen on pseudo-queries
    cuts: dict[str, float] = field(default_factory=dict)

    def decision(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def score(
        self, pool: list[str], signals: Mapping[str, Mapping[str, float]], features: np.ndarray | None = None
    ) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, float]]:
        """Relevance of each candidate and, for explanations, each modality's part of it.

        Args:
            features: ``feature_matrix(pool, signals)``, when the caller has it.

        Returns:
            (scores, parts by modality, unit weights by modality)
        """
        x = feature_matrix(pool, signals) if features is None else features
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

    def relevance(
        self,
        pool: list[str],
        signals: Mapping[str, Mapping[str, float]],
        calibration: str,
        features: np.ndarray | None = None,
    ) -> dict[str, float] | None:
        """Calibrated probability that each candidate is relevant, or None when that calibration was not fitted.

        Args:
            pool: the query's candidates (the re-ranker's inputs are standardised within them).
            signals: their signals.
            calibration: ``"rerank"`` (the re-ranker's logit and absolute similarities), ``"broad"`` (its
                logit and the facets asked, for a query of facets alone) or ``"signals"``.
            features: ``feature_matrix(pool, signals)``, when the caller has it (:meth:`score` used it).
        """
        model = self.calibrations.get(calibration)
        if model is None:
            return None
        logits = None
        if "logit" in model.inputs:
            logits = self.decision(feature_matrix(pool, signals) if features is None else features)
        probability = model.probability(calibration_inputs(calibration, pool, signals, logits, inputs=model.inputs))
        return {pk: float(probability[row]) for row, pk in enumerate(pool)}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "features": list(FEATURES),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "meta": self.meta,
            "calibrations": {name: model.to_json() for name, model in self.calibrations.items()},
            "cuts": self.cuts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reranker:
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("re-ranker was trained on other features; run mmsearch_train again")
        return cls(
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=float(data["bias"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            version=str(data["version"]),
            meta=dict(data.get("meta", {})),
            calibrations={
                name: model
                for name, model in (
                    (name, Calibration.from_json(name, value)) for name, value in data.get("calibrations", {}).items()
                )
                if model is not None
            },
            cuts={name: float(value) for name, value in data.get("cuts", {}).items()},
        )


def get_reranker(model_id: str) -> Reranker | None:
    """The re-ranker trained for this encoder version (reloaded when its file changes), or None."""
    return artefacts.load(ARTEFACT, model_id, Reranker.from_json)
