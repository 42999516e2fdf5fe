"""Trained heads on top of the CNN's pooled features: the modules and their file format (inference only).

Two small MLPs, both trained by ``mmsearch_train`` (see ``multimodal_search.learning.heads``):

* the *cross-modal* head maps L2-normalised CNN features into the text space,
  so photos can be found by words;
* the optional *visual* projection maps the same features into a space where
  photos of one product (front, back, close-up) are close, which makes
  photo-to-photo search match a close-up to the product's main photo.

Head files are plain ``torch.save`` dicts, written atomically::

    {"version": str, "state_dict": {...}, "config": {"in_dim": ..., ...},
     "visual": {"state_dict": {...}, "config": {...}}}      # "visual" optional
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEAD_FORMAT_KEYS = ("version", "state_dict", "config")

Progress = Callable[[int], object]


class ProjectionHead(nn.Module):
    """Small MLP (``in_dim -> hidden_dim -> out_dim``, GELU) with unit-norm output.

    Args:
        in_dim: size of the visual features (1280 for EfficientNet-Lite0).
        hidden_dim: hidden layer width.
        out_dim: size of the target space (384 for MiniLM's text space).
        dropout: dropout between the layers (training only).
    """

    def __init__(self, in_dim: int = 1280, hidden_dim: int = 512, out_dim: int = 384, dropout: float = 0.0) -> None:
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
    def from_config(cls, config: dict[str, Any]) -> ProjectionHead:
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

    def to(self, device: str | torch.device) -> HeadBundle:
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


def project(net: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """Run a trained head on (n, D) features."""
    with torch.inference_mode():
        return net(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()
