"""Image files as hostile or unusual clients send them, built in memory (bytes)."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def halves(size: tuple[int, int] = (80, 40), left: str = "red", right: str = "blue", mode: str = "RGB") -> Image.Image:
    """Left half one colour, right half another (so a rotation is visible)."""
    image = Image.new("RGB", size, left)
    image.paste(Image.new("RGB", (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image.convert(mode) if mode != "RGB" else image


def jpeg(size: tuple[int, int] = (80, 40), *, orientation: int | None = None, mode: str = "RGB") -> bytes:
    image = halves(size, mode=mode)
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    return encoded(image, "JPEG", quality=90, exif=exif.tobytes())


def png(mode: str = "RGB", size: tuple[int, int] = (64, 64)) -> bytes:
    image = halves(size)
    if mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(size))
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        return encoded(image, "PNG", transparency=0)
    elif mode == "I;16":
        values = (np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0])).astype(np.uint16)
        image = Image.fromarray(values)
    elif mode != "RGB":
        image = image.convert(mode)
    return encoded(image, "PNG")


def animated_gif(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (48, 48), colour) for colour in ("red", "green", "blue")[:frames]]
    return encoded(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def noise_png(min_bytes: int) -> bytes:
    """A valid PNG of random pixels at least ``min_bytes`` long (noise does not compress)."""
    side = int((min_bytes / 3) ** 0.5) + 16
    pixels = np.random.default_rng(0).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    return encoded(Image.fromarray(pixels), "PNG", compress_level=1)


@functools.cache
def zero_png(width: int, height: int) -> bytes:
    """A black greyscale PNG written row by row: a few KB on disk, ``width * height`` bytes decoded.

    Built by hand so that the test never holds the decoded pixels itself.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    parts = []
    rows_per_step = max(1, (1 << 22) // len(row))
    for start in range(0, height, rows_per_step):
        parts.append(compressor.compress(row * min(rows_per_step, height - start)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
