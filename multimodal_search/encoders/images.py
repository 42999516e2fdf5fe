"""Photos as the CNNs take them: RGB on white, padded or cropped to a square, ImageNet's class names."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from PIL import Image

from multimodal_search.imaging import to_rgb

IMAGE_SIZE = 224
PREPROCESS_MODES = ("pad", "crop")
DEFAULT_PREPROCESS = "pad"
BACKGROUND = (255, 255, 255)
# photos longer than this are shrunk (keeping their shape) before padding or cropping, so a padded
# canvas stays under ~50 MB; ordinary photos (a 4032×3024 phone photo, any photo multimodal_search.imaging
# opens: at most 1024) are padded exactly as before
SHRINK_ABOVE = 4096

__all__ = [
    "DEFAULT_PREPROCESS", "IMAGE_SIZE", "PREPROCESS_MODES", "imagenet_labels", "map_photos", "prepare_image", "to_rgb",
]  # fmt: skip

S = TypeVar("S")
T = TypeVar("T")
#: most threads that prepare one batch's photos (see :func:`map_photos`)
PHOTO_THREADS = 4
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    """A forked child (a Celery or gunicorn worker) has none of its parent's threads: it starts its own."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


def map_photos(work: Callable[[S], T], images: Sequence[S]) -> list[T]:
    """``work`` on each photo (or each photo still to open), in order, on up to :data:`PHOTO_THREADS`
    threads (no more than torch has: the cores the process is given).

    The CPU side of a photo (padding, resizing, the colour histogram: about 11 ms on one core) costs
    more than the CNN on a GPU, so one thread leaves the GPU waiting. PIL and numpy release the GIL
    for much of it, not all: on a 16-core GPU machine 4 threads took 3.8 ms a photo, 8 took 4.9 and
    16 took 7.7. A single photo (a photo query) runs on the calling thread, and so does a list that holds
    one photo twice (a JPEG not decoded yet must not be decoded by two threads at once).
    """
    import torch

    threads = min(PHOTO_THREADS, torch.get_num_threads(), len(images))
    if threads < 2 or len({id(image) for image in images}) < len(images):
        return [work(image) for image in images]
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mmsearch-photo")
    return list(pool.map(work, images))


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in logit order (shipped with torchvision)."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def prepare_image(image: Image.Image, size: int = IMAGE_SIZE, mode: str = DEFAULT_PREPROCESS) -> np.ndarray:
    """Turn a photo into a (size, size, 3) uint8 array for the CNN.

    ``mode="pad"`` pads the photo to a square with white (product photos have
    white backgrounds) and resizes it, so nothing is cut off; ``mode="crop"``
    resizes the shorter side to ``size`` and takes the centre square.

    A JPEG that has not been decoded yet is decoded at reduced scale
    (``Image.draft``), which is several times faster for large photos; this
    changes the caller's (still unloaded) image object. A photo longer than
    ``SHRINK_ABOVE`` (4096) is shrunk to that (keeping its shape) before it is padded,
    so a 12000×20 strip never becomes a 12000×12000 canvas.
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, not {mode!r}")
    if getattr(image, "format", None) == "JPEG" and image.mode in ("RGB", "L", "CMYK", "YCbCr"):
        # No-op once the image is loaded; otherwise decodes at >= 2*size.
        image.draft("RGB", (2 * size, 2 * size))
    image = to_rgb(_shrunk(image, max(SHRINK_ABOVE, size)))
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


def _shrunk(image: Image.Image, longest: int) -> Image.Image:
    """``image`` with its longest side at most ``longest`` (a new image only when it was longer)."""
    width, height = image.size
    if max(width, height) <= longest:
        return image
    scale = longest / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
