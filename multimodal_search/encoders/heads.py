"""Trained heads on top of the CNN's pooled features.

Two small MLPs, both trained by ``mmsearch_train`` (see ``multimodal_search.training``):

* the *cross-modal* head maps L2-normalised CNN features into the text space,
  so photos can be found by words;
* the optional *visual* projection maps the same features into a space where
  photos of one product (front, back, close-up) are close, which makes
  photo-to-photo search match a close-up to the product's main photo.

The fitting functions at the end (``train_text_head``, ``train_visual_projection``)
work on arrays of backbone features, so the command and ``bench/photo_retrieval.py``
train exactly the same way.

Head files are plain ``torch.save`` dicts, written atomically::

    {"version": str, "state_dict": {...}, "config": {"in_dim": ..., ...},
     "visual": {"state_dict": {...}, "config": {...}}}      # "visual" optional
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEAD_FORMAT_KEYS = ("version", "state_dict", "config")
DEFAULT_EPOCHS = 60
TEXT_TEMPERATURE = 0.05
VISUAL_TEMPERATURE = 0.05
VISUAL_DIMENSIONS = 256
VISUAL_HIDDEN = 1024
TEXT_HIDDEN = 512
BATCH_SIZE = 256
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4

Progress = Callable[[int], object]


class ProjectionHead(nn.Module):
    """Small MLP (``in_dim -> hidden_dim -> out_dim``, GELU) with unit-norm output.

    Args:
        in_dim: size of the visual features (1280 for EfficientNet-Lite0).
        hidden_dim: hidden layer width.
        out_dim: size of the target space (384 for MiniLM's text space).
        dropout: dropout between the layers (training only).
    """

    def __init__(
        self, in_dim: int = 1280, hidden_dim: int = 512, out_dim: int = 384, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.dropout = dropout
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project features (n, in_dim) to unit vectors (n, out_dim)."""
        return F.normalize(self.net(features), dim=-1)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the module."""
        return {
            "in_dim": self.in_dim,
            "hidden_dim": self.hidden_dim,
            "out_dim": self.out_dim,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ProjectionHead":
        return cls(
            in_dim=int(config.get("in_dim", 1280)),
            hidden_dim=int(config.get("hidden_dim", 512)),
            out_dim=int(config.get("out_dim", 384)),
            dropout=float(config.get("dropout", 0.0)),
        )


@dataclass
class HeadBundle:
    """What a head file holds: the cross-modal head, the optional visual projection, metadata."""

    head: ProjectionHead
    version: str
    config: dict[str, Any] = field(default_factory=dict)
    visual: ProjectionHead | None = None

    def to(self, device: str | torch.device) -> "HeadBundle":
        self.head.to(device)
        if self.visual is not None:
            self.visual.to(device)
        return self


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def save_head(
    path: str | os.PathLike[str],
    head: ProjectionHead,
    version: str,
    config: dict[str, Any] | None = None,
    visual: ProjectionHead | None = None,
) -> None:
    """Save ``head`` (and ``visual``) with a version and config, atomically.

    The file is written next to ``path`` and renamed over it, so an encoder
    that watches ``path`` never reads a half-written file.

    Args:
        path: target file; parent folders are created.
        head: the trained cross-modal head.
        version: short identifier that ends up in the encoder's ``model_id``.
        config: extra metadata (training data, epochs...). The head's own
            constructor arguments are added under the same keys as
            ``ProjectionHead.config()``.
        visual: optional trained visual projection (photo-to-photo space).
    """
    version = str(version)
    if not version or "/" in version:
        raise ValueError(f"Head version must be a non-empty string without '/': {version!r}")
    merged = dict(config or {})
    merged.update(head.config())
    payload: dict[str, Any] = {"version": version, "state_dict": _state(head), "config": merged}
    if visual is not None:
        payload["visual"] = {"state_dict": _state(visual), "config": visual.config()}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".head-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load_bundle(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> HeadBundle:
    """Load everything a head file holds.

    Raises:
        ValueError: when the file is not a head file.
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated, not a torch file, or unsafe pickle content
        raise ValueError(f"{path} is not a readable head file: {exc}") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in HEAD_FORMAT_KEYS):
        raise ValueError(f"{path} is not a projection head file (keys {HEAD_FORMAT_KEYS}).")
    config = dict(payload["config"])
    head = ProjectionHead.from_config(config)
    head.load_state_dict(payload["state_dict"], strict=True)
    head.eval()
    visual = None
    if payload.get("visual"):
        visual = ProjectionHead.from_config(dict(payload["visual"]["config"]))
        visual.load_state_dict(payload["visual"]["state_dict"], strict=True)
        visual.eval()
    return HeadBundle(head=head, version=str(payload["version"]), config=config, visual=visual)


