"""Models load when a worker or web process starts, not on the first request; indexing processes use their cores."""

from __future__ import annotations

import gc
import os
from typing import Any
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from multimodal_search import services
from multimodal_search.encoders import clear_cache, get_encoder
from multimodal_search.encoders.base import Lazy
from multimodal_search.services import warmup
from tests.factories import ProductFactory
from tests.fakes import HashEncoder

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def collector():
    """A warm-up here freezes this (test) process's objects and slows its collector: undone after each test."""
    threshold = gc.get_threshold()
    yield gc
    gc.unfreeze()
    gc.set_threshold(*threshold)


class LazyHashEncoder(HashEncoder):
    """``HashEncoder`` whose "weights" load on first use, counting loads (as ``WeightsOnUse`` does)."""

    def __init__(self, device: str | None = None, **options: Any) -> None:
        super().__init__(device=device, **options)
        self.loads = 0
        self._weights: Lazy[bool] = Lazy(self._load)

    def _load(self) -> bool:
        import torch

        self.loads += 1
        self.load_threads = torch.get_num_threads()
        return True

    @property
    def device(self) -> str:
        """The configured device, as a real encoder's (``HashEncoder`` says "cpu" whatever it is given)."""
        return self.device_name or "cpu"

    def encode_text(self, texts: list[str]) -> np.ndarray:
        self._weights.get()
        return super().encode_text(texts)

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        self._weights.get()
        return super().encode_image_pair(images)


@pytest.fixture
def lazy(settings):
    def use(*, warm_up: bool, **extra: Any) -> None:
        settings.MULTIMODAL_SEARCH = {
            **settings.MULTIMODAL_SEARCH,
            "ENCODERS": {
                **settings.MULTIMODAL_SEARCH["ENCODERS"],
                "lazy": {"BACKEND": "tests.test_warmup.LazyHashEncoder", "OPTIONS": {}},
            },
            "ENCODER": "lazy",
            "WARM_UP": warm_up,
            **extra,
        }
        clear_cache()

    yield use
    clear_cache()


def _first_search_loads() -> int:
    encoder = get_encoder()
    assert isinstance(encoder, LazyHashEncoder)
    before = encoder.loads
    services.search_products("red mug", k=5)
    return encoder.loads - before


@pytest.fixture
def torch_threads():
    import torch

    before = torch.get_num_threads()
    yield torch
    from multimodal_search.encoders import use_threads

    use_threads(None)
    torch.set_num_threads(before)


def test_a_warmed_worker_answers_without_loading(lazy, indexed, torch_threads):
    from shop.celery import prepare_indexing_process

    lazy(warm_up=True, INDEX_TORCH_THREADS=2)
    indexed(ProductFactory(title="Red mug", photos=["red"]))
    clear_cache()  # a fresh process: nothing loaded yet
    prepare_indexing_process()  # what Celery's worker_process_init runs in each worker process
    assert get_encoder().loads == 1  # type: ignore[attr-defined]
    assert _first_search_loads() == 0
    assert torch_threads.get_num_threads() == 2


def test_without_warm_up_the_first_search_loads(lazy, indexed, torch_threads):
    from shop.celery import prepare_indexing_process

    lazy(warm_up=False)
    indexed(ProductFactory(title="Red mug", photos=["red"]))
    clear_cache()
    prepare_indexing_process()
    assert get_encoder().loads == 0  # type: ignore[attr-defined]
    assert _first_search_loads() == 1


def test_a_gunicorn_worker_warms_up_after_loading_the_app(lazy, indexed):
    lazy(warm_up=True)
    indexed(ProductFactory(title="Red mug", photos=["red"]))
    clear_cache()
    _conf().post_worker_init(object())
    assert get_encoder().loads == 1  # type: ignore[attr-defined]
    assert _first_search_loads() == 0
    # and autocomplete's category counts, so that no first keystroke counts them
    from django.core.cache import cache

    from multimodal_search.services.indexing import current_model_id

    assert cache.get(f"mmsearch:suggest:categories:v2:{current_model_id()}") is not None


def _conf() -> Any:
    with mock.patch.dict(os.environ):  # the config module sets DATABASE_POOL_SIZE for its workers
        import shop.gunicorn_conf as conf
    return conf


@pytest.mark.django_db(transaction=True)  # outside a transaction, as in the master
def test_a_preloading_gunicorn_master_loads_the_models_and_closes_its_connections(lazy, indexed):
    from django.db import connection

    lazy(warm_up=True)
    indexed(ProductFactory(title="Red mug", photos=["red"]))
    clear_cache()
    conf = _conf()
    conf.when_ready(mock.Mock(cfg=mock.Mock(preload_app=False)))
    assert get_encoder().loads == 0  # type: ignore[attr-defined]
    connection.ensure_connection()
    conf.when_ready(mock.Mock(cfg=mock.Mock(preload_app=True)))
    assert get_encoder().loads == 1  # type: ignore[attr-defined]
    assert connection.connection is None  # no child may share it; each opens its own on first use
    conf.post_worker_init(object())  # in a forked worker: already loaded
    assert get_encoder().loads == 1  # type: ignore[attr-defined]
    assert _first_search_loads() == 0


