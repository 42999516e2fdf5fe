"""Offline evaluation of personalisation: leave-last-out recommendations, simulated shoppers, the command."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from multimodal_search.evaluation import personal
from multimodal_search.evaluation.personal_report import UNAVAILABLE
from multimodal_search.models import ShopperEvent
from multimodal_search.ranking.personal import Event
from shop.catalog.models import Category
from tests.factories import ProductFactory

KINDS = {"hoodie": "Men > Tops > Hoodies & Sweatshirts", "tent": "Gear > Camping Tents", "mug": "Home > Coffee Mugs"}
COLOURS = ("red", "blue", "green")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def shop(indexed):
    """36 indexed products: 4 of each colour in each of 3 categories; {(colour, noun): [products]}."""
    groups: dict[tuple[str, str], list] = {}
    for noun, path in KINDS.items():
        category = Category.from_path(path)
        for colour in COLOURS:
            groups[(colour, noun)] = [
                ProductFactory(
                    sku=f"{noun}-{colour}-{i}",
                    title=f"{colour} {noun} model {i}",
                    category=category,
                    color=colour.title(),
                    photos=[colour],
                )
                for i in range(4)
            ]
    indexed(*[p for products in groups.values() for p in products])
    return groups


def test_leave_last_out_holds_out_the_last_product_and_all_its_events():
    events = [
        Event("view", "A", T0),
        Event("view", "B", T0 + timedelta(hours=1)),
        Event("view", "C", T0 + timedelta(hours=2)),
        Event("purchase", "B", T0 + timedelta(hours=3)),
    ]
    case = personal.leave_last_out("s", list(reversed(events)))
    assert case is not None
    assert case.held_out == "B" and case.at == T0 + timedelta(hours=3)
    assert [e.product_pk for e in case.train] == ["A", "C"]
    assert personal.leave_last_out("s", [Event("view", "A", T0), Event("cart", "A", T0)]) is None


def test_taste_groups_and_their_query_word(shop):
    catalogue = personal.load_catalogue()
    groups = personal.taste_groups(catalogue)
    assert len(groups) == 9 and all(len(g.pks) == 4 for g in groups)
    hoodies = next(g for g in groups if g.colour == "red" and "Hoodies" in g.category)
    assert hoodies.query == "hoodies"
    assert set(hoodies.pks) == {str(p.pk) for p in shop[("red", "hoodie")]}


def test_simulated_shoppers_beat_popularity_and_random(shop):
    catalogue = personal.load_catalogue()
    settings = personal.Settings.from_settings()
    simulated = personal.simulate_shoppers(catalogue, 60, seed=3)
    assert len(simulated) == 60
    for case, group in simulated:
        assert 4 <= len(case.train) <= 10
        assert case.held_out in group.pks and case.held_out not in case.history
        assert case.at > max(e.at for e in case.train)
        assert sum(pk in group.pks for pk in case.history) >= 2
    results = personal.evaluate_recommendations([c for c, _ in simulated], catalogue, settings, k=10, seed=3)
    hit = {m: results["methods"][m]["hit_rate"] for m in personal.METHODS}
    assert results["n"] == 60
    assert hit["profile"] >= 1.5 * hit["popularity"]
    assert hit["profile"] > hit["random"]
    assert results["methods"]["profile"]["ndcg"] > results["methods"]["popularity"]["ndcg"]
    # the random baseline is near its expectation: 10 of the ~30 products outside the history
    assert 0.15 < hit["random"] < 0.55


def test_recorded_histories_are_grouped_by_user_else_session(shop):
    red, blue = shop[("red", "hoodie")], shop[("blue", "tent")]
    user = get_user_model().objects.create_user("shopper", password="x")

    def record(kind, product, hours, session="", who=None):
        ShopperEvent.objects.create(
            kind=kind, product_pk=str(product.pk), session=session, user=who, created_at=T0 + timedelta(hours=hours)
        )

    # a signed-in shopper of red hoodies (the session differs between visits: the user groups them)
    for hours, product in enumerate(red[:3]):
        record("view", product, hours, session=f"visit-{hours}", who=user)
    record("purchase", red[3], 10, session="visit-9", who=user)
    # an anonymous shopper of blue tents
    record("view", blue[0], 0, session="abc")
    record("cart", blue[1], 1, session="abc")
    record("view", blue[2], 2, session="abc")
    # one product only: not a case
    record("view", red[0], 0, session="lonely")

    catalogue = personal.load_catalogue()
    settings = personal.Settings.from_settings()
    cases, unusable = personal.recorded_cases(catalogue, settings)
    assert unusable == 0
    by_shopper = {case.shopper: case for case in cases}
    assert set(by_shopper) == {f"user:{user.pk}", next(k for k in by_shopper if k.startswith("session:"))}
    assert by_shopper[next(k for k in by_shopper if k.startswith("session:"))].shopper == "session:abc"  # stored hash
    assert by_shopper[f"user:{user.pk}"].held_out == str(red[3].pk)
    results = personal.evaluate_recommendations(cases, catalogue, settings, k=10)
    assert results["n"] == 2
    assert results["methods"]["profile"]["hit_rate"] == 1.0


def test_command_prints_the_table_and_writes_json(shop, tmp_path):
    red = shop[("red", "hoodie")]
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        json.dumps({"qid": "q1", "kind": "text", "query": "red hoodie", "graded": {p.sku: 2 for p in red}})
        + "\n"
        + json.dumps(
            {"qid": "q2", "kind": "text", "query": "blue tent", "graded": {p.sku: 2 for p in shop[("blue", "tent")]}}
        )
        + "\n"
    )
    out = io.StringIO()
    target = tmp_path / "out" / "personal.json"
    call_command(
        "mmsearch_evaluate_personal",
        "--shoppers=40",
        "--rerank-shoppers=6",
        f"--queries={queries}",
        f"--json={target}",
        stdout=out,
        stderr=io.StringIO(),
    )
    text = out.getvalue()
    assert "simulated  profile" in text and "simulated  popularity" in text and "real       random" in text
    assert "simulated: profile hit-rate@10" in text and "acceptance >= 1.5x: met" in text
    assert "real: no recorded shopper" in text
    data = json.loads(target.read_text())
    assert data["products"] == 36 and data["simulated"]["n"] == 40
    assert data["simulated"]["ratio_vs_popularity"] is None or data["simulated"]["ratio_vs_popularity"] >= 1.5
    assert personal.reranking_available()
    assert data["reranking"]["lift"]["n"] == 6
    assert data["reranking"]["neutral"]["n"] == 2
    assert "re-ranking (6 simulated shoppers" in text and "neutral profile: nDCG@10" in text
    assert UNAVAILABLE not in text


def test_a_blend_sweep_suggests_the_strongest_harmless_blend(shop, tmp_path):
    queries = tmp_path / "queries.jsonl"
    red = shop[("red", "hoodie")]
    queries.write_text(json.dumps({"qid": "q1", "kind": "text", "query": "hoodie", "graded": {p.sku: 2 for p in red}}))
    out = io.StringIO()
    target = tmp_path / "sweep.json"
    args = ["--shoppers=20", "--rerank-shoppers=6", f"--queries={queries}", "--split=", f"--json={target}"]
    call_command("mmsearch_evaluate_personal", *args, "--blends=0,0.5", stdout=out, stderr=io.StringIO())
    data = json.loads(target.read_text())["reranking"]
    assert [row["blend"] for row in data["sweep"]] == [0.0, 0.5]
    off = data["sweep"][0]
    assert off["lift"]["lift"] == 0 and off["neutral"]["drop"] == 0  # blend 0: nothing moves
    assert data["suggested_blend"] == personal.suggest_blend(data["sweep"])
    assert "blend sweep" in out.getvalue() and "suggested PERSONALISATION['BLEND']" in out.getvalue()
    with pytest.raises(CommandError, match="--blends"):
        call_command("mmsearch_evaluate_personal", "--blends=x", stdout=io.StringIO(), stderr=io.StringIO())


def test_suggest_blend_needs_a_lift_and_a_small_drop():
    sweep = [
        {"blend": 0.1, "lift": {"lift": 0.01}, "neutral": {"drop": 0.002}},
        {"blend": 0.5, "lift": {"lift": 0.05}, "neutral": {"drop": 0.009}},
        {"blend": 1.0, "lift": {"lift": 0.08}, "neutral": {"drop": 0.03}},
    ]
    assert personal.suggest_blend(sweep) == 0.5
    assert personal.suggest_blend([{"blend": 0.2, "lift": {"lift": 0.0}, "neutral": {"drop": 0.0}}]) is None


def test_command_without_indexed_products_fails_with_one_line(db):
    with pytest.raises(CommandError, match="no products are indexed"):
        call_command("mmsearch_evaluate_personal", stdout=io.StringIO(), stderr=io.StringIO())


def test_the_profile_recommender_takes_one_colour_of_a_product_and_none_of_one_in_the_history():
    pks = ["HD-Gray", "HD-Black", "HD-Blue", "JK-Blue", "JK-Red", "TE-White"]
    groups = {"HD-Gray": "HD", "HD-Black": "HD", "HD-Blue": "HD", "JK-Blue": "JK", "JK-Red": "JK"}
    catalogue = personal.Catalogue(
        model_id="m",
        pks=pks,
        vectors=np.eye(len(pks), dtype=np.float32),
        fields={pk: {"group": groups[pk]} if pk in groups else {} for pk in pks},
        categories={pk: [] for pk in pks},
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    tiebreak = np.arange(len(pks))
    top = personal._top_groups(catalogue, scores, set(), 3, tiebreak)
    assert [pks[i] for i in top] == ["HD-Gray", "JK-Blue", "TE-White"]  # the nearest colour of each
    seen = personal._top_groups(catalogue, scores, {"HD-Black"}, 3, tiebreak)
    assert [pks[i] for i in seen] == ["JK-Blue", "TE-White"]  # no colour of the hoodie seen; nothing else left
    # a history of men's products: the women's jacket after the tee, though nearer
    genders = {"HD": "Men", "JK": "Women", "TE": "Men"}
    catalogue.fields = {pk: {**catalogue.fields[pk], "gender": genders[pk[:2]]} for pk in pks}
    assert [pks[i] for i in personal._top_groups(catalogue, scores, {"HD-Black"}, 3, tiebreak)] == [
        "TE-White",
        "JK-Blue",
    ]
    assert [pks[i] for i in personal._top_groups(catalogue, scores, {"HD-Black"}, 1, tiebreak)] == ["TE-White"]
