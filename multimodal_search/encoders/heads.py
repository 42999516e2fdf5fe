"""Trained projection heads: visual features -> shared text space.

A head maps the encoder's L2-normalised visual ``features`` (the same vectors
that are stored for photo-to-photo search) into the text space, so it can be
trained from stored features without running the CNN again.

Head files are plain ``torch.save`` dicts::

    {"version": str, "state_dict": {...}, "config": {"in_dim": ..., ...}}
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HEAD_FORMAT_KEYS = ("version", "state_dict", "config")


class ProjectionHead(nn.Module):
    """Small MLP (``in_dim -> hidden_dim -> out_dim``, GELU) with unit-norm output.

    Args:
        in_dim: size of the visual features (1280 for EfficientNet-Lite0).
        hidden_dim: hidden layer width.
        out_dim: size of the shared text space (384 for MiniLM).
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


def save_head(
    path: str | os.PathLike[str],
    head: ProjectionHead,
    version: str,
    config: dict[str, Any] | None = None,
) -> None:
    """Save ``head`` with its version and config.

    Args:
        path: target file; parent folders are created.
        head: the trained head.
        version: short identifier that ends up in the encoder's ``model_id``.
        config: extra metadata (training data, epochs...). The head's own
            constructor arguments are added under the same keys as
            ``ProjectionHead.config()``.
    """
    version = str(version)
    if not version or "/" in version:
        raise ValueError(f"Head version must be a non-empty string without '/': {version!r}")
    merged = dict(config or {})
    merged.update(head.config())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state_dict = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    torch.save({"version": version, "state_dict": state_dict, "config": merged}, path)


def load_head(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[ProjectionHead, str, dict[str, Any]]:
    """Load a head saved by :func:`save_head`.

    Args:
        path: the head file.
        map_location: device to load the tensors on.

    Returns:
        ``(head in eval mode, version, config)``.

    Raises:
        ValueError: when the file is not a head file.
    """
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or any(k not in payload for k in HEAD_FORMAT_KEYS):
        raise ValueError(f"{path} is not a projection head file (keys {HEAD_FORMAT_KEYS}).")
    config = dict(payload["config"])
    head = ProjectionHead(
        in_dim=int(config.get("in_dim", 1280)),
        hidden_dim=int(config.get("hidden_dim", 512)),
        out_dim=int(config.get("out_dim", 384)),
        dropout=float(config.get("dropout", 0.0)),
    )
    head.load_state_dict(payload["state_dict"], strict=True)
    head.eval()
    return head, str(payload["version"]), config
