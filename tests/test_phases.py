"""Where an indexing run's time goes: ``services.phases`` and the line ``index_products`` logs."""

from __future__ import annotations

import re

import pytest

from multimodal_search import services
from multimodal_search.services import phases
from tests.factories import ProductFactory
from tests.test_backbone_reuse import split  # noqa: F401  (the fixture)


@pytest.fixture
def clock(monkeypatch):
    """``phases``' clock reads these seconds in turn."""

    def use(*readings: float) -> None:
        ticks = iter(readings)
        monkeypatch.setattr(phases.time, "perf_counter", lambda: next(ticks))

    return use


def test_an_inner_phase_is_taken_out_of_the_outer_one(clock):
    clock(0, 1, 4, 6, 10, 12)
    with phases.recording() as seconds:
        with phases.phase("encode"), phases.phase("decode"):  # 0 .. 6, of which 1 .. 4 decoding
            pass
        with phases.phase("encode"):  # 10 .. 12
            pass
    assert seconds == {"encode": 3 + 2, "decode": 3}
    assert phases.summary(seconds) == "encode 5.00 s, decode 3.00 s"


def test_a_phase_outside_a_recording_only_runs_its_block(clock):
    clock()  # any reading of the clock would raise StopIteration
    ran = []
    with phases.phase("write"):
        ran.append(True)
    assert ran == [True]


def _logged(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("indexed ")]


@pytest.mark.django_db
def test_indexing_logs_the_seconds_of_each_step(split, caplog):  # noqa: F811
    products = [ProductFactory(title=f"Mug {i}", photos=["red", "blue"]) for i in range(2)]
    pks = [product.pk for product in products]
    split("a")
    with caplog.at_level("INFO", logger="multimodal_search.services.indexing"):
        services.index_products(pks)
        services.index_products(pks)  # unchanged: nothing encoded, nothing logged
        services.index_products(pks, force=True)  # the backbones' outputs are kept: no photo is decoded
    first, again = _logged(caplog)
    step = r"([a-z ]+) \d+\.\d\d s"
    assert re.fullmatch(rf"indexed 2 of 2 products in \d+\.\d\d s: {step}(, {step})*", first), first
    named = [re.fullmatch(step, part)[1] for part in first.split(": ", 1)[1].split(", ")]  # type: ignore[index]
    assert named == ["read", "other encoding", "text model", "decode", "photo model", "write"]
    assert "decode" not in again and "photo model" in again and "write" in again