@pytest.mark.django_db(transaction=True)
def test_a_preloading_master_runs_the_models_on_one_thread_and_its_workers_on_theirs(lazy, torch_threads):
    # a child forked after torch's OpenMP threads ran would block in its first parallel operation
    lazy(warm_up=True, TORCH_THREADS=2)
    _conf().when_ready(mock.Mock(cfg=mock.Mock(preload_app=True)))
    encoder = get_encoder()
    assert encoder.loads == 1 and encoder.load_threads == 1  # type: ignore[attr-defined]
    assert torch_threads.get_num_threads() == 2  # what each forked worker then runs with


@pytest.mark.django_db(transaction=True)
def test_a_preloading_master_leaves_gpu_models_to_its_workers(lazy, indexed, caplog):
    from django.db import connection

    lazy(warm_up=True, DEVICE="cuda")  # a CUDA context does not survive a fork
    indexed(ProductFactory(title="Red mug", photos=["red"]))
    clear_cache()
    connection.ensure_connection()
    with caplog.at_level("INFO", logger="multimodal_search.services.warmup"):
        _conf().when_ready(mock.Mock(cfg=mock.Mock(preload_app=True)))
    assert get_encoder().loads == 0  # type: ignore[attr-defined]
    assert "each worker loads its own models" in caplog.text
    assert connection.connection is None
    _conf().post_worker_init(object())  # each worker, after the fork
    assert get_encoder().loads == 1  # type: ignore[attr-defined]


def test_indexing_threads_default_to_the_cores_available(lazy, torch_threads):
    lazy(warm_up=False, INDEX_TORCH_THREADS=None)
    assert warmup.indexing_threads() == len(os.sched_getaffinity(0))
    lazy(warm_up=False, INDEX_TORCH_THREADS=3)
    assert services.use_indexing_threads() == 3 and torch_threads.get_num_threads() == 3
    # an encoder created later in this process keeps the indexing threads, not TORCH_THREADS (1)
    clear_cache()
    get_encoder()
    assert torch_threads.get_num_threads() == 3


@pytest.fixture
def encoding_processes():
    """``services.prepare_pool`` sets what this process's children inherit: reset after each test."""
    yield warmup
    warmup._encoding_processes = 1


@pytest.mark.parametrize(
    ("pool", "concurrency", "each"),
    [
        ("prefork", 2, "half"),
        ("celery.concurrency.prefork.TaskPool", 1, "all"),
        ("threads", 2, "half"),  # two tasks encode at once in one process
        ("solo", 8, "all"),  # one task at a time, whatever --concurrency says
        ("prefork", "auto", "one"),  # Celery's "auto": a child per core
    ],
)
def test_a_worker_shares_its_cores_among_the_processes_of_its_pool(lazy, encoding_processes, pool, concurrency, each):
    from celery.concurrency.prefork import TaskPool

    from shop.celery import share_cores_among_pool

    lazy(warm_up=False, INDEX_TORCH_THREADS=None)
    cores = len(os.sched_getaffinity(0))
    pool_cls = TaskPool if pool.startswith("celery.") else pool  # the CLI hands over the class
    share_cores_among_pool(mock.Mock(pool_cls=pool_cls, concurrency=concurrency))  # Celery's worker_init
    expected = {"all": cores, "half": max(1, cores // 2), "one": 1}[each]
    assert warmup.indexing_threads() == expected
    lazy(warm_up=False, INDEX_TORCH_THREADS=3)  # set: as set, however many processes there are
    assert warmup.indexing_threads() == 3


def test_a_failing_warm_up_is_logged_and_the_process_still_starts(lazy, caplog):
    lazy(warm_up=True)
    with mock.patch.object(LazyHashEncoder, "_load", side_effect=OSError("weights not found")):
        assert services.warm_up() is None
    assert "warm-up failed" in caplog.text and "weights not found" in caplog.text


@pytest.mark.slow
def test_the_packaged_encoder_serves_its_first_search_without_loading(packaged_settings, settings, indexed):
    from multimodal_search.encoders.packaged import PackagedEncoder

    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "WARM_UP": True}
    seconds = services.warm_up()
    assert seconds is not None
    encoder = get_encoder()
    assert isinstance(encoder, PackagedEncoder) and encoder._text.loaded and encoder._cnn.loaded
    with (
        mock.patch.object(type(encoder._text), "_load", side_effect=AssertionError("MiniLM loaded on a request")),
        mock.patch.object(type(encoder._cnn), "_load", side_effect=AssertionError("the CNN loaded on a request")),
    ):
        services.search_products("red jacket", k=5)
        services.search_products(None, image=Image.new("RGB", (80, 80), (200, 30, 30)), k=5)


def test_warm_up_freezes_the_loaded_models_out_of_the_collector(lazy, collector, settings):
    lazy(warm_up=True)
    collector.unfreeze()
    collector.set_threshold(700, 10, 10)
    assert collector.get_freeze_count() == 0
    warmup.warm_up()
    assert collector.get_freeze_count() > 0  # everything alive after the models loaded
    assert collector.get_threshold() == (20_000, 10, 10)  # GC_THRESHOLD; the older generations as they were


def test_gc_threshold_none_leaves_the_collector_as_it_is(lazy, collector):
    lazy(warm_up=True, GC_THRESHOLD=None)
    collector.set_threshold(700, 10, 10)
    warmup.warm_up()
    assert collector.get_threshold() == (700, 10, 10)
