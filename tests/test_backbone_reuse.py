"""Backbone outputs kept per text and per photo and reused across head versions (a retrain re-runs only the heads)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from django.db import connection
from PIL import Image

from multimodal_search import services
from multimodal_search.encoders import clear_cache, get_encoder
from multimodal_search.encoders.base import l2_normalize
from multimodal_search.models import BackboneVector, ImageEmbedding, ProductEmbedding
from multimodal_search.services import encoding
from multimodal_search.store import get_store, sql
from multimodal_search.store.base import IMAGE_COLUMNS, PRODUCT_COLUMNS, Scope
from multimodal_search.store.pgvector import as_array
from tests.factories import ProductFactory
from tests.fakes import HashEncoder

pytestmark = pytest.mark.django_db


def _rotation(name: str, dimensions: int) -> np.ndarray:
    matrix = np.random.RandomState(zlib.crc32(name.encode())).standard_normal((dimensions, dimensions))
    return np.linalg.qr(matrix)[0].astype(np.float32)


class SplitHashEncoder(HashEncoder):
    """``HashEncoder`` split like the packaged one: the hash vectors are the backbone, the photo head is a
    rotation named by ``head`` (so a new head gives new shared vectors and a new ``model_id``).
    Counts what goes through the backbones."""

    text_backbone_id = "hash-text-v1"
    image_backbone_id = "hash-image-v1"

    def __init__(self, device: str | None = None, head: str = "a", **options: Any) -> None:
        super().__init__(device=device, **options)
        self.head = head
        self.model_id = f"hash-split/{head}"
        self.backbone_texts: list[str] = []
        self.backbone_photos = 0

    def encode_text_backbone(self, texts: list[str]) -> np.ndarray:
        self.backbone_texts += texts
        return super().encode_text(texts)

    def project_text(self, backbone: np.ndarray) -> np.ndarray:
        return l2_normalize(backbone)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.project_text(super().encode_text(texts))

    def encode_image_backbone(self, images: list[Image.Image]) -> np.ndarray:
        self.backbone_photos += len(images)
        shared, features = super().encode_image_pair(images)
        return np.concatenate([shared, features], axis=1)

    def project_images(self, backbone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(backbone):
            return np.zeros((0, self.dimensions), np.float32), np.zeros((0, self.feature_dimensions), np.float32)
        shared = backbone[:, : self.dimensions] @ _rotation(self.head, self.dimensions)
        return l2_normalize(shared), l2_normalize(backbone[:, self.dimensions :])

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        return self.project_images(self.encode_image_backbone(images))


@pytest.fixture
def split(settings):
    """Use ``split(head)`` to index with a ``SplitHashEncoder`` of that head; returns the encoder."""

    def use(head: str = "a") -> SplitHashEncoder:
        settings.MULTIMODAL_SEARCH = {
            **settings.MULTIMODAL_SEARCH,
            "ENCODERS": {
                **settings.MULTIMODAL_SEARCH["ENCODERS"],
                "split": {"BACKEND": "tests.test_backbone_reuse.SplitHashEncoder", "OPTIONS": {"head": head}},
            },
            "ENCODER": "split",
        }
        encoder = get_encoder()
        assert isinstance(encoder, SplitHashEncoder)
        return encoder

    yield use
    clear_cache()


def _photos(model_id: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    rows = ImageEmbedding.objects.filter(model_id=model_id)
    return {
        (row.product_pk, row.image_key): (as_array(row.shared_vector), as_array(row.feature_vector)) for row in rows
    }


def _texts(model_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rows = ProductEmbedding.objects.filter(model_id=model_id)
    return {row.product_pk: (as_array(row.text_vector), as_array(row.title_vector)) for row in rows}


def test_a_new_head_reruns_only_the_heads(split):
    products = [ProductFactory(title=f"Mug {i}", photos=["red", "blue"]) for i in range(3)]
    pks = [p.pk for p in products]
    first = split("a")
    assert services.index_products(pks).indexed == 3
    # texts and titles in one call; each photo file once (the six photos hold two distinct files)
    assert len(first.backbone_texts) == 6 and first.backbone_photos == 2

    second = split("b")
    assert second is not first and second.model_id != first.model_id
    report = services.index_products(pks)
    assert report.indexed == 3 and not report.failed_images
    assert second.backbone_texts == [] and second.backbone_photos == 0

    old, new = _photos(first.model_id), _photos(second.model_id)
    assert old.keys() == new.keys() and len(new) == 6
    for key, (shared, features) in new.items():
        assert not np.allclose(shared, old[key][0], atol=0.05)  # the new head's vectors...
        assert np.allclose(features, old[key][1])  # ...over the same backbone features
    for pk, (text, title) in _texts(second.model_id).items():
        assert np.allclose(text, _texts(first.model_id)[pk][0]) and np.allclose(title, _texts(first.model_id)[pk][1])


def test_kept_and_fresh_backbone_outputs_store_the_same_vectors(split):
    products = [ProductFactory(title=f"Scarf {i}", photos=["green"]) for i in range(2)]
    pks = [p.pk for p in products]
    split("a")
    services.index_products(pks)
    cold_photos, cold_texts = _photos("hash-split/a"), _texts("hash-split/a")
    assert BackboneVector.objects.count() > 0
    services.index_products(pks, force=True)  # everything kept now
    for key, (shared, features) in _photos("hash-split/a").items():
        assert np.array_equal(shared, cold_photos[key][0]) and np.array_equal(features, cold_photos[key][1])
    for pk, (text, title) in _texts("hash-split/a").items():
        assert np.array_equal(text, cold_texts[pk][0]) and np.array_equal(title, cold_texts[pk][1])


def test_only_changed_texts_and_photos_go_through_the_backbones(split):
    products = [ProductFactory(title=f"Bag {i}", photos=["black"]) for i in range(3)]
    encoder = split("a")
    services.index_products([p.pk for p in products])
    encoder.backbone_texts.clear()
    encoder.backbone_photos = 0
    products[0].description = "Now waterproof."  # the text changes, the title line does not
    products[0].save()
    report = services.index_products([p.pk for p in products])
    assert report.indexed == 1 and report.unchanged == 2
    assert len(encoder.backbone_texts) == 1 and "waterproof" in encoder.backbone_texts[0]
    assert encoder.backbone_photos == 0


def test_an_unreadable_photo_is_reported_and_the_rest_kept(split):
    product = ProductFactory(title="Cap", photos=["red", "blue"])
    broken = product.images.order_by("position")[1]
    Path(broken.image.path).write_bytes(b"not an image")
    split("a")
    report = services.index_products([product.pk])
    assert report.indexed == 1 and report.failed_images == [broken.image.path]
    assert ImageEmbedding.objects.filter(model_id="hash-split/a").count() == 1
    split("b")
    report = services.index_products([product.pk])  # the broken photo is not kept: tried again, reported again
    assert report.indexed == 1 and report.failed_images == [broken.image.path]


def test_an_encoder_that_does_not_split_keeps_nothing(settings, indexed):
    assert HashEncoder.text_backbone_id is None and HashEncoder.image_backbone_id is None
    product = ProductFactory(title="Plain mug", photos=["red"])
    assert indexed(product).indexed == 1
    assert BackboneVector.objects.count() == 0


def test_the_store_keeps_the_first_output_and_drops_unused_backbones():
    store = get_store()
    store.save_backbone_vectors("bb-1", {"d1": np.array([0.5, 1.0]), "d2": np.array([2.0, 3.0])})
    store.save_backbone_vectors("bb-1", {"d1": np.array([9.0, 9.0])})  # a concurrent writer: ignored
    store.save_backbone_vectors("bb-2", {"d1": np.array([1.0])})
    kept = store.backbone_vectors("bb-1", ["d1", "d2", "d3"])
    assert kept.keys() == {"d1", "d2"} and kept["d1"].dtype == np.float16
    assert kept["d1"].tolist() == [0.5, 1.0] and kept["d2"].tolist() == [2.0, 3.0]
    assert store.drop_backbones(keep=["bb-1"]) == 1
    assert store.backbone_vectors("bb-2", ["d1"]) == {}


def test_text_digests_tell_texts_apart():
    assert encoding.text_digest("red mug") != encoding.text_digest("red mug ")
    assert len(encoding.text_digest("")) == 64


@pytest.mark.slow
def test_the_packaged_encoder_reindexes_for_a_new_head_without_its_backbones(packaged_settings, tmp_path):
    from multimodal_search.encoders.heads import ProjectionHead, save_head
    from multimodal_search.encoders.packaged import PackagedEncoder

    products = [ProductFactory(title=f"Jacket {c}", photos=[c]) for c in ("red", "blue")]
    pks = [p.pk for p in products]
    encoder = get_encoder()
    assert isinstance(encoder, PackagedEncoder)
    assert services.index_products(pks).indexed == 2  # zero-shot; keeps the backbone outputs

    import torch

    torch.manual_seed(0)
    head_file = tmp_path / "head-test.pt"
    save_head(head_file, ProjectionHead(), version="test1", config={})
    staging = encoder.clone(head_path=str(head_file), head_check_interval=3600)
    assert staging.model_id != encoder.model_id and staging.image_backbone_id == encoder.image_backbone_id
    with (
        mock.patch.object(type(encoder._cnn), "forward", side_effect=AssertionError("CNN ran")),
        mock.patch.object(type(encoder._text), "encode", side_effect=AssertionError("MiniLM ran")),
    ):
        assert services.index_products(pks, encoder=staging).indexed == 2
    for product in products:
        image = product.images.first()
        row = ImageEmbedding.objects.get(model_id=staging.model_id, product_pk=str(product.pk))
        shared, features = staging.encode_image_pair([Image.open(image.image.path).convert("RGB")])
        assert float(as_array(row.shared_vector) @ shared[0]) > 0.999
        assert float(as_array(row.feature_vector) @ features[0]) > 0.999


def test_a_complete_reindex_drops_the_outputs_of_other_backbones(split):
    product = ProductFactory(title="Tote", photos=["red"])
    split("a")
    services.index_products([product.pk])
    get_store().save_backbone_vectors("an-old-backbone", {"d": np.ones(3)})
    _rows, dropped = services.drop_older_encoders()
    assert dropped == []
    kept = set(BackboneVector.objects.values_list("backbone_id", flat=True))
    assert kept == {"hash-text-v1", "hash-image-v1", encoding.PALETTE_ID}


def test_a_photo_replaced_while_its_batch_runs_is_encoded_but_not_kept(split):
    from multimodal_search.adapters import ImageRef
    from tests.factories import photo_bytes

    product = ProductFactory(title="Beanie", photos=["red"])
    path = product.images.first().image.path
    old_digest = encoding.file_digest(path)
    real_open = ImageRef.open

    def replaced_then_opened(ref: ImageRef) -> Image.Image:
        Path(ref.path).write_bytes(photo_bytes("blue"))  # replaced after the batch read its digest
        return real_open(ref)

    split("a")
    with mock.patch.object(ImageRef, "open", replaced_then_opened):
        assert services.index_products([product.pk]).indexed == 1
    digests = set(BackboneVector.objects.filter(backbone_id="hash-image-v1").values_list("digest", flat=True))
    assert digests == set()  # neither the old digest (other bytes) nor the new one (not read by this batch)
    report = services.index_products([product.pk])  # its content hash changed: indexed again, and kept
    assert report.indexed == 1 and encoding.file_digest(path) != old_digest
    assert set(BackboneVector.objects.filter(backbone_id="hash-image-v1").values_list("digest", flat=True)) == {
        encoding.file_digest(path)
    }


def _hnsw_indexes(model_id: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'mmsearch_hnsw_%%' AND indexdef LIKE %s",
            [f"%model_id)::text = '{model_id}'::text%"],
        )
        return {row[0] for row in cursor.fetchall()}


def test_a_new_heads_indexes_are_built_after_its_rows(split):
    """``mmsearch_train`` writes a new head's version without its HNSW indexes, then builds them once; a
    run that stops on an error leaves them unbuilt, and the next write of that version builds them."""
    pks = [ProductFactory(title=f"Lamp {i}", photos=["red"]).pk for i in range(3)]
    services.index_products(pks)  # the current version, indexes and all
    every = {
        sql.index_name(table, column, "hash-split/later")
        for table, columns in ((sql.PRODUCT_TABLE, PRODUCT_COLUMNS), (sql.IMAGE_TABLE, IMAGE_COLUMNS))
        for column in columns
    }
    staging = split("later")  # a head no other test used: the store remembers the indexes it made
    with services.indexes_built_after(staging):
        assert services.index_products(pks, encoder=staging).indexed == 3
        assert ProductEmbedding.objects.filter(model_id=staging.model_id).count() == 3
        assert _hnsw_indexes(staging.model_id) == set()
    assert _hnsw_indexes(staging.model_id) == every
    found = get_store().nearest("text_vector", staging.encode_text(["Lamp 1"])[0], Scope(staging.model_id, 3))
    assert len(found) == 3

    stopped = split("stopped")
    with pytest.raises(RuntimeError), services.indexes_built_after(stopped):
        services.index_products(pks, encoder=stopped)
        raise RuntimeError("the run stopped")
    assert _hnsw_indexes(stopped.model_id) == set()
    services.index_products(pks, encoder=stopped, force=True)
    assert len(_hnsw_indexes(stopped.model_id)) == len(every)
