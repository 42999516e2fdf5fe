from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.factories import ProductFactory, photo_bytes


@pytest.fixture
def photo():
    """photo("red") -> an in-memory JPEG file object."""

    def make(colour="red", shape="square", size=64):
        buffer = io.BytesIO(photo_bytes(colour, size=size, shape=shape))
        buffer.name = f"{colour}.jpg"
        return buffer

    return make


@pytest.fixture
def pil_photo():
    def make(colour="red", shape="square", size=64):
        return Image.open(io.BytesIO(photo_bytes(colour, size=size, shape=shape))).convert("RGB")

    return make


@pytest.fixture(scope="session", autouse=True)
def _broker():
    """Real Redis for Celery; an embedded Valkey when none runs on the broker's port."""
    from django.conf import settings

    from shop.runtime import ensure_redis

    ensure_redis(settings.CELERY_BROKER_URL)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty default cache: counts kept for a minute (the category tree's,
    autocomplete's) would otherwise carry one test's catalogue into the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def indexed(db):
    """indexed(*products) stores their vectors with the configured encoder, in-process."""
    from multimodal_search import services

    def run(*products):
        return services.index_products([p.pk for p in products])

    return run


@pytest.fixture
def catalogue(indexed):
    """Three indexed products of different kinds (a module may define its own ``catalogue``)."""
    products = [
        ProductFactory(sku="TENT-1", title="two person camping tent", photos=["green"]),
        ProductFactory(sku="LAMP-1", title="desk lamp", photos=["yellow"]),
        ProductFactory(sku="MUG-1", title="ceramic coffee mug", photos=["white"]),
    ]
    indexed(*products)
    return products


@pytest.fixture
def model_dir(settings, tmp_path):
    """A fresh MODEL_DIR (trained heads, classifiers, re-ranker) for one test."""
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "MODEL_DIR": str(tmp_path / "models")}
    return tmp_path / "models"


@pytest.fixture
def packaged_settings(settings, tmp_path):
    """The real packaged encoder, with its head and caches under tmp_path."""
    from multimodal_search.encoders import clear_cache

    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "MODEL_DIR": str(tmp_path / "models"),
        "ENCODERS": {
            "default": {
                "BACKEND": "multimodal_search.encoders.packaged.PackagedEncoder",
                "OPTIONS": {"head_path": str(tmp_path / "models" / "packaged-head.pt"), "device": "cpu"},
            }
        },
        "ENCODER": "default",
    }
    clear_cache()
    yield tmp_path / "models"
    clear_cache()


@pytest.fixture
def watch_calibrations(monkeypatch):
    """watch_calibrations() -> the list the name of every relevance calibration the re-ranker's searches
    use from then on is appended to (``Reranker.relevance``'s ``kind``: "rerank", "broad"...)."""
    from multimodal_search.ranking import reranker as reranking

    def watch() -> list[str]:
        kinds: list[str] = []
        relevance = reranking.Reranker.relevance

        def spy(self, pool, signals, kind, features=None):
            kinds.append(kind)
            return relevance(self, pool, signals, kind, features)

        monkeypatch.setattr(reranking.Reranker, "relevance", spy)
        return kinds

    return watch
