"""Colour naming from pixels, and colour words in queries (numpy + PIL only).

Product photos are mostly shot on a plain backdrop: pixels close to the
backdrop colour are dropped (see :func:`product_pixels`), the rest are assigned
to the nearest named colour in CIE Lab space, giving each photo a distribution
over ``PALETTE`` names. Works on any catalogue: no training, no attributes needed.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np
from PIL import Image

# Several prototypes per name (sRGB): product colours are often muted or dark.
PROTOTYPES: dict[str, list[tuple[int, int, int]]] = {
    "black": [(25, 25, 28), (45, 45, 50)],
    "white": [(245, 245, 245), (225, 225, 220)],
    "gray": [(135, 135, 140), (90, 92, 98), (180, 180, 182)],
    "red": [(190, 35, 45), (150, 30, 40), (225, 75, 75)],
    "orange": [(235, 120, 35), (215, 140, 60), (240, 160, 80)],
    "yellow": [(235, 215, 60), (220, 200, 100), (240, 230, 130)],
    "green": [(60, 140, 70), (40, 90, 50), (130, 180, 90)],
    "blue": [(45, 85, 180), (35, 45, 85), (110, 160, 215), (60, 110, 150)],
    "purple": [(115, 60, 150), (80, 50, 100), (160, 120, 190)],
    "pink": [(235, 120, 170), (240, 170, 190), (200, 70, 120)],
    "brown": [(115, 75, 45), (80, 55, 40)],
    "beige": [(215, 195, 155), (190, 170, 130)],
}
PALETTE: dict[str, tuple[int, int, int]] = {name: protos[0] for name, protos in PROTOTYPES.items()}
NAMES = list(PROTOTYPES)

SYNONYMS: dict[str, str] = {
    "grey": "gray", "charcoal": "gray", "silver": "gray", "heather": "gray",
    "navy": "blue", "aqua": "blue", "turquoise": "blue", "teal": "blue", "cobalt": "blue", "indigo": "blue",
    "olive": "green", "lime": "green", "khaki": "beige", "tan": "beige", "sand": "beige", "cream": "white",
    "ivory": "white", "maroon": "red", "burgundy": "red", "crimson": "red", "scarlet": "red", "wine": "red",
    "violet": "purple", "lavender": "purple", "plum": "purple", "magenta": "pink", "rose": "pink",
    "gold": "yellow", "mustard": "yellow", "chocolate": "brown", "coffee": "brown", "camel": "brown",
    "coral": "orange", "rust": "orange",
}
_WORD = re.compile(r"[a-z]+")


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.float32) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=np.float32)
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_PROTO_LAB = _srgb_to_lab(np.array([c for protos in PROTOTYPES.values() for c in protos], dtype=np.float32))
_PROTO_NAME = np.array([i for i, protos in enumerate(PROTOTYPES.values()) for _ in protos])
LIGHTNESS_WEIGHT = 0.5  # of the squared L* difference when naming a pixel
CHROMA_SCALE = 20.0  # a pixel of chroma C counts 1 + C / CHROMA_SCALE times
_NAMING_AXES = np.sqrt(np.array([LIGHTNESS_WEIGHT, 1.0, 1.0], dtype=np.float32))


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


def colour_distribution(image: Image.Image, size: int = 64) -> np.ndarray:
    """Share of the product's pixels (:func:`product_pixels`) named each ``NAMES`` colour.

    A pixel takes the name of its nearest prototype, with lightness counting
    less than hue and chroma (``LIGHTNESS_WEIGHT``): shading and heathered
    fabric change a pixel's lightness, not what a shopper calls it. Coloured
    pixels count more than greyish ones (``CHROMA_SCALE``), since shadows
    and seams are grey whatever the product's colour.

    Returns:
        float32 array (len(NAMES),) summing to 1.
    """
    small = np.asarray(image.convert("RGB").resize((size, size)), dtype=np.float32).reshape(-1, 3)
    lab = _srgb_to_lab(small)
    pixels = lab[product_pixels(small, lab.reshape(size, size, 3))]
    difference = (pixels[:, None, :] - _PROTO_LAB[None]) * _NAMING_AXES
    nearest = _PROTO_NAME[np.argmin((difference**2).sum(axis=2), axis=1)]
    weights = 1.0 + np.hypot(pixels[:, 1], pixels[:, 2]) / CHROMA_SCALE
    counts = np.bincount(nearest, weights=weights, minlength=len(NAMES)).astype(np.float32)
    return counts / max(float(counts.sum()), 1e-9)


def product_colours(distributions: Iterable[np.ndarray], text_colour: str = "") -> dict[str, float]:
    """A product's colour profile: mean of its photos' distributions, plus its stated colour."""
    rows = [np.asarray(d, dtype=np.float32) for d in distributions]
    profile = np.mean(rows, axis=0) if rows else np.zeros(len(NAMES), dtype=np.float32)
    stated = colours_in_text(text_colour)
    if stated:
        profile = 0.5 * profile + 0.5 * np.array([1.0 / len(stated) if n in stated else 0.0 for n in NAMES])
        if not rows:
            profile = profile * 2
    return {name: round(float(v), 4) for name, v in zip(NAMES, profile) if v >= 0.005}


def colours_in_text(text: str) -> list[str]:
    """Colour names (canonical, in order) mentioned in a text."""
    found: list[str] = []
    for word in _WORD.findall((text or "").lower()):
        name = word if word in PALETTE else SYNONYMS.get(word)
        if name and name not in found:
            found.append(name)
    return found


def profile_overlap(distribution: np.ndarray, profile: Mapping[str, float]) -> float:
    """Histogram intersection of a photo's colour distribution and a product's profile (0-1)."""
    return float(sum(min(float(share), profile.get(name, 0.0)) for name, share in zip(NAMES, distribution)))


def colour_match(query_colours: list[str], profile: Mapping[str, float]) -> float:
    """How much of the product shows the colours asked for (0 when none asked)."""
    if not query_colours:
        return 0.0
    return float(max(profile.get(name, 0.0) for name in query_colours))
