"""Colour naming from pixels, and colour words in queries (numpy + PIL only).

Product photos are mostly shot on a plain backdrop: the backdrop and skin are
dropped (``encoders.pixels.product_pixels``), the rest of the pixels are assigned
to the nearest named colour in CIE Lab space, giving each photo a distribution
over ``PALETTE`` names. Works on any catalogue: no training, no attributes needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from PIL import Image

from multimodal_search.encoders.pixels import product_pixels, srgb_to_lab
from multimodal_search.ranking.text import words

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
    "grey": "gray",
    "charcoal": "gray",
    "silver": "gray",
    "heather": "gray",
    "navy": "blue",
    "aqua": "blue",
    "turquoise": "blue",
    "teal": "blue",
    "cobalt": "blue",
    "indigo": "blue",
    "olive": "green",
    "lime": "green",
    "khaki": "beige",
    "tan": "beige",
    "sand": "beige",
    "cream": "white",
    "ivory": "white",
    "maroon": "red",
    "burgundy": "red",
    "crimson": "red",
    "scarlet": "red",
    "wine": "red",
    "violet": "purple",
    "lavender": "purple",
    "plum": "purple",
    "magenta": "pink",
    "rose": "pink",
    "gold": "yellow",
    "mustard": "yellow",
    "chocolate": "brown",
    "coffee": "brown",
    "camel": "brown",
    "coral": "orange",
    "rust": "orange",
}

_PROTO_LAB = srgb_to_lab(np.array([c for protos in PROTOTYPES.values() for c in protos], dtype=np.float32))
_PROTO_NAME = np.array([i for i, protos in enumerate(PROTOTYPES.values()) for _ in protos])
LIGHTNESS_WEIGHT = 0.5  # of the squared L* difference when naming a pixel
CHROMA_SCALE = 20.0  # a pixel of chroma C counts 1 + C / CHROMA_SCALE times
_NAMING_AXES = np.sqrt(np.array([LIGHTNESS_WEIGHT, 1.0, 1.0], dtype=np.float32))


def colour_distribution(image: Image.Image, size: int = 64) -> np.ndarray:
    """Share of the product's pixels (``encoders.pixels.product_pixels``) named each ``NAMES`` colour.

    A pixel takes the name of its nearest prototype, with lightness counting
    less than hue and chroma (``LIGHTNESS_WEIGHT``): shading and heathered
    fabric change a pixel's lightness, not what a shopper calls it. Coloured
    pixels count more than greyish ones (``CHROMA_SCALE``), since shadows
    and seams are grey whatever the product's colour.

    Returns:
        float32 array (len(NAMES),) summing to 1.
    """
    small = np.asarray(image.convert("RGB").resize((size, size)), dtype=np.float32).reshape(-1, 3)
    lab = srgb_to_lab(small)
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
    for word in words(text):
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
