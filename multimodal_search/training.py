"""Train the packaged encoder's heads on the catalogue's own photos and texts.

``python manage.py mmsearch_train`` calls :func:`train_projection_head` ->
:func:`train_heads`, which

1. reads every searchable product through the adapter (minus a hold-out list),
2. runs each photo through the CNN as is, mirrored and as a few random crops
   of the product (close-up stand-ins), and takes its colour histogram. These
   are cached on disk by file digest, so re-training skips the CNN. (Stored
   ``ImageEmbedding.feature_vector`` rows are not reused: they hold the
   flip-averaged, colour-extended or projected features, not the per-view
   backbone features the heads take, and crops need the CNN anyway.)
3. trains the *cross-modal* head (backbone features -> MiniLM text space;
   a product's photos against its own text) and, when it proves itself on a
   validation fifth of the products, the *visual* projection (photos and
   crops of one product against each other), both with a symmetric
   multi-positive InfoNCE loss (see ``encoders.heads``),
4. saves both in one versioned head file. The command first indexes the
   catalogue for the new version with a staging encoder, then publishes the
   file; running encoders pick it up within seconds.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from PIL import Image, ImageOps

from multimodal_search.adapters import BaseProductAdapter, ImageRef
from multimodal_search.labels import Label
from multimodal_search.encoders.heads import (  # noqa: F401 (re-exported for the bench)
    DEFAULT_EPOCHS,
    TEXT_TEMPERATURE,
    VISUAL_TEMPERATURE,
    Progress,
    ProjectionHead,
    leave_one_out_recall,
    project,
    text_to_image_recall,
    train_text_head,
    train_visual_projection,
)

logger = logging.getLogger(__name__)

HEAD_FILENAME = "packaged-head.pt"
CROPS_PER_PHOTO = 3
VISUAL_MODES = ("auto", "always", "never")
MIN_VALIDATION_QUERIES = 10
VIEW_RECIPE = "v2"  # bump when photo_views changes what it computes



class TrainingError(ValueError):
    """Nothing to train on, or a bad hold-out file (one line, shown to users)."""


# ----------------------------------------------------------------- catalogue


@dataclass
class CatalogueItem:
    key: str
    text: str
    images: list[ImageRef]


@dataclass
class TrainingSet:
    """Photos of the training products as backbone views, and the products' texts.

    Attributes:
        items: the products, in pk order.
        views: float32 (V, P, 1280) unit rows; view 0 is the photo, 1 its
            mirror image, 2.. random crops.
        colours: float32 (P, C) unit colour descriptors of the photos.
        photo_item: (P,) index into ``items`` of each photo.
        photo_digests: (P,) sha1 of each photo file.
        failed: photos that could not be read.
    """

    items: list[CatalogueItem]
    views: np.ndarray
    colours: np.ndarray
    photo_item: np.ndarray
    photo_digests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def load_holdout(path: str | os.PathLike[str]) -> set[str]:
    """Identifiers (skus or parent skus) to leave out of training.

    The file is JSON: a list of identifiers, ``{"heldout": [...]}``, or a split
    file ``{"parents": {parent_sku: "heldout" | "train"}}``.

    Raises:
        TrainingError: the file is missing, not JSON, or of another shape.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise TrainingError(f"cannot read holdout file {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read holdout file {path}: not valid JSON ({exc})") from None
    if isinstance(data, dict):
        if isinstance(data.get("heldout"), list):
            data = data["heldout"]
        elif isinstance(data.get("parents"), dict):
            data = [key for key, split in data["parents"].items() if split == "heldout"]
    if not isinstance(data, list) or not all(isinstance(x, (str, int)) for x in data):
        raise TrainingError(
            f'holdout file {path}: expected a list of identifiers, {{"heldout": [...]}} '
            f'or {{"parents": {{sku: "heldout"|"train"}}}}'
        )
    return {str(x) for x in data}


