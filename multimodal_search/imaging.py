"""Opening photos safely: the header is checked before any pixel is decoded.

Query photos (``services.query.open_photo``) and catalogue photos (``adapters.ImageRef.open``)
both pass through :func:`open_image`:

1. ``Image.open`` reads only the header; a photo with an extreme aspect ratio is refused here.
2. A JPEG is set to decode at reduced scale (``Image.draft``), so a 48 MP phone photo costs
   about 1/16 of its pixels; then the pixels that will really be decoded are checked against
   the cap (a 12000×12000 PNG of a few hundred KB is refused without decoding it).
3. Only then is the photo decoded (the first frame of an animation), shrunk with
   ``Image.thumbnail`` (which uses ``reduce``), turned upright from its EXIF orientation and
   converted to RGB on white. Nothing is padded to a square before it is small.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

BACKGROUND = (255, 255, 255)
DRAFT_SIDE = 448  # JPEGs decode at the smallest 1/2^n scale that keeps both sides >= this
MAX_SIDE = 1024  # longest side kept after decoding (the encoders look at 224-pixel squares)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class PhotoError(ValueError):
    """A photo that cannot or may not be decoded; the message is fit to show a user."""


def check_size(width: int, height: int, *, max_pixels: int, max_aspect: float) -> None:
    """Raise ``PhotoError`` for an empty photo, one over ``max_pixels`` or one longer than ``max_aspect``:1."""
    if width < 1 or height < 1:
        raise PhotoError("The photo has no pixels.")
    if max(width, height) / min(width, height) > max_aspect:
        raise PhotoError(
            f"The photo is {width}×{height} pixels; its sides may differ by a factor of {max_aspect:g} at most."
        )
    if width * height > max_pixels:
        raise PhotoError(
            f"The photo is {width}×{height} pixels; the most we decode is {max_pixels / 1e6:g} megapixels."
        )


def open_image(
    source: str | IO[bytes] | Any,
    *,
    max_pixels: int,
    max_aspect: float,
    draft_side: int = DRAFT_SIDE,
    max_side: int = MAX_SIDE,
) -> Image.Image:
    """Decode a photo within the given limits and return it upright, RGB, at most ``max_side`` long.

    Args:
        source: a path or a binary file object (an upload).
        max_pixels: most pixels decoded (after JPEG draft scaling).
        max_aspect: longest side / shortest side allowed.
        draft_side: JPEGs decode at reduced scale while both sides stay at least this long.
        max_side: the returned photo's longest side is at most this.

    Raises:
        PhotoError: not an image, truncated, or over the limits (message fit for users).
    """
    try:
        image = Image.open(source)
        check_size(*image.size, max_pixels=2**62, max_aspect=max_aspect)
        if image.format == "JPEG":
            image.draft("RGB", (draft_side, draft_side))
        check_size(*image.size, max_pixels=max_pixels, max_aspect=max_aspect)
        orientation = image.getexif().get(0x0112)
        image.load()
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return to_rgb(_upright(_to_8_bit(image), orientation))
    except PhotoError:
        raise
    except Image.DecompressionBombError as exc:
        raise PhotoError(f"The photo is too large to decode ({exc}).") from None
    except UnidentifiedImageError:  # its message names the upload object: nothing a user can act on
        raise PhotoError(
            "We could not read that photo: the file is not an image we know (JPEG, PNG, WebP, GIF...)."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PhotoError(f"We could not read that photo ({exc}).") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of ``image``; transparent pixels become white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale as 8-bit "L" (Pillow's own conversion clips everything above 255)."""
    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    values = np.asarray(image, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    scale = 255.0 / (65535.0 if image.mode.startswith("I;16") else max(top, 255.0))
    return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")


def _upright(image: Image.Image, orientation: int | None) -> Image.Image:
    """Apply the EXIF orientation read before decoding (the table of ``ImageOps.exif_transpose``)."""
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation or 1)
    if method is None:
        return image
    return image.transpose(method)
