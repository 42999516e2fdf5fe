"""The small models mmsearch_train fits: full-batch gradient descent on standardised features (numpy only).

Each returns ``(weights, bias, mean, scale)``: the layer's parameters and the per-column standardisation
its inputs need at inference (see ``ranking.attributes.Classifier`` and ``ranking.reranker.Reranker``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from multimodal_search.ranking.attributes import Classifier

MIN_PHOTOS_PER_CLASS = 4


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z-scored x, column means, column scales; 1 where a column barely varies)."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.where(std > 1e-9, std, 1.0)
    return (x - mean) / scale, mean, scale


def fit_softmax(
    x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 1e-2, epochs: int = 300, lr: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def fit_sigmoid(
    x: np.ndarray,
    y: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    l2: float = 1e-2,
    epochs: int = 300,
    lr: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def fit_probability(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """One logistic layer from ``x`` (n, d) to yes/no ``y`` (n,), every row weighted alike, so the outputs
    keep the base rate (a calibrated probability, unlike :func:`fit_sigmoid`'s balanced default).

    Returns:
        ``(weights (d,), bias, mean, scale)`` for standardised inputs.
    """
    n = len(y)
    weights, bias, mean, scale = fit_sigmoid(
        x, np.asarray(y, dtype=np.float64)[:, None], sample_weight=np.full((n, 1), 1 / n), epochs=2000
    )
    return weights[:, 0], float(bias[0]), mean, scale


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


def fit_logistic(
    x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, epochs: int = 400, lr: float = 0.5
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Class-balanced logistic regression by full-batch gradient descent on standardised features.

    ``y`` may hold graded targets in [0, 1] (cross-entropy with soft labels); exact matches
    (``y == 1``) and all other rows get equal total weight.
    """
    positives = max(float((y == 1).sum()), 1.0)
    negatives = max(float((y < 1).sum()), 1.0)
    sample_weight = np.where(y == 1, 0.5 / positives, 0.5 / negatives)[:, None]
    weights, bias, mean, scale = fit_sigmoid(x, y[:, None], sample_weight=sample_weight, l2=l2, epochs=epochs, lr=lr)
    return weights[:, 0], float(bias[0]), mean, scale