def is_held_out(adapter: BaseProductAdapter, product: Any, holdout: set[str]) -> bool:
    """A product is held out when its sku or its group (parent sku) is listed."""
    if not holdout:
        return False
    sku = str(adapter.to_result(product).get("sku", product.pk))
    group = adapter.get_fields(product).get("group")
    return sku in holdout or (group not in (None, "") and str(group) in holdout)


def collect_items(
    adapter: BaseProductAdapter, holdout: set[str] = frozenset(), labels: Mapping[str, Label] | None = None
) -> tuple[list[CatalogueItem], int]:
    """Searchable products that are not held out, with their text and photos.

    Each product is captioned with the adapter's short title line (name and key
    facts), plus its training label's facts (see ``multimodal_search.labels``).

    Returns:
        ``(items in pk order, number held out)``.
    """
    items, held_out = [], 0
    for product in adapter.get_queryset().order_by("pk"):
        if is_held_out(adapter, product, holdout):
            held_out += 1
            continue
        # short captions: the head learns to place photos where short shopper queries land
        text = adapter.get_title(product)
        label = (labels or {}).get(str(adapter.to_result(product).get("sku", product.pk)))
        items.append(CatalogueItem(str(product.pk), label.caption(text) if label else text, adapter.get_images(product)))
    return items, held_out


# --------------------------------------------------------------------- views


