"""Which pixels of a product photo show the product (numpy only).

Product photos are mostly shot on a plain backdrop. :func:`backdrop_colour` finds it from the
photo's border, :func:`product_pixels` drops it and likely skin (a model wearing the product).
The colour descriptor of the photo features (``encoders.features``) and the colour naming of
``ranking.colour`` both read a photo through these functions.
"""

from __future__ import annotations

import numpy as np


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.float32) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=np.float32)
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _skin(rgb: np.ndarray) -> np.ndarray:
    """Likely human skin (models wearing the product), by the classic YCrCb box."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    return (cr > 137) & (cr < 175) & (cb > 80) & (cb < 128) & (r > g)


BACKDROP_DISTANCE = 12.0  # Lab distance from the backdrop colour
UNIFORM_BACKDROP = 0.8  # share of the border one colour must cover to be a backdrop
LIGHT_BACKDROP = 80.0  # L* from which a neutral border is a studio backdrop
NEUTRAL_CHROMA = 10.0


def backdrop_colour(lab_grid: np.ndarray) -> np.ndarray | None:
    """The backdrop's Lab colour, or None when the photo has none (a close-up).

    The border's median colour is the backdrop when it is light and neutral
    (the white or pale grey of a studio) or covers four fifths of the border
    (a backdrop of any colour, with the product running off an edge or two).
    Otherwise the product itself runs off the edges, as in a close-up of a
    collar (measured on Luma's close-ups: 0.5-0.73 of the border is one
    colour), and its colour must not be dropped.

    Args:
        lab_grid: (height, width, 3) Lab pixels.
    """
    border = np.concatenate([lab_grid[0], lab_grid[-1], lab_grid[:, 0], lab_grid[:, -1]])
    median = np.median(border, axis=0)
    uniform = float((np.linalg.norm(border - median, axis=1) <= BACKDROP_DISTANCE).mean())
    light_neutral = median[0] >= LIGHT_BACKDROP and float(np.hypot(median[1], median[2])) <= NEUTRAL_CHROMA
    return median if light_neutral or uniform >= UNIFORM_BACKDROP else None


def not_backdrop(lab_grid: np.ndarray) -> np.ndarray:
    """Flat mask of the pixels that are not the backdrop (all of them when there is none)."""
    lab = lab_grid.reshape(-1, 3)
    backdrop = backdrop_colour(lab_grid)
    if backdrop is None:
        return np.ones(len(lab), dtype=bool)
    return np.linalg.norm(lab - backdrop, axis=1) > BACKDROP_DISTANCE


def product_pixels(rgb: np.ndarray, lab_grid: np.ndarray) -> np.ndarray:
    """Flat mask of a square photo's pixels that show the product.

    The backdrop is dropped (unless almost everything matches it: a white tee
    on white), then likely skin (a model wearing the product) unless that
    would leave less than a quarter of the product (a skin-toned product).

    Args:
        rgb: (n, 3) sRGB pixels.
        lab_grid: the same pixels in Lab, (height, width, 3).
    """
    foreground = not_backdrop(lab_grid)
    if foreground.mean() < 0.03:
        foreground = np.ones(len(rgb), dtype=bool)
    without_skin = foreground & ~_skin(rgb)
    if without_skin.sum() >= 0.25 * foreground.sum():
        foreground = without_skin
    return foreground