def load_head(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[ProjectionHead, str, dict[str, Any]]:
    """Load the cross-modal head saved by :func:`save_head`.

    Args:
        path: the head file.
        map_location: device to load the tensors on.

    Returns:
        ``(head in eval mode, version, config)``.

    Raises:
        ValueError: when the file is not a head file.
    """
    bundle = load_bundle(path, map_location=map_location)
    return bundle.head, bundle.version, bundle.config


# ------------------------------------------------------------------ fitting


def _multi_positive_loss(logits: torch.Tensor, labels: torch.Tensor, column_labels: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every same-label pair is a positive."""
    same = (labels[:, None] == column_labels[None]).float()
    rows = -(same / same.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    cols = -(same.T / same.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (rows + cols) / 2


def _item_starts(photo_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(photo_item, kind="stable")
    counts = np.bincount(photo_item)
    return order, counts


def _fit(
    net: torch.nn.Module,
    n_photos: int,
    step: Callable[[np.ndarray, np.random.RandomState], torch.Tensor],
    *,
    epochs: int,
    seed: int,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> list[float]:
    optimizer = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    per_epoch = max(1, int(np.ceil(n_photos / batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=epochs * per_epoch)
    rng = np.random.RandomState(seed)
    losses = []
    net.train()
    for _ in range(epochs):
        order = rng.permutation(n_photos)
        total = 0.0
        for start in range(0, n_photos, batch_size):
            loss = step(order[start : start + batch_size], rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        losses.append(total / per_epoch)
        if progress:
            progress(1)
    net.eval()
    return losses


def train_visual_projection(
    views: np.ndarray,
    photo_item: np.ndarray,
    colours: np.ndarray | None = None,
    *,
    colour_weight: float = 1.0,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    out_dim: int = VISUAL_DIMENSIONS,
    hidden_dim: int = VISUAL_HIDDEN,
    temperature: float = VISUAL_TEMPERATURE,
    progress: Progress | None = None,
) -> tuple[ProjectionHead, list[float]]:
    """Learn a projection in which views of one product are close.

    Each step pairs a random view of a photo with a random view of a random
    photo of the same product (possibly itself); all same-product pairs in the
    batch are positives, other products (colour variants included) negatives.

    With ``colours``, the loss scores pairs the way search will, by the cosine
    of ``[projection, colour_weight * colour]``: the projection learns what the
    colour histogram does not already tell apart. (A crop is given its photo's
    colours.)

    Args:
        views: (V, P, D) unit backbone features.
        photo_item: (P,) product index per photo.
        colours: (P, C) unit colour descriptors, or None.
        colour_weight: the encoder's ``colour_weight``.

    Returns:
        ``(projection in eval mode, mean loss per epoch)``.
    """
    torch.manual_seed(seed)
    n_views, n_photos, dim = views.shape
    net = ProjectionHead(in_dim=dim, hidden_dim=hidden_dim, out_dim=out_dim)
    tensor = torch.from_numpy(np.ascontiguousarray(views, dtype=np.float32))
    order, counts = _item_starts(photo_item)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    labels_all = torch.from_numpy(photo_item.astype(np.int64))
    colour = None
    if colours is not None and colour_weight > 0:
        colour = torch.from_numpy(np.ascontiguousarray(colours, dtype=np.float32)) * float(colour_weight)

    def embed(views_index: np.ndarray, photos: np.ndarray) -> torch.Tensor:
        out = net(tensor[views_index, photos])
        if colour is None:
            return out
        return torch.nn.functional.normalize(torch.cat([out, colour[photos]], dim=1), dim=-1)

    def step(batch: np.ndarray, rng: np.random.RandomState) -> torch.Tensor:
        items = photo_item[batch]
        partners = order[starts[items] + (rng.random_sample(len(batch)) * counts[items]).astype(int)]
        first = embed(rng.randint(n_views, size=len(batch)), batch)
        second = embed(rng.randint(n_views, size=len(batch)), partners)
        labels = labels_all[batch]
        return _multi_positive_loss(first @ second.T / temperature, labels, labels)

    losses = _fit(net, n_photos, step, epochs=epochs, seed=seed, progress=progress)
    return net, losses


def train_text_head(
    views: np.ndarray,
    photo_item: np.ndarray,
    text_vectors: np.ndarray,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    hidden_dim: int = TEXT_HIDDEN,
    temperature: float = TEXT_TEMPERATURE,
    text_views: int = 2,
    progress: Progress | None = None,
) -> tuple[ProjectionHead, list[float]]:
    """Learn the cross-modal head: a product's photos against its own text.

    Args:
        views: (V, P, D) unit backbone features; the first ``text_views`` views
            (photo and mirror image) are used.
        photo_item: (P,) product index per photo.
        text_vectors: (items, text dims) unit text vectors.

    Returns:
        ``(head in eval mode, mean loss per epoch)``.
    """
    torch.manual_seed(seed)
    n_views, n_photos, dim = views.shape
    use = max(1, min(text_views, n_views))
    net = ProjectionHead(in_dim=dim, hidden_dim=hidden_dim, out_dim=text_vectors.shape[1])
    tensor = torch.from_numpy(np.ascontiguousarray(views[:use], dtype=np.float32))
    texts = torch.from_numpy(np.ascontiguousarray(text_vectors, dtype=np.float32))
    labels_all = torch.from_numpy(photo_item.astype(np.int64))

    def step(batch: np.ndarray, rng: np.random.RandomState) -> torch.Tensor:
        labels = labels_all[batch]
        columns = torch.unique(labels)
        images = net(tensor[rng.randint(use, size=len(batch)), batch])
        return _multi_positive_loss(images @ texts[columns].T / temperature, labels, columns)

    losses = _fit(net, n_photos, step, epochs=epochs, seed=seed, progress=progress)
    return net, losses


def project(net: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """Run a trained head on (n, D) features."""
    with torch.inference_mode():
        return net(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()


def text_to_image_recall(
    text_vectors: np.ndarray, photo_vectors: np.ndarray, photo_item: np.ndarray, k: int = 10,
    queries: Iterable[int] | None = None,
) -> float:
    """Share of products whose own text ranks them in the top ``k`` (max over a product's photos).

    Ties are broken fairly (expected value over random orders).
    """
    n_items = len(text_vectors)
    scores = text_vectors @ photo_vectors.T
    per_item = np.full((n_items, n_items), -np.inf, dtype=np.float32)
    for item in np.unique(photo_item):
        per_item[:, item] = scores[:, photo_item == item].max(axis=1)
    rows = np.array(sorted(set(queries) if queries is not None else set(np.unique(photo_item))), dtype=int)
    if rows.size == 0:
        return 0.0
    truth = per_item[rows, rows]
    greater = (per_item[rows] > truth[:, None]).sum(1)
    equal = (per_item[rows] == truth[:, None]).sum(1) - 1
    return float(np.clip((k - greater) / (equal + 1), 0, 1).mean())


def leave_one_out_recall(
    features: np.ndarray, photo_item: np.ndarray, queries: np.ndarray, ks: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """Photo -> product R@k: each query photo against every *other* photo, products by their best photo.

    Ties are broken fairly (expected value over random orders).

    Args:
        features: (P, D) unit photo vectors.
        photo_item: (P,) product index per photo.
        queries: indices of the query photos.
    """
    if len(queries) == 0:
        return {k: 0.0 for k in ks}
    scores = features[queries] @ features.T
    scores[np.arange(len(queries)), queries] = -np.inf
    n_items = int(photo_item.max()) + 1
    per_item = np.full((len(queries), n_items), -np.inf, dtype=np.float32)
    for item in range(n_items):
        columns = photo_item == item
        if columns.any():
            per_item[:, item] = scores[:, columns].max(axis=1)
    truth = per_item[np.arange(len(queries)), photo_item[queries]]
    greater = (per_item > truth[:, None]).sum(1)
    equal = (per_item == truth[:, None]).sum(1) - 1
    return {k: float(np.clip((k - greater) / (equal + 1), 0, 1).mean()) for k in ks}