def file_digest(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def random_crops(image: Image.Image, count: int, rng: np.random.RandomState) -> list[Image.Image]:
    """``count`` random close-ups of the product: 8-40% of its bounding box, half of them mirrored."""
    from multimodal_search.encoders.features import foreground_box

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
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Backbone features of each photo, its mirror image and ``crops`` random crops, and its colours.

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
        indices of unreadable photos)``.
    """
    from multimodal_search.encoders.features import COLOUR_RECIPE, colour_descriptor, colour_dimensions
    from multimodal_search.encoders.packaged import PackagedEncoder

    if not isinstance(encoder, PackagedEncoder):
        raise TrainingError(f"photo views need a PackagedEncoder, not {type(encoder).__name__}")
    recipe = f"{encoder.preprocess}-c{crops}-{VIEW_RECIPE}-{COLOUR_RECIPE}"
    cache = Path(cache_dir) if cache_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    count = 2 + crops
    views = np.zeros((count, len(paths), 1280), dtype=np.float32)
    colours = np.zeros((len(paths), colour_dimensions()), dtype=np.float32)
    failed: list[int] = []
    todo: list[int] = []
    for index, digest in enumerate(digests):
        cached = cache / f"{digest}-{recipe}.npz" if cache is not None else None
        if cached is not None and cached.exists():
            try:
                with np.load(cached) as entry:
                    views[:, index] = entry["views"].astype(np.float32)
                    colours[index] = entry["colour"].astype(np.float32)
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
            plain = encoder.backbone_features(photos, flip=True)  # (2n, 1280)
            cropped = encoder.backbone_features(crop_images).reshape(len(photos), crops, -1)
            for row, index in enumerate(owners):
                mirrored = len(photos) + row
                stacked = np.concatenate([plain[row : row + 1], plain[mirrored : mirrored + 1], cropped[row]])
                views[:, index] = stacked
                colours[index] = colour_descriptor(photos[row])
                if cache is not None:
                    np.savez(cache / f"{digests[index]}-{recipe}.npz",
                             views=stacked.astype(np.float16), colour=colours[index].astype(np.float16))
        if progress:
            progress(len(chunk))
    return views, colours, failed


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
    views, colours, unreadable = photo_views(
        encoder, paths, digests, crops=crops, cache_dir=cache_dir, progress=progress
    )
    keep = np.setdiff1d(np.arange(len(paths)), np.array(unreadable, dtype=int))
    failed.extend(paths[i] for i in unreadable)
    return TrainingSet(
        items=items,
        views=views[:, keep],
        colours=colours[keep],
        photo_item=np.array(owners, dtype=np.int64)[keep],
        photo_digests=[digests[i] for i in keep],
        failed=failed,
    )


# -------------------------------------------------------- visual projection


def stored_features(views: np.ndarray, colours: np.ndarray, colour_weight: float,
                    projection: ProjectionHead | None = None) -> np.ndarray:
    """What the encoder stores per photo (``features``), from its backbone views and colours."""
    visual = views[0] + views[1] if projection is None else project(projection, views[0]) + project(projection, views[1])
    visual = visual / np.linalg.norm(visual, axis=1, keepdims=True)
    if colour_weight <= 0:
        return visual.astype(np.float32)
    joined = np.concatenate([visual, colour_weight * colours], axis=1)
    return (joined / np.linalg.norm(joined, axis=1, keepdims=True)).astype(np.float32)


def _validation_items(keys: list[str]) -> np.ndarray:
    return np.array([int(hashlib.sha1(key.encode()).hexdigest(), 16) % 5 == 0 for key in keys])


def validate_visual_projection(
    views: np.ndarray, colours: np.ndarray, photo_item: np.ndarray, keys: list[str], *,
    colour_weight: float = 1.0, epochs: int = DEFAULT_EPOCHS, seed: int = 0,
) -> dict[str, Any]:
    """Does a visual projection beat the untrained features on this catalogue?

    A fifth of the products (by a hash of their key) is set aside; a projection
    is trained on the rest, and every non-first photo of a set-aside product
    with several photos asks for its product (leave-one-out, gallery: every
    photo). The projection is worth keeping when R@1 + R@5 is higher with it.
    It usually is when products have several photos (front, back, close-up);
    when they have one photo each, there is nothing to learn views from and
    the projection only blurs the colour and shape features.

    Returns:
        ``{"keep": bool, "queries": n, "baseline": {1: r, 5: r}, "projected": {...}, "reason": str}``.
    """
    aside = _validation_items(keys)[photo_item]
    first = np.zeros(len(photo_item), dtype=bool)
    first[np.unique(photo_item, return_index=True)[1]] = True
    queries = np.flatnonzero(aside & ~first)
    if len(queries) < MIN_VALIDATION_QUERIES:
        return {
            "keep": False, "queries": int(len(queries)),
            "reason": f"only {len(queries)} second photos to validate on (< {MIN_VALIDATION_QUERIES})",
        }
    train = ~aside
    net, _ = train_visual_projection(
        views[:, train], np.unique(photo_item[train], return_inverse=True)[1], colours[train],
        colour_weight=colour_weight, epochs=epochs, seed=seed,
    )
    baseline = leave_one_out_recall(stored_features(views, colours, colour_weight), photo_item, queries)
    projected = leave_one_out_recall(stored_features(views, colours, colour_weight, net), photo_item, queries)
    keep = projected[1] + projected[5] > baseline[1] + baseline[5]
    return {
        "keep": bool(keep), "queries": int(len(queries)), "baseline": baseline, "projected": projected,
        "reason": (
            f"validation R@1/R@5 {projected[1]:.2f}/{projected[5]:.2f} with, "
            f"{baseline[1]:.2f}/{baseline[5]:.2f} without ({len(queries)} photos)"
        ),
    }


# --------------------------------------------------------------------- files


@dataclass
class TrainingResult:
    version: str
    path: str
    archive: str
    products: int
    held_out: int
    photos: int
    pairs: int
    epochs: int
    text_loss: float
    visual_loss: float | None
    train_recall_at_10: float
    visual_note: str
    seconds: float
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        visual = f", visual loss {self.visual_loss:.3f}" if self.visual_loss is not None else ""
        return (
            f"head {self.version}: {self.pairs} (photo, text) pairs from {self.products} products "
            f"({self.held_out} held out), {self.epochs} epochs, final loss {self.text_loss:.3f}{visual}, "
            f"train text->image R@10 {self.train_recall_at_10:.3f}, {self.seconds:.1f} s -> {self.path}; "
            f"visual projection {self.visual_note}"
        )


def head_version(items: list[CatalogueItem], digests: list[str], settings: dict[str, Any]) -> str:
    """``<UTC timestamp>-<hash of the training data and settings>``."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for item in items:
        digest.update(b"\0" + item.key.encode() + b"\0" + item.text.encode())
    for photo in digests:
        digest.update(photo.encode())
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + digest.hexdigest()[:8]


