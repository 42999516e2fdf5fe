"""Photos a shopper takes, made from studio photos; and photos of things a shop does not sell.

:func:`shopper_photo` turns one catalogue photo into what a phone uploads, every step drawn from
a seeded ``random.Random`` so a seed always gives the same bytes:

1. the product is cut out with the backdrop rule the encoders use (``encoders.pixels.not_backdrop``:
   the border's colour, when it is a studio backdrop) and put on a cream, grey or busy backdrop
   (a close-up without a backdrop keeps its pixels);
2. re-lit: brightness and a white-balance cast (per-channel gains);
3. cropped off-centre (the product not in the middle, part of the frame lost);
4. scaled down to phone-upload resolution and saved as a JPEG of middling quality;
5. sometimes stored rotated with an EXIF Orientation tag, as phones do: a reader that ignores
   the tag sees the product on its side.

:func:`unsold_photo` draws an object no clothing or gear shop sells (a plate, a book, a lamp, a
houseplant, a kettle...), or a plain texture, with PIL only: nothing is downloaded.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from multimodal_search.encoders.pixels import not_backdrop, srgb_to_lab

BACKDROPS = ("cream", "grey", "busy")
CREAM = (240, 232, 212)
GREY = (128, 128, 126)
ORIENTATION_TAG = 0x0112
#: EXIF orientation -> the transpose that stores an upright photo so that a reader applying the tag
#: (``ImageOps.exif_transpose``) gets it upright again
STORED_AS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
MASK_SIDE = 256  # the backdrop rule runs on a grid this wide (as the encoders read photos small)
PHONE_SIDES = (480, 640, 720)


@dataclass(frozen=True)
class ShopperRecipe:
    """What was done to one photo (written next to the query, so a reader can see it)."""

    backdrop: str
    brightness: float
    gains: tuple[float, float, float]
    crop: tuple[float, float, float, float]  # left, top, right, bottom as fractions
    side: int
    quality: int
    orientation: int  # 1: none

    def as_dict(self) -> dict[str, object]:
        return {
            "backdrop": self.backdrop,
            "brightness": self.brightness,
            "gains": list(self.gains),
            "crop": list(self.crop),
            "side": self.side,
            "quality": self.quality,
            "orientation": self.orientation,
        }


def draw_recipe(rng: random.Random, backdrop: str) -> ShopperRecipe:
    """Random but bounded changes (a phone photo indoors, not a wrecked one)."""
    scale = rng.uniform(0.72, 0.9)  # the crop keeps this share of each side
    left = rng.uniform(0.0, 1.0 - scale)
    top = rng.uniform(0.0, 1.0 - scale)
    if abs(left - (1.0 - scale) / 2) < 0.03:  # off-centre: never the middle
        left = 0.0 if rng.random() < 0.5 else 1.0 - scale
    return ShopperRecipe(
        backdrop=backdrop,
        brightness=round(rng.choice([rng.uniform(0.7, 0.9), rng.uniform(1.1, 1.25)]), 3),
        gains=(round(rng.uniform(0.9, 1.1), 3), 1.0, round(rng.uniform(0.85, 1.08), 3)),
        crop=(round(left, 4), round(top, 4), round(left + scale, 4), round(top + scale, 4)),
        side=rng.choice(PHONE_SIDES),
        quality=rng.randint(55, 80),
        orientation=rng.choice([1, 1, 3, 6, 8]),
    )


def product_mask(image: Image.Image) -> Image.Image:
    """An "L" mask of the pixels that are not the studio backdrop (all white when there is none), softened."""
    small = image.convert("RGB")
    small.thumbnail((MASK_SIDE, MASK_SIDE))
    rgb = np.asarray(small, dtype=np.uint8)
    keep = not_backdrop(srgb_to_lab(rgb)).reshape(rgb.shape[:2])
    mask = Image.fromarray((keep * 255).astype(np.uint8), mode="L")
    mask = mask.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.GaussianBlur(1))
    return mask.resize(image.size, Image.Resampling.BILINEAR)


def backdrop_image(name: str, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A plain cream or grey backdrop, or a busy one (a table top with things on it: stripes and blobs)."""
    if name == "cream":
        return Image.new("RGB", size, CREAM)
    if name == "grey":
        return Image.new("RGB", size, GREY)
    if name != "busy":
        raise ValueError(f"backdrop must be one of {BACKDROPS}")
    width, height = size
    canvas = Image.new("RGB", size, tuple(rng.randint(90, 200) for _ in range(3)))
    draw = ImageDraw.Draw(canvas)
    stripe = max(8, width // rng.randint(8, 16))
    for x in range(-height, width, stripe * 2):  # diagonal boards
        colour = tuple(rng.randint(60, 220) for _ in range(3))
        draw.polygon([(x, 0), (x + stripe, 0), (x + stripe + height, height), (x + height, height)], fill=colour)
    for _ in range(rng.randint(10, 18)):
        r = rng.randint(width // 20, width // 6)
        cx, cy = rng.randint(0, width), rng.randint(0, height)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return canvas.filter(ImageFilter.GaussianBlur(2))


def composite(image: Image.Image, backdrop: str, rng: random.Random) -> tuple[Image.Image, bool]:
    """The product (its own mask) on another backdrop; False when the photo has no backdrop to replace."""
    image = image.convert("RGB")
    mask = product_mask(image)
    replaced = int(np.asarray(mask).min()) < 255
    return Image.composite(image, backdrop_image(backdrop, image.size, rng), mask), replaced


def relight(image: Image.Image, brightness: float, gains: tuple[float, float, float]) -> Image.Image:
    """Brightness times a per-channel white-balance gain."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) * np.asarray(gains, dtype=np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    return ImageEnhance.Brightness(image).enhance(brightness)


def crop_fraction(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    width, height = image.size
    left, top, right, bottom = box
    return image.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))


def phone_jpeg(image: Image.Image, side: int, quality: int, orientation: int) -> bytes:
    """Scaled so the longest side is ``side``; stored rotated with an EXIF Orientation tag when not 1."""
    image = image.copy()
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    exif = Image.Exif()
    if orientation != 1:
        image = image.transpose(STORED_AS[orientation])
        exif[ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def shopper_photo(image: Image.Image, *, seed: str, backdrop: str) -> tuple[bytes, ShopperRecipe]:
    """One shopper photo (JPEG bytes) of a catalogue photo, and what was done to it.

    Args:
        image: the studio photo.
        seed: any string; the same seed, photo and backdrop give the same bytes.
        backdrop: one of ``BACKDROPS``.
    """
    rng = random.Random(seed)
    recipe = draw_recipe(rng, backdrop)
    photo, replaced = composite(image, backdrop, rng)
    if not replaced:  # a close-up: the product runs off every edge
        recipe = replace(recipe, backdrop="kept")
    photo = relight(photo, recipe.brightness, recipe.gains)
    photo = crop_fraction(photo, recipe.crop)
    return phone_jpeg(photo, recipe.side, recipe.quality, recipe.orientation), recipe


# --- things the shop does not sell -------------------------------------------------------------------

UNSOLD_OBJECTS = ("plate", "book", "lamp", "houseplant", "kettle", "stripes", "noise", "gradient")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))


def unsold_photo(kind: str, *, seed: str, size: int = 480) -> bytes:
    """A JPEG drawing of ``kind`` (one of ``UNSOLD_OBJECTS``) on a plain or textured background."""
    rng = random.Random(seed)
    background = rng.choice([(255, 255, 255), CREAM, GREY, _colour(rng)])
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    s = size
    if kind == "plate":
        c = _colour(rng)
        draw.ellipse([s * 0.12, s * 0.12, s * 0.88, s * 0.88], fill=(235, 235, 235), outline=(180, 180, 180), width=4)
        draw.ellipse([s * 0.28, s * 0.28, s * 0.72, s * 0.72], fill=c)
    elif kind == "book":
        c = _colour(rng)
        draw.rectangle([s * 0.25, s * 0.12, s * 0.75, s * 0.88], fill=c, outline=(20, 20, 20), width=3)
        draw.rectangle([s * 0.25, s * 0.12, s * 0.31, s * 0.88], fill=tuple(max(0, v - 60) for v in c))
        for row in range(4):
            y = s * (0.3 + 0.08 * row)
            draw.line([s * 0.38, y, s * 0.68, y], fill=(250, 250, 250), width=5)
    elif kind == "lamp":
        draw.polygon(
            [(s * 0.3, s * 0.45), (s * 0.7, s * 0.45), (s * 0.6, s * 0.15), (s * 0.4, s * 0.15)], fill=_colour(rng)
        )
        draw.rectangle([s * 0.48, s * 0.45, s * 0.52, s * 0.8], fill=(60, 60, 60))
        draw.ellipse([s * 0.32, s * 0.78, s * 0.68, s * 0.88], fill=(60, 60, 60))
    elif kind == "houseplant":
        draw.polygon(
            [(s * 0.35, s * 0.6), (s * 0.65, s * 0.6), (s * 0.6, s * 0.9), (s * 0.4, s * 0.9)], fill=(170, 90, 50)
        )
        for _ in range(9):
            x, y = rng.uniform(0.25, 0.75) * s, rng.uniform(0.15, 0.55) * s
            draw.ellipse([x - s * 0.08, y - s * 0.04, x + s * 0.08, y + s * 0.04], fill=(30, rng.randint(110, 170), 40))
            draw.line([x, y, s * 0.5, s * 0.6], fill=(30, 100, 30), width=3)
    elif kind == "kettle":
        c = _colour(rng)
        draw.ellipse([s * 0.22, s * 0.3, s * 0.78, s * 0.86], fill=c)
        draw.arc([s * 0.3, s * 0.12, s * 0.7, s * 0.5], 180, 360, fill=(40, 40, 40), width=10)
        draw.polygon([(s * 0.74, s * 0.5), (s * 0.92, s * 0.38), (s * 0.9, s * 0.44), (s * 0.76, s * 0.62)], fill=c)
    elif kind == "stripes":
        width = rng.randint(8, 40)
        for x in range(0, s, width * 2):
            draw.rectangle([x, 0, x + width, s], fill=_colour(rng))
    elif kind == "noise":
        pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (s // 8, s // 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels, mode="RGB").resize((s, s), Image.Resampling.NEAREST)
    elif kind == "gradient":
        a, b = np.asarray(_colour(rng), np.float32), np.asarray(_colour(rng), np.float32)
        t = np.linspace(0, 1, s, dtype=np.float32)[None, :, None]
        image = Image.fromarray(np.broadcast_to(a + (b - a) * t, (s, s, 3)).astype(np.uint8), mode="RGB")
    else:
        raise ValueError(f"kind must be one of {UNSOLD_OBJECTS}")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
