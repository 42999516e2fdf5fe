"""CLIP encoder (transformers): text and photos in one learned space."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multimodal_search.encoders.base import BaseEncoder, Lazy, l2_normalize, whole_words
from multimodal_search.encoders.images import to_rgb

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "openai/clip-vit-base-patch32"


def _features_tensor(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4 and a model output
    (projected embeddings in ``pooler_output``) in transformers 5."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"Unexpected CLIP feature output: {type(output).__name__}")
    return pooled


class ClipEncoder(BaseEncoder):
    """A transformers ``CLIPModel``: shared and visual vectors are the same image embedding.

    Weights load lazily on the first encode; ``dimensions`` only reads the
    (small) model config.

    Args:
        device: torch device; None picks CUDA when present.
        model: local folder or hub id (default ``openai/clip-vit-base-patch32``).
            Offline, a hub id only works when it is in the local cache.
        dimensions: embedding size, to avoid reading the config at all.
        batch_size: texts or photos per forward pass.
        max_length: token limit (capped by the text tower's positions).
    """

    def __init__(
        self,
        device: str | None = None,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        dimensions: int | None = None,
        batch_size: int = 32,
        max_length: int = 77,
        **options: Any,
    ) -> None:
        super().__init__(device=device, **options)
        self.model_name = str(model)
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self._dimensions = int(dimensions) if dimensions else None
        self._config: Any = None
        self._weights: Lazy[tuple[Any, Any]] = Lazy(self._load)
        self._tokenizer_lock = threading.Lock()
        self._known: frozenset[str] | None = None
        name = self.model_name
        if os.path.isdir(name):
            name = os.path.basename(os.path.normpath(os.path.abspath(name)))
        self._model_id = f"clip:{name}"

    @property
    def config(self) -> Any:
        """The model's ``CLIPConfig`` (read once; no weights)."""
        if self._config is None:
            from transformers import AutoConfig

            self._config = AutoConfig.from_pretrained(self.model_name)
        return self._config

    @property
    def dimensions(self) -> int:  # type: ignore[override]
        """Projection size of the model (``config.projection_dim``)."""
        if self._dimensions is None:
            config = self.config
            dim = getattr(config, "projection_dim", None)
            if dim is None:
                dim = getattr(getattr(config, "text_config", None), "projection_dim", None)
            if dim is None:
                raise ValueError(f"Cannot read projection_dim from {self.model_name}'s config.")
            self._dimensions = int(dim)
        return self._dimensions

    @property
    def feature_dimensions(self) -> int:  # type: ignore[override]
        """Same as ``dimensions``: the image embedding serves both purposes."""
        return self.dimensions

    @property
    def model_id(self) -> str:  # type: ignore[override]
        """``clip:<folder basename>`` for a local folder, ``clip:<hub id>`` otherwise (fixed at construction)."""
        return self._model_id

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoProcessor, CLIPModel

        processor = AutoProcessor.from_pretrained(self.model_name)
        # transformers decorates PreTrainedModel.to with functools.wraps, so its stubs lose the bound self
        model = CLIPModel.from_pretrained(self.model_name).to(self.device).eval()  # type: ignore[arg-type]
        self._config = model.config
        return processor, model

    def known_words(self) -> frozenset[str]:
        """The tokenizer's whole words (``encoders.base.whole_words``: CLIP's own ``"dress</w>"``)."""
        if self._known is None:
            processor, _ = self._weights.get()
            self._known = whole_words(processor.tokenizer.get_vocab())
        return self._known

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Encode texts with the text tower.

        Args:
            texts: product texts or queries.

        Returns:
            float32 array (len(texts), dimensions), unit rows.
        """
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        processor, model = self._weights.get()
        import torch

        positions = getattr(model.config.text_config, "max_position_embeddings", self.max_length)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                with self._tokenizer_lock:
                    batch = processor(
                        text=texts[start : start + self.batch_size],
                        padding=True,
                        truncation=True,
                        max_length=min(self.max_length, int(positions)),
                        return_tensors="pt",
                    )
                batch = {k: v.to(self.device) for k, v in batch.items()}
                out = _features_tensor(model.get_text_features(**batch))
                parts.append(out.float().cpu().numpy())
        return l2_normalize(np.concatenate(parts))

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Encode photos with the vision tower.

        Returns:
            ``(shared, features)``, both the same (n, dimensions) unit rows.
        """
        if not images:
            empty = np.zeros((0, self.dimensions), dtype=np.float32)
            return empty, empty.copy()
        processor, model = self._weights.get()
        import torch

        parts = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = [to_rgb(im) for im in images[start : start + self.batch_size]]
                pixels = processor(images=chunk, return_tensors="pt")["pixel_values"]
                out = _features_tensor(model.get_image_features(pixel_values=pixels.to(self.device)))
                parts.append(out.float().cpu().numpy())
        vectors = l2_normalize(np.concatenate(parts))
        return vectors, vectors.copy()