def archive_path(path: str | os.PathLike[str], version: str) -> Path:
    """``packaged-head.pt`` -> ``packaged-head-<version>.pt`` (same folder)."""
    target = Path(path)
    return target.with_name(f"{target.stem}-{version}{target.suffix or '.pt'}")


def publish(archive: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Put a saved version at ``path`` atomically (encoders watching ``path`` switch to it)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(archive, temporary)
    os.replace(temporary, target)


def save_versioned(path: str | os.PathLike[str], head: ProjectionHead, version: str, config: dict[str, Any],
                   visual: ProjectionHead | None, *, publish_now: bool = True) -> str:
    """Write ``packaged-head-<version>.pt`` next to ``path``, then (``publish_now``) put it at ``path``.

    Earlier versions stay in the folder; :func:`publish` one of them to roll back.
    """
    from multimodal_search.encoders.heads import save_head

    archive = archive_path(path, version)
    save_head(archive, head, version=version, config=config, visual=visual)
    if publish_now:
        publish(archive, path)
    return str(archive)


def train_heads(
    encoder: Any,
    adapter: BaseProductAdapter,
    output: str | os.PathLike[str],
    *,
    holdout: set[str] = frozenset(),
    labels: Mapping[str, Label] | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    visual: str = "auto",
    crops: int = CROPS_PER_PHOTO,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str, int], Progress] | None = None,
    publish_now: bool = True,
) -> TrainingResult:
    """Train and save the cross-modal head (and the visual projection) on the catalogue.

    Args:
        encoder: the ``PackagedEncoder`` whose CNN and text model are used.
        adapter: reads the products.
        output: head file to write (older versions are kept beside it).
        holdout: skus or group ids (parent skus) to leave out.
        labels: training labels by sku (captions gain their facts).
        epochs: passes over the photos.
        seed: seed for crops order, initialisation and batches.
        visual: the visual projection for photo-to-photo search: "auto" keeps
            it when it beats the untrained features on a validation fifth
            of the products (see :func:`validate_visual_projection`),
            "always" or "never".
        crops: random crops per photo (augmentation, close-up stand-ins).
        cache_dir: where backbone views are cached (None: no cache).
        progress: ``progress(label, total)`` returns a callback taking increments.
        publish_now: put the new version at ``output`` at once; otherwise only
            ``<output stem>-<version>.pt`` is written (``result.archive``).

    Raises:
        TrainingError: no products, or none with a readable photo.
    """
    started = time.perf_counter()
    if epochs < 1:
        raise TrainingError("epochs must be at least 1")
    if visual not in VISUAL_MODES:
        raise TrainingError(f"visual must be one of {', '.join(VISUAL_MODES)}, not {visual!r}")
    items, held_out = collect_items(adapter, set(holdout), labels)
    if not items:
        extra = f" ({held_out} held out)" if held_out else ""
        raise TrainingError(f"no products to train on{extra}: the adapter's queryset is empty")
    n_photos = sum(len(item.images) for item in items)
    if not n_photos:
        raise TrainingError(f"none of the {len(items)} products has a photo")
    data = build_training_set(
        encoder, items, crops=crops, cache_dir=cache_dir,
        progress=progress("Photos", n_photos) if progress else None,
    )
    if not data.photo_item.size:
        raise TrainingError(f"none of the {n_photos} photos of {len(items)} products could be read")
    text_vectors = encoder.encode_text([item.text for item in items])
    settings = {"epochs": epochs, "seed": seed, "visual": visual, "crops": crops, "recipe": VIEW_RECIPE}
    version = head_version(items, data.photo_digests, settings)
    check = {"keep": visual == "always", "reason": f"visual={visual}"}
    if visual == "auto":
        check = validate_visual_projection(
            data.views, data.colours, data.photo_item, [item.key for item in items],
            colour_weight=encoder.colour_weight, epochs=epochs, seed=seed,
        )
    steps = epochs * (2 if check["keep"] else 1)
    tick = progress("Training", steps) if progress else None
    head, text_losses = train_text_head(data.views, data.photo_item, text_vectors, epochs=epochs, seed=seed, progress=tick)
    projection, visual_losses = (None, [])
    if check["keep"]:
        projection, visual_losses = train_visual_projection(
            data.views, data.photo_item, data.colours, colour_weight=encoder.colour_weight,
            epochs=epochs, seed=seed, progress=tick,
        )
    recall = text_to_image_recall(text_vectors, project(head, data.views[0]), data.photo_item, k=10)
    config = {
        **settings,
        "preprocess": encoder.preprocess,
        "products": len(items),
        "held_out": held_out,
        "photos": int(data.photo_item.size),
        "train_recall_at_10": round(recall, 4),
        "text_temperature": TEXT_TEMPERATURE,
        "visual_temperature": VISUAL_TEMPERATURE,
        "colour_weight": encoder.colour_weight,
        "visual_projection": ("kept: " if check["keep"] else "not used: ") + check["reason"],
    }
    archive = save_versioned(output, head, version, config, projection, publish_now=publish_now)
    return TrainingResult(
        version=version,
        path=str(output),
        archive=archive,
        products=len(items),
        held_out=held_out,
        photos=int(data.photo_item.size),
        pairs=int(data.photo_item.size),
        epochs=epochs,
        text_loss=text_losses[-1],
        visual_loss=visual_losses[-1] if visual_losses else None,
        train_recall_at_10=recall,
        visual_note=config["visual_projection"],
        seconds=time.perf_counter() - started,
        failed=data.failed,
    )


