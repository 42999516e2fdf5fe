"""The training set of the photo heads: each catalogue photo as backbone features of several views.

Each photo runs through the CNN as is, mirrored and as a few random crops of the product (close-up
stand-ins), and gets its colour histogram. These are cached on disk by file digest, so re-training
skips the CNN. (Stored ``ImageEmbedding.feature_vector`` rows are not reused: they hold the
flip-averaged, colour-extended or projected features, not the per-view backbone features the heads
take, and crops need the CNN anyway.)
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from multimodal_search.adapters import BaseProductAdapter, ImageRef
from multimodal_search.encoders.effnet import IMAGENET_CLASSES
from multimodal_search.encoders.features import COLOUR_RECIPE, colour_descriptor, colour_dimensions, foreground_box
from multimodal_search.encoders.heads import Progress
from multimodal_search.encoders.packaged import BACKBONE_DIMENSIONS, PackagedEncoder
from multimodal_search.learning.data import TrainingError, is_held_out
from multimodal_search.learning.labels import Label
from multimodal_search.ranking.attributes import category_leaf, normal_value
from multimodal_search.ranking.vocabulary import CATEGORY, FIELD_GROUP

logger = logging.getLogger(__name__)

CROPS_PER_PHOTO = 3
VIEW_RECIPE = "v3"  # bump when photo_views changes what it computes


@dataclass
class CatalogueItem:
    key: str
    text: str
    images: list[ImageRef]
    #: the product's category leaf (stated, else its training label's), "" when unknown
    kind: str = ""


@dataclass
class TrainingSet:
    """Photos of the training products as backbone views, and the products' texts.

    Attributes:
        items: the products, in pk order.
        views: float32 (V, P, 1280) unit rows; view 0 is the photo, 1 its
            mirror image, 2.. random crops.
        colours: float32 (P, C) unit colour descriptors of the photos.
        classes: float32 (P, K) the photos' ImageNet class probabilities (photo and mirror averaged).
        photo_item: (P,) index into ``items`` of each photo.
        photo_digests: (P,) sha1 of each photo file.
        failed: photos that could not be read.
    """

    items: list[CatalogueItem]
    views: np.ndarray
    colours: np.ndarray
    classes: np.ndarray
    photo_item: np.ndarray
    photo_digests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def collect_items(
    adapter: BaseProductAdapter, holdout: Collection[str] = frozenset(), labels: Mapping[str, Label] | None = None
) -> tuple[list[CatalogueItem], int]:
    """Searchable products that are not held out, with their text and photos.

    Each product is captioned with the adapter's short title line (name and key
    facts), plus its training label's facts (see ``learning.labels``).

    Returns:
        ``(items in pk order, number held out)``.
    """
    items, held_out = [], 0
    for product in adapter.get_queryset().order_by("pk"):
        sku = str(adapter.to_result(product).get("sku", product.pk))
        if holdout and is_held_out(sku, adapter.get_fields(product).get(FIELD_GROUP), holdout):
            held_out += 1
            continue
        # short captions: the head learns to place photos where short shopper queries land
        text = adapter.get_title(product)
        label = (labels or {}).get(sku)
        kind = category_leaf(adapter.get_categories(product)) or normal_value(CATEGORY, label.category if label else "")
        items.append(
            CatalogueItem(
                str(product.pk), label.caption(text) if label else text, adapter.get_images(product), kind or ""
            )
        )
    return items, held_out


def file_digest(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def random_crops(image: Image.Image, count: int, rng: np.random.RandomState) -> list[Image.Image]:
    """``count`` random close-ups of the product: 8-40% of its bounding box, half of them mirrored."""
    x0, y0, x1, y1 = foreground_box(image)
    width, height = x1 - x0, y1 - y0
    side = float(np.sqrt(width * height))
    crops = []
    for _ in range(count):
        scale, aspect = np.sqrt(rng.uniform(0.08, 0.4)), np.exp(rng.uniform(-0.3, 0.3))
        w = int(min(width, max(16, scale * side * aspect)))
        h = int(min(height, max(16, scale * side / aspect)))
        left, top = rng.randint(x0, x1 - w + 1), rng.randint(y0, y1 - h + 1)
        crop = image.crop((left, top, left + w, top + h))
        crops.append(ImageOps.mirror(crop) if rng.rand() < 0.5 else crop)
    return crops


def photo_views(
    encoder: Any,
    paths: list[str],
    digests: list[str],
    *,
    crops: int = CROPS_PER_PHOTO,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    batch: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Backbone features of each photo, its mirror image and ``crops`` random crops, its colours and classes.

    Crops are seeded by the file digest, so a photo's views (and the cache
    entry ``<digest>-<recipe>.npz``) are the same on every run.

    Args:
        encoder: a ``PackagedEncoder`` (uses ``backbone_features``).
        paths: photo files.
        digests: their sha1 (see :func:`file_digest`).
        crops: random crops per photo.
        cache_dir: folder for cached views (None: no cache).
        progress: called with the number of photos done since the last call.

    Returns:
        ``(views float32 (2 + crops, len(paths), 1280), colour descriptors (len(paths), C),
        ImageNet class probabilities (len(paths), K), indices of unreadable photos)``.
    """
    if not isinstance(encoder, PackagedEncoder):
        raise TrainingError(f"photo views need a PackagedEncoder, not {type(encoder).__name__}")
    recipe = f"{encoder.preprocess}-c{crops}-{VIEW_RECIPE}-{COLOUR_RECIPE}"
    cache = Path(cache_dir) if cache_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    count = 2 + crops
    views = np.zeros((count, len(paths), BACKBONE_DIMENSIONS), dtype=np.float32)
    colours = np.zeros((len(paths), colour_dimensions()), dtype=np.float32)
    classes = np.zeros((len(paths), IMAGENET_CLASSES), dtype=np.float32)
    failed: list[int] = []
    todo: list[int] = []
    for index, digest in enumerate(digests):
        cached = cache / f"{digest}-{recipe}.npz" if cache is not None else None
        if cached is not None and cached.exists():
            try:
                with np.load(cached) as entry:
                    views[:, index] = entry["views"].astype(np.float32)
                    colours[index] = entry["colour"].astype(np.float32)
                    classes[index] = entry["classes"].astype(np.float32)
                continue
            except (OSError, ValueError, KeyError):
                pass
        todo.append(index)
    if progress and len(paths) - len(todo):
        progress(len(paths) - len(todo))
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        photos, owners, crop_images = [], [], []
        for index in chunk:
            try:
                image = ImageRef(key="", path=paths[index]).open()
            except Exception as exc:  # unreadable photo: train on the rest
                logger.warning("cannot read photo %s: %s", paths[index], exc)
                failed.append(index)
                continue
            rng = np.random.RandomState(int(digests[index][:8], 16))
            photos.append(image)
            owners.append(index)
            crop_images.extend(random_crops(image, crops, rng))
        if photos:
            plain, photo_classes = encoder.backbone_views(photos, flip=True)  # (2n, 1280), (n, K)
            cropped = encoder.backbone_features(crop_images).reshape(len(photos), crops, -1)
            for row, index in enumerate(owners):
                mirrored = len(photos) + row
                stacked = np.concatenate([plain[row : row + 1], plain[mirrored : mirrored + 1], cropped[row]])
                views[:, index] = stacked
                colours[index] = colour_descriptor(photos[row])
                classes[index] = photo_classes[row]
                if cache is not None:
                    np.savez(
                        cache / f"{digests[index]}-{recipe}.npz",
                        views=stacked.astype(np.float16),
                        colour=colours[index].astype(np.float16),
                        classes=classes[index].astype(np.float16),
                    )
        if progress:
            progress(len(chunk))
    return views, colours, classes, failed


def build_training_set(
    encoder: Any,
    items: list[CatalogueItem],
    *,
    crops: int = CROPS_PER_PHOTO,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> TrainingSet:
    """Read the items' photos into backbone views (unreadable photos are skipped)."""
    paths, owners, digests, failed = [], [], [], []
    for index, item in enumerate(items):
        for ref in item.images:
            try:
                digests.append(file_digest(ref.path))
            except OSError as exc:
                logger.warning("cannot read photo %s: %s", ref.path, exc)
                failed.append(ref.path)
                continue
            paths.append(ref.path)
            owners.append(index)
    views, colours, classes, unreadable = photo_views(
        encoder, paths, digests, crops=crops, cache_dir=cache_dir, progress=progress
    )
    keep = np.setdiff1d(np.arange(len(paths)), np.array(unreadable, dtype=int))
    failed.extend(paths[i] for i in unreadable)
    return TrainingSet(
        items=items,
        views=views[:, keep],
        colours=colours[keep],
        classes=classes[keep],
        photo_item=np.array(owners, dtype=np.int64)[keep],
        photo_digests=[digests[i] for i in keep],
        failed=failed,
    )
