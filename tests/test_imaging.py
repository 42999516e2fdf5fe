"""Opening photos safely: limits from the header, reduced decoding, EXIF orientation, odd modes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multimodal_search import services
from multimodal_search.adapters import ImageRef
from multimodal_search.encoders.images import prepare_image
from multimodal_search.imaging import PhotoError, open_image
from tests import crafted_images as img

LIMITS = {"max_pixels": 40_000_000, "max_aspect": 20}


def colour_at(image: Image.Image, x: float, y: float) -> str:
    r, g, b = image.getpixel((int(x * (image.width - 1)), int(y * (image.height - 1))))[:3]
    return "red" if r > 150 > b else "blue" if b > 150 > r else f"{(r, g, b)}"


@pytest.mark.parametrize(
    ("orientation", "size", "top_left"),
    [(None, (80, 40), "red"), (1, (80, 40), "red"), (3, (80, 40), "blue"), (6, (40, 80), "red"), (8, (40, 80), "blue")],
)
def test_query_photo_is_turned_upright_from_exif(orientation: int | None, size: tuple, top_left: str) -> None:
    photo = services.open_photo(io.BytesIO(img.jpeg((80, 40), orientation=orientation)))
    assert photo.size == size and photo.mode == "RGB"
    assert colour_at(photo, 0.1, 0.1) == top_left


def test_catalogue_photo_is_turned_upright_at_indexing(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    path.write_bytes(img.jpeg((80, 40), orientation=6))  # a phone held upright: stored sideways
    photo = ImageRef(key="k", path=str(path)).open()
    assert photo.size == (40, 80)
    assert colour_at(photo, 0.5, 0.1) == "red" and colour_at(photo, 0.5, 0.9) == "blue"


def test_catalogue_bomb_is_refused_not_decoded(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(img.zero_png(12000, 12000))
    with pytest.raises(PhotoError, match="megapixels"):
        ImageRef(key="k", path=str(path)).open()


def test_big_jpeg_is_decoded_at_reduced_scale_within_the_cap() -> None:
    data = img.encoded(Image.new("RGB", (4000, 3000), "red"), "JPEG", quality=50)
    photo = open_image(io.BytesIO(data), max_pixels=1_000_000, max_aspect=20)  # 12 MP header, 1 MP cap
    assert max(photo.size) <= 1024
    with pytest.raises(PhotoError, match="megapixels"):  # a PNG cannot be decoded at reduced scale
        open_image(io.BytesIO(img.encoded(Image.new("L", (4000, 3000)), "PNG")), max_pixels=1_000_000, max_aspect=20)


def test_sixteen_bit_greyscale_keeps_its_tones() -> None:
    photo = open_image(io.BytesIO(img.png("I;16", (256, 16))), **LIMITS)
    grey = np.asarray(photo)[..., 0]
    assert grey.min() < 10 and grey.max() > 245 and 100 < grey.mean() < 155  # not clipped to white


def test_transparent_pixels_become_white_and_animation_gives_its_first_frame() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    photo = open_image(io.BytesIO(img.encoded(rgba, "PNG")), **LIMITS)
    assert photo.getpixel((5, 5)) == (255, 255, 255)
    first = open_image(io.BytesIO(img.animated_gif()), **LIMITS).getpixel((5, 5))
    assert first[0] > 200 and first[1] < 60  # red, the first of red, green, blue


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (img.truncated(img.png("RGB", (256, 256))), "could not read"),
        (b"", "could not read that photo: the file is not an image we know"),
        (b"plain text in a file named t.jpg", r"not an image we know \(JPEG, PNG, WebP, GIF...\)\.$"),
        (img.zero_png(2100, 100), "factor of 20"),
    ],
)
def test_unreadable_or_extreme_photos_are_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(services.SearchError, match=message):
        services.open_photo(io.BytesIO(data))


def test_prepare_image_shrinks_long_photos_before_padding() -> None:
    strip = Image.new("RGB", (12000, 2000), "red")  # padded first, it was a 12000×12000 canvas (432 MB)
    array = prepare_image(strip)
    assert array.shape == (224, 224, 3)
    assert tuple(array[112, 112]) == (255, 0, 0) and tuple(array[5, 112]) == (255, 255, 255)


def test_prepare_image_is_unchanged_for_ordinary_photos() -> None:
    photo = Image.new("RGB", (600, 400), "blue")
    photo.paste(Image.new("RGB", (100, 100), "red"), (250, 150))
    side = 600
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(photo, (0, 100))
    expected = np.asarray(canvas.resize((224, 224), Image.Resampling.BILINEAR), dtype=np.uint8)
    assert np.array_equal(prepare_image(photo), expected)
