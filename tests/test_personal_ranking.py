"""Personal re-ranking in the search service: a shopper's taste reorders near-ties, gently."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_search import services
from multimodal_search.ranking import personal
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.personal import Taste
from multimodal_search.services import taste
from multimodal_search.store import get_store
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_blend_moves_by_standard_deviations_and_keeps_scale_free():
    scores = {"a": 1.0, "b": 0.9, "c": 0.1}
    affinity = {"a": 0.1, "b": 0.9, "c": 0.5}
    assert personal.blend(scores, affinity, 0.0) == scores
    nudged = personal.blend(scores, affinity, 0.5)
    assert nudged["b"] > nudged["a"]  # a near-tie flips towards the taste
    assert nudged["c"] < nudged["a"]  # a clear loser stays a loser
    scaled = personal.blend({pk: s * 100 for pk, s in scores.items()}, affinity, 0.5)
    assert sorted(scaled, key=scaled.get) == sorted(nudged, key=nudged.get)  # same order at any score scale
    assert personal.blend(scores, {"a": 0.3, "b": 0.3, "c": 0.3}, 0.5) == scores  # equal affinities: no change


@pytest.fixture
def hoodies(indexed):
    colours = ["red", "blue", "green", "black", "yellow", "white"]
    made = {
        colour: [ProductFactory(title=f"Pullover hoodie {n}", color=colour.title(), photos=[colour]) for n in range(2)]
        for colour in colours
    }
    others = [ProductFactory(title=f"{colour} mug", color=colour.title(), photos=[colour]) for colour in colours]
    indexed(*[p for group in made.values() for p in group], *others)
    return made


def _taste(products, weight=10.0) -> Taste:
    from multimodal_search.services.query import current_encoder

    model_id = current_encoder()[1]
    vectors = get_store().product_vectors([str(p.pk) for p in products], "fused_vector", model_id=model_id)
    state = personal.ProfileState(None, 0.0, None)
    from django.utils import timezone

    now = timezone.now()
    events = [personal.Event("view", str(p.pk), now) for p in products]
    state = personal.fold(state, events, vectors, now=now, event_weights={"view": 1.0}, half_life_days=30)
    vector = personal.profile_vector(state)
    assert vector is not None
    return Taste(vector, weight, tuple(("view", str(p.pk)) for p in reversed(products)))


def firm_blend(settings, blend: float = 0.5) -> None:
    """A stronger blend than the default: the test encoder's scores are crude (a yellow mug leads "hoodie")."""
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "PERSONALISATION": {**settings.MULTIMODAL_SEARCH["PERSONALISATION"], "BLEND": blend},
    }


def _mean_rank(hits, wanted) -> float:
    ranks = [i for i, hit in enumerate(hits) if hit.product_pk in wanted]
    return float(np.mean(ranks)) if ranks else 99.0


def test_red_hoodie_viewer_gets_red_hoodies_higher(hoodies, settings):
    firm_blend(settings)
    red = {str(p.pk) for p in hoodies["red"]}
    anonymous = services.search_products("hoodie", k=12)
    viewer = services.search_products("hoodie", k=12, personal=_taste(hoodies["red"]))
    assert _mean_rank(viewer.hits, red) < _mean_rank(anonymous.hits, red)
    assert viewer.query.get("personalised") is True and "personalised" not in anonymous.query
    assert all(hit.personal is None for hit in anonymous.hits)
    moved = [hit for hit in viewer.hits if hit.personal and hit.personal["moved_up"]]
    assert moved, "some result moved up for the viewer"
    for hit in moved:
        assert hit.explanation[v.PERSONAL] > 0
        assert abs(sum(hit.explanation.values()) - 1) < 0.01
        if hit.personal["moved_up"] >= taste.BECAUSE_MIN_MOVE:  # far enough to explain
            because = hit.personal["because"]
            assert because["product"] in red and because["kind"] == "view" and "hoodie" in because["title"]
        else:
            assert "because" not in hit.personal
    explained = [hit for hit in moved if "because" in hit.personal]
    assert explained, "a red hoodie moved far enough to say why"
    assert explained[0].as_dict()["personal"]["because"]["product"] in red


def test_thin_profiles_and_zero_blend_change_nothing(hoodies, settings):
    baseline = [hit.product_pk for hit in services.search_products("hoodie", k=12).hits]
    thin = _taste(hoodies["red"], weight=0.5)  # below MIN_WEIGHT (3)
    assert [hit.product_pk for hit in services.search_products("hoodie", k=12, personal=thin).hits] == baseline
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "PERSONALISATION": {**settings.MULTIMODAL_SEARCH["PERSONALISATION"], "BLEND": 0},
    }
    strong = _taste(hoodies["red"])
    response = services.search_products("hoodie", k=12, personal=strong)
    assert [hit.product_pk for hit in response.hits] == baseline
    assert "personalised" not in response.query


def test_browse_passes_the_taste_on(hoodies, settings):
    firm_blend(settings)
    red = {str(p.pk) for p in hoodies["red"]}
    plain = services.browse_products("hoodie", page_size=12)
    mine = services.browse_products("hoodie", page_size=12, personal=_taste(hoodies["red"]))
    assert _mean_rank(mine.hits, red) < _mean_rank(plain.hits, red)


def test_the_why_says_because_you_viewed():
    from multimodal_search.ranking.reasons import reasons

    found = reasons(
        {v.TEXT: 0.6, v.PERSONAL: 0.4},
        query_text="hoodie",
        title="Pullover hoodie",
        because={"product": "7", "kind": "purchase", "title": "Red zip hoodie"},
    )
    assert [r.signal for r in found] == [v.TEXT, v.PERSONAL]
    assert found[1].sentence == "because you bought “Red zip hoodie”" and found[1].label == "your history"
