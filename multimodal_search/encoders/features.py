"""Pixel-level photo descriptors that complement CNN features (numpy + PIL only).

The CNN's pooled features say *what* a photo shows but barely which shade it
is, so colour variants of one product look alike to it. ``colour_descriptor``
adds a fine CIE Lab histogram of the product's own pixels (background and
skin dropped, as in :mod:`multimodal_search.encoders.pixels`): cosine similarity of two
descriptors is the Bhattacharyya coefficient of the two colour distributions.
No training and no catalogue statistics, so it works on any catalogue.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from multimodal_search.encoders.pixels import not_backdrop, product_pixels, srgb_to_lab

THUMBNAIL = 96
L_LEVELS = 8
AB_LEVELS = 15
AB_RANGE = 70.0
BLUR_SIGMA = 3.0  # Lab units
COLOUR_RECIPE = "lab8x15-b2"  # names these settings and pixels.product_pixels in caches; change it with them


def _thumbnail_lab(image: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(sRGB pixels (n, 3), their Lab values as a (size, size, 3) grid) of a square thumbnail."""
    rgb = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    pixels = rgb.reshape(-1, 3)
    return pixels, srgb_to_lab(pixels).reshape(size, size, 3)


def foreground_box(image: Image.Image, size: int = 64) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of what is not backdrop; the whole photo if nothing is."""
    width, height = image.size
    _, grid = _thumbnail_lab(image, size)
    mask = not_backdrop(grid).reshape(size, size)
    if mask.mean() < 0.01:
        return (0, 0, width, height)
    rows, cols = np.nonzero(mask)
    top, bottom = np.percentile(rows, [0.5, 99.5])
    left, right = np.percentile(cols, [0.5, 99.5])
    box = (
        max(0, int(left * width / size)),
        max(0, int(top * height / size)),
        min(width, int((right + 1) * width / size) + 1),
        min(height, int((bottom + 1) * height / size) + 1),
    )
    return box if box[2] > box[0] and box[3] > box[1] else (0, 0, width, height)


def foreground_lab(image: Image.Image, size: int = THUMBNAIL) -> np.ndarray:
    """Lab values of the product's pixels (:func:`multimodal_search.encoders.pixels.product_pixels`).

    Returns:
        float32 array (n, 3) of L, a, b.
    """
    pixels, grid = _thumbnail_lab(image, size)
    return grid.reshape(-1, 3)[product_pixels(pixels, grid)]


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo = np.array([0.0, -AB_RANGE, -AB_RANGE], dtype=np.float32)
    levels = np.array([L_LEVELS, AB_LEVELS, AB_LEVELS])
    step = (np.array([100.0, AB_RANGE, AB_RANGE], dtype=np.float32) - lo) / (levels - 1)
    return lo, step, levels


def _splat(lab: np.ndarray) -> np.ndarray:
    """Trilinear (soft) histogram of Lab values on the full grid, unnormalised."""
    lo, step, levels = _grid()
    position = np.clip((lab - lo) / step, 0, levels - 1 - 1e-6)
    base = np.floor(position).astype(np.int64)
    frac = position - base
    hist = np.zeros(int(np.prod(levels)), dtype=np.float64)
    for corner in np.ndindex(2, 2, 2):
        offset = np.array(corner)
        index = np.minimum(base + offset, levels - 1)
        weight = np.prod(np.where(offset == 1, frac, 1 - frac), axis=1)
        flat = (index[:, 0] * levels[1] + index[:, 1]) * levels[2] + index[:, 2]
        hist += np.bincount(flat, weights=weight, minlength=hist.size)
    return hist.reshape(tuple(levels))


def _blur_matrix(n: int, sigma_bins: float) -> np.ndarray:
    i = np.arange(n, dtype=np.float64)
    kernel = np.exp(-((i[:, None] - i[None]) ** 2) / (2 * sigma_bins**2))
    return kernel / kernel.sum(axis=0, keepdims=True)


@lru_cache(maxsize=1)
def _gamut_bins() -> np.ndarray:
    """Flat indices of the grid bins that some sRGB colour reaches."""
    axis = np.arange(0, 256, 3, dtype=np.float32)
    cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.flatnonzero(_splat(srgb_to_lab(cube)).ravel() > 0)


def colour_dimensions() -> int:
    """Length of ``colour_descriptor`` vectors."""
    return int(_gamut_bins().size)


def colour_descriptor(image: Image.Image) -> np.ndarray:
    """Unit-norm square-rooted Lab histogram of the product's pixels.

    Returns:
        float32 array (colour_dimensions(),).
    """
    lab = foreground_lab(image)
    _, step, levels = _grid()
    hist = _splat(lab)
    blur_l = _blur_matrix(int(levels[0]), BLUR_SIGMA / float(step[0]))
    blur_ab = _blur_matrix(int(levels[1]), BLUR_SIGMA / float(step[1]))
    hist = np.einsum("ij,jkl->ikl", blur_l, hist)
    hist = np.einsum("ij,kjl->kil", blur_ab, hist)
    hist = np.einsum("ij,klj->kli", blur_ab, hist)
    vector = np.sqrt(np.maximum(hist.ravel()[_gamut_bins()], 0)).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