# ------------------------------------------------------------- Django entry


def has_trainable_head(encoder: Any) -> bool:
    from multimodal_search.encoders.packaged import PackagedEncoder

    return isinstance(encoder, PackagedEncoder)


def default_head_path(encoder: Any) -> str:
    """The encoder's ``head_path``, else ``<MODEL_DIR>/packaged-head.pt``."""
    from multimodal_search.conf import search_settings

    return getattr(encoder, "head_path", None) or str(Path(search_settings.MODEL_DIR) / HEAD_FILENAME)


def train_projection_head(
    *,
    holdout: Iterable[str] = (),
    labels: Mapping[str, Label] | None = None,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    visual: str = "auto",
    progress: Callable[[str, int], Progress] | None = None,
    reindex: Callable[[Any], None] | None = None,
) -> TrainingResult:
    """Train the configured encoder's heads on the configured adapter's catalogue and publish them.

    With ``reindex``, the new version is saved beside the head file first and
    ``reindex(staging_encoder)`` is called with an encoder that uses it (and
    shares the loaded models), so the catalogue can be indexed for the new
    version *before* running encoders switch to it; then the head file is
    replaced. The configured encoder reloads at once, so ``encoder.model_id``
    names the new version when this returns (other processes follow within
    seconds).

    Raises:
        TrainingError: the encoder has no trainable head, or nothing to train on.
    """
    from multimodal_search.adapters import get_adapter
    from multimodal_search.conf import search_settings
    from multimodal_search.encoders import get_encoder

    encoder = get_encoder()
    if not has_trainable_head(encoder):
        raise TrainingError(f"encoder {type(encoder).__name__} has no trainable head")
    output = default_head_path(encoder)
    result = train_heads(
        encoder, get_adapter(), output, holdout=set(holdout), labels=labels, epochs=epochs, seed=seed, visual=visual,
        cache_dir=Path(search_settings.MODEL_DIR) / "cache" / "backbone", progress=progress,
        publish_now=reindex is None,
    )
    if reindex is not None:
        reindex(encoder.clone(head_path=result.archive, head_check_interval=3600))
        publish(result.archive, output)
    encoder.reload_heads()
    return result
