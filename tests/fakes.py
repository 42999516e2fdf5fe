"""Deterministic stand-ins for tests: no weights, no torch."""

from __future__ import annotations

import re
import zlib
from typing import Any

import numpy as np
from PIL import Image

from multimodal_search.encoders.base import BaseEncoder, l2_normalize

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "black": (10, 10, 10),
    "white": (250, 250, 250),
    "yellow": (240, 220, 30),
    "gray": (128, 128, 128),
}
COLOUR_NAMES = list(COLOURS)
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_TOKEN = re.compile(r"[a-z0-9]+")


def _word_vector(token: str, dimensions: int) -> np.ndarray:
    seed = zlib.crc32(token.lower().encode("utf-8"))
    return np.random.RandomState(seed).standard_normal(dimensions).astype(np.float32)


def colour_histogram(image: Image.Image) -> np.ndarray:
    """Fraction of pixels nearest to each of ``COLOUR_NAMES`` (16x16 thumbnail)."""
    pixels = np.asarray(image.convert("RGB").resize((16, 16)), dtype=np.float32).reshape(-1, 3)
    nearest = ((pixels[:, None, :] - _PALETTE[None]) ** 2).sum(-1).argmin(1)
    return np.bincount(nearest, minlength=len(COLOUR_NAMES)).astype(np.float32) / len(nearest)


def dominant_colour(image: Image.Image) -> str:
    """The most frequent palette colour, ignoring a white background when at
    least 5% of the photo is something else (product photos sit on white)."""
    hist = colour_histogram(image)
    white = COLOUR_NAMES.index("white")
    if hist[white] < 0.95:
        hist = hist.copy()
        hist[white] = 0
    return COLOUR_NAMES[int(hist.argmax())]


class HashEncoder(BaseEncoder):
    """Hash-based encoder for fast tests.

    * Text: normalised sum of per-token random vectors (seeded by the CRC32 of
      the lowercased token), so texts that share words are similar.
    * Image features (16-d): a centred 2x2 RGB thumbnail (12 values) and a
      4-bin brightness histogram; identical photos give identical vectors.
    * Image shared vector (32-d): the dominant colour's word vector plus a
      fixed random projection of the colour histogram, so a red photo is close
      to the text "red".
    """

    dimensions = 32
    feature_dimensions = 16
    model_id = "hash-v1"

    def __init__(self, device: str | None = None, **options: Any) -> None:
        super().__init__(device=device or "cpu", **options)
        self._projection = (
            np.random.RandomState(1234).standard_normal((len(COLOUR_NAMES), self.dimensions)).astype(np.float32)
        )

    @property
    def device(self) -> str:
        return "cpu"

    def _text_vector(self, text: str) -> np.ndarray:
        tokens = _TOKEN.findall(str(text).lower()) or ["<empty>"]
        return np.sum([_word_vector(t, self.dimensions) for t in tokens], axis=0)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Encode texts; see the class docstring."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return l2_normalize(np.stack([self._text_vector(t) for t in texts]))

    def _features(self, image: Image.Image) -> np.ndarray:
        rgb = image.convert("RGB")
        thumb = np.asarray(rgb.resize((2, 2), Image.Resampling.BOX), dtype=np.float32).reshape(-1)
        grey = np.asarray(rgb.convert("L").resize((16, 16)), dtype=np.float32).reshape(-1)
        hist = np.bincount(np.minimum(grey // 64, 3).astype(int), minlength=4) / grey.size
        return np.concatenate([thumb / 255.0 - 0.5, hist - 0.25]).astype(np.float32)

    def _shared(self, image: Image.Image) -> np.ndarray:
        hist = colour_histogram(image)
        colour = l2_normalize(hist @ self._projection)
        word = l2_normalize(_word_vector(dominant_colour(image), self.dimensions))
        return word + 0.3 * colour

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Return (shared (n, 32), features (n, 16)); see the class docstring."""
        if not images:
            return (
                np.zeros((0, self.dimensions), dtype=np.float32),
                np.zeros((0, self.feature_dimensions), dtype=np.float32),
            )
        shared = l2_normalize(np.stack([self._shared(im) for im in images]))
        features = l2_normalize(np.stack([self._features(im) for im in images]))
        return shared, features


class SlowHashEncoder(HashEncoder):
    """``HashEncoder`` that takes ``delay`` seconds per text (fault drills: a batch lasts long enough to be hit)."""

    def __init__(self, device: str | None = None, delay: float = 0.05, **options: Any) -> None:
        super().__init__(device=device, **options)
        self.delay = float(delay)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        import time

        time.sleep(self.delay * len(texts))
        return super().encode_text(texts)


class SlowStartHashEncoder(HashEncoder):
    """``HashEncoder`` whose warm-up takes ``start_delay`` seconds, as loading real models on a slow host does."""

    def __init__(self, device: str | None = None, start_delay: float = 6.0, **options: Any) -> None:
        super().__init__(device=device, **options)
        self.start_delay = float(start_delay)

    def warm_up(self) -> None:
        import time

        time.sleep(self.start_delay)
        super().warm_up()


class OutOfMemoryEncoder(HashEncoder):
    """``HashEncoder`` that runs out of memory above ``max_batch`` texts or photos, as a GPU does.

    A text containing ``poison`` always raises (a product no batch size can encode).
    """

    def __init__(self, device: str | None = None, max_batch: int = 4, **options: Any) -> None:
        super().__init__(device=device, **options)
        self.max_batch = int(max_batch)
        self.calls: list[int] = []

    def encode_text(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if len(texts) > self.max_batch:
            raise RuntimeError(f"CUDA out of memory (batch of {len(texts)} texts)")
        if any("poison" in str(text).lower() for text in texts):
            raise ValueError("this text breaks the encoder")
        return super().encode_text(texts)

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        if len(images) > self.max_batch:
            raise MemoryError(f"out of memory (batch of {len(images)} photos)")
        return super().encode_image_pair(images)


class KillingEncoder(SlowHashEncoder):
    """``SlowHashEncoder`` whose process dies (SIGKILL, as the out-of-memory killer does) on a text containing ``killer``."""

    def encode_text(self, texts: list[str]) -> np.ndarray:
        if any("killer" in str(text).lower() for text in texts):
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode_text(texts)
