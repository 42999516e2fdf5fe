"""An honest "no match": explanations over the signals that fired, calibrated relevance, thresholds, ``match``."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from multimodal_search import services
from multimodal_search.learning import calibration as fitting
from multimodal_search.learning.reranker import train_reranker
from multimodal_search.models import SearchLog
from multimodal_search.ranking import calibration, fusion
from multimodal_search.ranking import reranker as reranking
from multimodal_search.ranking.intent import facets_only
from multimodal_search.services import search as search_module
from multimodal_search.services.query import current_encoder
from shop.catalog.models import Product
from tests.factories import ProductFactory
from tests.pages import ticked_link

SPECS = [
    ("red", "Alpha Hoodie"),
    ("blue", "Beta Hoodie"),
    ("red", "Gamma Backpack"),
    ("green", "Delta Backpack"),
    ("blue", "Epsilon Jacket"),
    ("yellow", "Zeta Jacket"),
    ("black", "Eta Watch"),
    ("white", "Theta Watch"),
    ("green", "Iota Tent"),
    ("white", "Kappa Mug"),
]


@pytest.fixture
def trained(indexed, model_dir):
    """A small indexed catalogue (hash encoder) with a re-ranker and its calibration trained on it."""
    products = [ProductFactory(title=title, photos=[colour]) for colour, title in SPECS]
    indexed(*products)
    summary = train_reranker(max_queries=60, calibration=40)
    return products, summary


def test_contributions_give_nothing_to_a_signal_at_zero():
    signals = {"text": {"a": 0.5}, "lexical": {"a": 0.0}, "colour": {}}
    parts = {"text": {"a": 0.2}, "lexical": {"a": 0.49}, "colour": {"a": -0.3}}  # re-ranker terms
    shares = fusion.contributions("a", signals, {"text": 1.0, "lexical": 1.0, "colour": 1.0}, parts=parts)
    assert shares == {"text": 1.0, "lexical": 0.0, "colour": 0.0}
    none_fired = fusion.contributions("a", {"text": {"a": -0.1}}, {"text": 1.0})
    assert none_fired == {"text": 0.0}
    mixed = fusion.contributions("a", {"text": {"a": 0.3}, "image": {"a": 0.1}}, {"text": 0.5, "image": 0.5})
    assert mixed == {"text": 0.75, "image": 0.25}


def _check_explanations(hits) -> int:
    """Assert the rule on every hit; -> how many (hit, signal) pairs had a signal that did not fire."""
    silent = 0
    for hit in hits:
        for name, share in hit.explanation.items():
            value = hit.signals.get(name, 0.0)
            if value <= 0:
                silent += 1
                assert share == 0, (hit.product, name, value, hit.explanation)
        total = sum(hit.explanation.values())
        assert total == 0 or total == pytest.approx(1, abs=1e-3), hit.explanation
    return silent


@pytest.mark.django_db
def test_explanations_credit_only_signals_that_fired_for_every_method(trained, pil_photo):
    silent = {}
    for method in services.METHODS:
        checked = 0
        for text in ("hoodie", "red backpack", "xyzzy", "green"):
            response = services.search_products(text, k=10, method=method)
            checked += _check_explanations(response.hits)
        if method not in ("text", "lexical"):  # the words-only methods refuse a photo
            checked += _check_explanations(services.search_products(image=pil_photo("blue"), k=10, method=method).hits)
            checked += _check_explanations(services.search_products("watch", pil_photo("black"), method=method).hits)
        silent[method] = checked
    # the rule was exercised: keyword-free candidates are in every words-reading method's results
    assert all(silent[method] > 0 for method in ("rerank", "feature", "decision", "embedding")), silent
    assert services.search_products("hoodie", method="rerank").method == "rerank"
    product = trained[0][0]
    assert _check_explanations(services.similar_products(product)) >= 0


@pytest.mark.django_db
def test_trained_calibration_gives_each_text_result_a_relevance(trained, model_dir, pil_photo):
    _products, summary = trained
    assert set(summary["cuts"]) == {"related", "exact"}
    assert 0 <= summary["cuts"]["related"] <= summary["cuts"]["exact"] <= 1
    stored = json.loads((model_dir / f"{reranking.ARTEFACT}.json").read_text())
    assert set(stored["calibrations"]) == set(calibration.INPUTS)
    for method in services.METHODS:
        response = services.search_products("hoodie", k=10, method=method)
        assert response.hits
        relevances = [hit.relevance for hit in response.hits]
        assert all(value is not None and 0 <= value <= 1 for value in relevances), (method, relevances)
        assert response.hits[0].as_dict()["relevance"] == round(relevances[0], 4)
        assert response.match in ("exact", "related", "none")
    rerank = services.search_products("hoodie", k=10, method="rerank")
    hoodies = [hit.relevance for hit in rerank.hits if "Hoodie" in hit.product.title]
    others = [hit.relevance for hit in rerank.hits if "Hoodie" not in hit.product.title]
    assert min(hoodies) > max(others)
    photo = services.search_products(image=pil_photo("red"), k=5)
    assert photo.hits and all(hit.relevance is None for hit in photo.hits) and photo.match is None


@pytest.mark.django_db
def test_min_relevance_drops_results_and_match_says_so(trained, settings):
    everything = services.search_products("hoodie", k=10)
    assert everything.min_relevance is None and len(everything.hits) == 10  # the default keeps today's results
    cut = sorted(hit.relevance for hit in everything.hits)[5]
    kept = services.search_products("hoodie", k=10, min_relevance=cut)
    assert [hit.product for hit in kept.hits] == [hit.product for hit in everything.hits if hit.relevance >= cut]
    assert kept.min_relevance == cut
    assert services.search_products("hoodie", k=10, min_relevance="auto").min_relevance == trained[1]["cuts"]["related"]
    nothing = services.search_products("hoodie", k=10, min_relevance=1.0)
    assert nothing.hits == [] and nothing.match == "none"
    with pytest.raises(services.SearchError, match="min_relevance"):
        services.search_products("hoodie", min_relevance=1.5)

    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "RELEVANCE": {"STOREFRONT_MIN": None, "RELATED": 0.0, "EXACT": 1.0},
    }
    assert services.search_products("hoodie").match == "related"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"RELATED": 1.0, "EXACT": 1.0}}
    assert services.search_products("hoodie").match == "none"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"RELATED": 0.0, "EXACT": 0.0}}
    assert services.search_products("hoodie").match == "exact"


@pytest.mark.django_db
def test_without_a_trained_layer_relevance_is_unknown_and_nothing_is_dropped(indexed, model_dir):
    products = [ProductFactory(title=title, photos=[colour]) for colour, title in SPECS[:4]]
    indexed(*products)
    response = services.search_products("hoodie", k=4, min_relevance="auto")
    assert len(response.hits) == 4 and response.match is None and response.min_relevance is None
    assert all(hit.as_dict()["relevance"] is None for hit in response.hits)


def _query(rng: np.random.Generator, answerable: float) -> fitting.CalibrationQuery:
    """A synthetic search: relevant candidates have higher text similarity than the others."""
    pool = [f"p{i}" for i in range(30)]
    relevant = np.zeros(30, dtype=bool)
    relevant[: rng.integers(1, 6)] = True
    text = np.where(relevant, 0.6, 0.3) + rng.normal(0, 0.08, 30) + (answerable - 0.5) * 0.1
    signals = {"text": dict(zip(pool, text.tolist())), "image": dict(zip(pool, (text / 2).tolist()))}
    return fitting.CalibrationQuery(pool, signals, relevant)


def _first_feature_model() -> reranking.Reranker:
    """A re-ranker whose logit is its first feature."""
    features = len(reranking.FEATURES)
    return reranking.Reranker(
        weights=np.eye(features)[0], bias=0.0, mean=np.zeros(features), scale=np.ones(features), version="t", meta={}
    )


def test_calibration_is_fitted_on_answerable_and_leave_kind_out_queries():
    rng = np.random.default_rng(3)
    model = _first_feature_model()
    queries = [_query(rng, rng.random()) for _ in range(80)]
    calibrations, cuts, report = fitting.fit_calibrations(model, queries)
    assert set(calibrations) == {calibration.RERANK, calibration.SIGNALS}  # no broad queries: no broad calibration
    assert "broad" not in report
    assert report["queries"] == 80 and report["leave_kind_out"] == 80
    assert report["lost_first_relevant"] <= fitting.MAX_LOST
    assert report["leave_kind_out_emptied"] > 0.5  # a lone high text similarity is rare without a relevant product
    assert 0 < cuts["related"] <= fitting.EVEN_ODDS and cuts["related"] <= cuts["exact"] <= 1
    signals_model = calibrations["signals"]
    low, high = signals_model.probability(np.array([[0.2, 0.1], [0.7, 0.35]]))
    assert low < 0.2 < 0.8 < high
    # too few queries: nothing is fitted, and results get no relevance
    assert fitting.fit_calibrations(model, queries[:2])[:2] == ({}, {})


def _broad_query(rng: np.random.Generator) -> fitting.CalibrationQuery:
    """A synthetic "red": the red candidates (a colour signal near 1) are relevant, however far their words."""
    pool = [f"p{i}" for i in range(30)]
    relevant = rng.random(30) < 0.3
    colour = np.where(relevant, 0.7, 0.02) + rng.normal(0, 0.05, 30)
    text = 0.25 + rng.normal(0, 0.05, 30)  # a colour word alone is far from every product's text
    signals = {"text": dict(zip(pool, text.tolist())), "colour": dict(zip(pool, colour.tolist()))}
    return fitting.CalibrationQuery(pool, signals, relevant, broad=True)


def test_queries_of_a_colour_or_a_gender_alone_get_a_calibration_of_their_own():
    rng = np.random.default_rng(5)
    model = _first_feature_model()
    named = [_query(rng, rng.random()) for _ in range(60)]
    broad = [_broad_query(rng) for _ in range(20)]
    calibrations, cuts, report = fitting.fit_calibrations(model, named + broad)
    assert set(calibrations) == set(calibration.INPUTS)
    # the named queries' calibration and cuts are what they are without the broad queries
    alone = fitting.fit_calibrations(model, named)
    assert cuts == alone[1] and report["queries"] == 60
    np.testing.assert_allclose(calibrations["rerank"].weights, alone[0]["rerank"].weights)
    assert report["broad"]["queries"] == 20 and report["broad"]["leave_kind_out"] == 20
    # the rerank calibration calls the red candidates of a colour word unlikely; the broad one keeps them
    assert report["broad"]["kept_first_relevant"] == 1.0 > report["broad"]["kept_first_relevant_rerank"]
    assert report["broad"]["leave_kind_out_emptied"] > 0.5
    red, other = calibrations["broad"].probability(np.array([[0.0, 0.7, 1.0, 1.0, 1.0], [0.0, 0.02, 1.0, 1.0, 1.0]]))
    assert red > cuts["related"] > other
    # the line mmsearch_train prints says it
    assert "Queries of a colour, a gender, a department or a quality alone (20)" in fitting.report_line(report, cuts)
    # the inputs: a facet the query does not ask for (no gender, department or quality signal) counts as had
    x = calibration.calibration_inputs("broad", ["a", "b"], {"colour": {"a": 0.6}}, np.array([1.0, 2.0]))
    np.testing.assert_allclose(x, [[1.0, 0.6, 1.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0, 1.0]])


def test_facets_only_tells_a_colour_or_a_gender_alone():
    for text in ("red", "Black", "women's black", "red for men", "womens", "navy and white", "ladies"):
        assert facets_only(text), text
    for text in ("", None, "red hoodie", "xyzzy", "women's running shorts", "s", "for"):
        assert not facets_only(text), text


def test_match_summary():
    assert calibration.match_summary([], 0.8, 0.2) == "none"
    assert calibration.match_summary([0.9, 0.1], 0.8, 0.2) == "exact"
    assert calibration.match_summary([0.5, 0.6], 0.8, 0.2) == "related"
    assert calibration.match_summary([0.1, 0.05], 0.8, 0.2) == "none"
    assert calibration.match_summary([None], 0.8, 0.2) is None


@pytest.mark.django_db
def test_a_colour_alone_shows_the_products_of_that_colour_at_the_storefront_cut(client, trained):
    products, summary = trained
    assert summary["calibration"]["broad"]["queries"] >= fitting.MIN_QUERIES
    red = {str(p.pk) for colour, p in zip([c for c, _ in SPECS], products) if colour == "red"}
    response = services.search_products("red", k=10, min_relevance="auto")
    shown = {str(hit.product_pk) for hit in response.hits}
    assert red <= shown and len(shown) < len(products)  # the red ones, not the whole catalogue
    assert response.match == "exact"
    model = reranking.get_reranker("hash-v1")
    assert model is not None and calibration.BROAD in model.calibrations
    page = client.get("/search/", {"q": "red"}).content.decode()
    assert "Alpha Hoodie" in page and "Gamma Backpack" in page and "No results" not in page


@pytest.mark.django_db
def test_api_min_relevance_and_match(client, trained):
    body = client.get("/api/search/", {"q": "hoodie", "k": 5}).json()
    assert body["match"] in ("exact", "related", "none") and body["min_relevance"] is None
    assert len(body["results"]) == 5 and all(0 <= item["relevance"] <= 1 for item in body["results"])
    strict = client.get("/api/search/", {"q": "hoodie", "k": 5, "min_relevance": "1"}).json()
    assert strict["results"] == [] and strict["match"] == "none" and strict["min_relevance"] == 1.0
    auto = client.get("/api/search/", {"q": "hoodie", "min_relevance": "auto"}).json()
    assert auto["min_relevance"] == trained[1]["cuts"]["related"]
    for bad in ("1.5", "-0.1", "nan", "high"):
        response = client.get("/api/search/", {"q": "hoodie", "min_relevance": bad})
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "min_relevance"
        assert "from 0 to 1" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_storefront_page_says_when_nothing_matches_exactly(client, trained, settings):
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "RELEVANCE": {"STOREFRONT_MIN": 0.0, "RELATED": 0.0, "EXACT": 1.0},
    }
    # under the exact cut, but results the page calls likely matches: no "No exact results" over them
    page = client.get("/search/", {"q": "hoodie"}).content.decode()
    assert "Likely a match" in page and "No exact results" not in page
    # nothing on the page likely: it says so, and calls each result similar
    page = client.get("/search/", {"q": "quantum philosophy"}).content.decode()
    assert "No exact results — showing similar items" in page and "Similar item" in page
    assert "Likely a match" not in page
    # words no dictionary and no product has: it says which
    page = client.get("/search/", {"q": "xyzzy plugh"}).content.decode()
    assert "Nothing here is called “xyzzy plugh” — showing similar items" in page and "Likely a match" not in page
    # and where the words name a kind the shop has no word for, it says which
    page = client.get("/search/", {"q": "Espresso Machine"}).content.decode()
    assert "Nothing here is called “espresso machine” — showing similar items" in page
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"STOREFRONT_MIN": 1.0}}
    page = client.get("/search/", {"q": "hoodie"}).content.decode()
    assert "No results for “hoodie”" in page and "mm-card" not in page
    # not a dead end: the shop's popular products under it (the newest, where nobody did anything yet)
    assert 'data-source="popular"' in page and "Popular right now" in page and 'class="card"' in page
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"STOREFRONT_MIN": 0.0, "EXACT": 0.0}}
    page = client.get("/search/", {"q": "hoodie"}).content.decode()
    assert "No exact results" not in page and "No results" not in page


def test_likely_match_is_even_odds_or_the_exact_cut():
    assert calibration.likely_match(0.5, None) and calibration.likely_match(0.7, 0.9)
    assert calibration.likely_match(0.45, 0.4)  # a photo's exact cut can lie under even odds
    assert not calibration.likely_match(0.45, 0.9) and not calibration.likely_match(0.3, None)
    assert not calibration.likely_match(None, 0.0)


def test_a_result_surely_for_another_gender_than_named_is_a_similar_item_and_says_why():
    from multimodal_search.views import OTHER_GENDER, with_reasons

    response = services.SearchResponse(
        hits=[], method="rerank", took_ms=1.0, model_id="m", query={"text": "womens shorts"}, exact_cut=0.9
    )

    def hit(**signals: float) -> services.SearchHit:
        return services.SearchHit("1", None, 1.0, dict(signals), {"lexical": 1.0}, relevance=0.95)

    assert services.likely_match(hit(gender=1.0), response) and services.likely_match(hit(), response)
    assert services.likely_match(hit(gender=0.4), response)  # may be for the gender named
    assert not services.likely_match(hit(gender=0.0), response)  # "women's shorts": a men's short
    # a gender read from a query photo ("like this, but in blue"), not named: as its relevance says
    photo = services.SearchResponse(hits=[], method="feature", took_ms=1.0, model_id="m", query={"text": "in blue"})
    assert services.likely_match(hit(gender=0.0), photo)
    misspelt = replace(response, query={"text": "womems shorts", "corrected": "womens shorts"})
    assert not services.likely_match(hit(gender=0.0), misspelt)  # the words as read name it
    result = with_reasons(
        {"title": "Apollo Running Short", "signals": {"gender": 0.0}, "explanation": {"lexical": 1.0}}, "womens shorts"
    )
    assert result["why"][0] == OTHER_GENDER and "matches “shorts” in the name" in result["why"]
    assert OTHER_GENDER not in with_reasons({"signals": {"gender": 1.0}, "explanation": {}}, "womens shorts")["why"]
    assert OTHER_GENDER not in with_reasons({"explanation": {}}, "shorts")["why"]  # no gender named
    assert OTHER_GENDER not in with_reasons({"signals": {"gender": 0.0}, "explanation": {}}, "in blue")["why"]


@pytest.mark.django_db
def test_a_kind_the_shop_has_no_word_for_is_never_called_a_likely_match(client, admin_client, trained, settings):
    # every result exact and likely by its relevance: only the rule can say otherwise
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"STOREFRONT_MIN": 0.0, "EXACT": 0.0}}
    body = client.get("/api/v1/search/", {"q": "red dress"}).json()
    assert body["query"]["unsold"] == ["dress"] and body["match"] == "related"
    first = body["results"][0]["title"]  # still shown: similar items
    page = client.get("/search/", {"q": "red dress"}).content.decode()
    assert "Nothing here is called “dress” — showing similar items." in page
    assert SearchLog.objects.filter(query="red dress", source="storefront").get().unsold == "dress"  # the analytics'
    assert "Likely a match" not in page and first in page
    # the admin's playground says why
    playground = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "red dress"})
    assert "Nothing here is called <strong>“dress”</strong>" in playground.content.decode()
    # a kind it sells: as before
    body = client.get("/api/v1/search/", {"q": "red hoodie"}).json()
    assert "unsold" not in body["query"] and body["match"] == "exact"
    page = client.get("/search/", {"q": "red hoodie"}).content.decode()
    assert "Likely a match" in page and "No exact results" not in page
    playground = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "red hoodie"})
    assert "Nothing here is called" not in playground.content.decode()


@pytest.mark.django_db
def test_a_kind_a_description_only_mentions_is_unsold_and_one_a_title_names_is_not(
    trained, indexed, client, monkeypatch
):
    # a new product (after training: its title is read live) whose description names what it goes with
    indexed(
        ProductFactory(title="Omega Yoga Strap", description="Loops round your yoga mat; room for shoes. Soft cotton.")
    )
    from multimodal_search.services import query as queries

    model_id = queries.current_encoder()[1]

    def unsold(text: str) -> list[str]:
        query = queries.encode_query(text, None)
        return queries.unsold_kinds(text, query.text, model_id, query.facets)

    assert unsold("yoga mat") == ["mat"] and unsold("shoes") == ["shoes"]  # "in her shoes" is no kind of goods
    assert unsold("red mug") == [] and unsold("mugs") == []  # a title's word, singular or plural
    assert unsold("yoga straps") == []  # the new product's title
    assert unsold("cotton") == []  # a material a description names is what the product is made of
    assert unsold("red dress") == ["dress"]
    # what the shopper has is what the product goes with, not what they ask for
    assert unsold("something to carry my laptop") == [] and unsold("bag for your shoes") == []
    assert unsold("laptop") == ["laptop"]
    # for whom: nothing here is for kids; the hoodie is sold, not for them. A title that says it answers it
    assert unsold("kids hoodie") == ["kids"] and unsold("hoodie for toddlers") == ["toddlers"]
    assert unsold("baby blue hoodie") == []  # a shade
    page = client.get("/search/", {"q": "kids hoodie", "min_relevance": "0"}).content.decode()
    assert "Nothing here is for kids — showing similar items." in page and "Likely a match" not in page
    # nothing shown: the page says why, not "No results for “red dress”"
    reranker = reranking.get_reranker(model_id)
    monkeypatch.setitem(reranker.cuts, "related", 1.01)  # no result passes the storefront's cut
    monkeypatch.setitem(reranker.cuts, "exact", 1.02)
    empty = client.get("/search/", {"q": "red dress"}).content.decode()
    assert "Nothing here is called “dress”." in empty and "No results" not in empty
    empty = client.get("/search/", {"q": "kids hoodie"}).content.decode()
    assert "Nothing here is for kids." in empty and "No results" not in empty
    monkeypatch.undo()
    indexed(ProductFactory(title="Kids Rain Jacket", description="For kids."))
    assert unsold("kids hoodie") == [] and unsold("red dress for children") == ["dress"]  # "kids" answers "children"


@pytest.mark.django_db
def test_a_word_no_dictionary_and_no_product_has_is_never_called_a_likely_match(
    client, admin_client, trained, indexed, settings, monkeypatch
):
    from multimodal_search.services import query as queries

    model_id = queries.current_encoder()[1]

    def unknown(text: str) -> list[str]:
        return queries.unknown_words(text, model_id)

    # a brand the shop does not carry, a word newer than WordNet, nonsense
    assert unknown("adidas hoodie") == ["adidas"] and unknown("kettlebell") == ["kettlebell"]
    assert unknown("plugh frobozz") == ["plugh", "frobozz"]
    assert unknown("nike hoodie") == ["nike"]  # WordNet's only "Nike" is a name: a goddess
    # words of the language in any part of speech or form, run together, or of the synonym lists: known
    for text in ("comfy hoodie", "skipping rope", "joggers", "tshirt", "hoodie", "red hoody", "best", "zipup"):
        assert unknown(text) == [], text
    # every result exact and likely by its relevance: only the rule can say otherwise
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"STOREFRONT_MIN": 0.0, "EXACT": 0.0}}
    body = client.get("/api/v1/search/", {"q": "adidas hoodie"}).json()
    assert body["query"]["unsold"] == ["adidas"] and body["match"] == "related" and body["results"]
    page = client.get("/search/", {"q": "adidas hoodie"}).content.decode()
    assert "Nothing here is called “adidas” — showing similar items." in page and "Likely a match" not in page
    playground = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "adidas hoodie"})
    assert "Nothing here is called <strong>“adidas”</strong>" in playground.content.decode()
    # for whom and a brand: both said
    page = client.get("/search/", {"q": "kids adidas hoodie"}).content.decode()
    assert "Nothing here is for kids or called “adidas” — showing similar items." in page
    # nothing shown: the page says why
    reranker = reranking.get_reranker(model_id)
    monkeypatch.setitem(reranker.cuts, "related", 1.01)
    monkeypatch.setitem(reranker.cuts, "exact", 1.02)
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {}}
    empty = client.get("/search/", {"q": "kettlebell"}).content.decode()
    assert "Nothing here is called “kettlebell”." in empty and "No results" not in empty
    monkeypatch.undo()
    # once a product says it, the shop carries it (read live, not at training)
    indexed(ProductFactory(title="Zeta Hoodie", description="An Adidas hoodie."))
    assert unknown("adidas hoodie") == []
    assert "unsold" not in client.get("/api/v1/search/", {"q": "adidas hoodie"}).json()["query"]


@pytest.mark.django_db
def test_the_page_calls_a_result_at_the_exact_cut_a_likely_match(client, trained, settings):
    hits = services.search_products("hoodie", k=10).hits
    assert any(hit.relevance < 0.5 for hit in hits)  # some would be "Similar item" at even odds
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "RELEVANCE": {"STOREFRONT_MIN": 0.0, "RELATED": 0.0, "EXACT": 1.0},
    }
    page = client.get("/search/", {"q": "hoodie"}).content.decode()
    assert "Similar item" in page
    # with the exact cut at 0 (as a photo calibration's can be under 0.5), the page's match is exact
    # and no result on it is called merely similar
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"STOREFRONT_MIN": 0.0, "EXACT": 0.0}}
    page = client.get("/search/", {"q": "hoodie"}).content.decode()
    assert "Likely a match" in page and "Similar item" not in page


@pytest.mark.django_db
def test_mmsearch_train_fits_and_reports_the_calibration(indexed, model_dir):
    from io import StringIO

    from django.core.management import call_command

    indexed(*[ProductFactory(title=title, photos=[colour]) for colour, title in SPECS])
    out = StringIO()
    call_command("mmsearch_train", "--skip-head", "--skip-attributes", "--queries", "60", stdout=out)
    assert "Relevance calibrated on" in out.getvalue() and "related >=" in out.getvalue()
    assert "Departments a query may name: none" in out.getvalue()  # these products have no categories
    assert "Qualities a query may name: none" in out.getvalue()  # each title word but the kind is one product's
    assert reranking.get_reranker("hash-v1").cuts
    out = StringIO()
    call_command(
        "mmsearch_train",
        "--skip-head",
        "--skip-attributes",
        "--queries",
        "60",
        "--calibration-queries",
        "0",
        stdout=out,
    )
    assert "Relevance calibration skipped" in out.getvalue()
    assert not reranking.get_reranker("hash-v1").calibrations


# ------------------------------------------------------------------ photo queries


def _photos(groups: int, per_group: int, spread: float, studio: float, seed: int):
    """``groups`` x ``per_group`` products, 3 photos each (features, product per photo, query photos: each
    product's second and third): a product's photos are closest, its group's products next (``spread``
    apart), and each photo has up to ``studio`` of a shared look (backdrop, light) that raises every cosine."""
    rng = np.random.default_rng(seed)
    products = groups * per_group
    centres = rng.standard_normal((groups, 32))[np.arange(products) // per_group]
    centres = centres + rng.standard_normal((products, 32)) * spread
    photo_item = np.repeat(np.arange(products), 3)
    look = rng.uniform(0, studio, (3 * products, 1)) * rng.standard_normal(32) if studio else 0.0
    features = centres[photo_item] + rng.standard_normal((3 * products, 32)) * 0.2 + look
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    queries = np.flatnonzero(np.arange(3 * products) % 3 != 0)
    return features.astype(np.float32), photo_item, queries


def _photo_validation(seed: int = 3):
    """40 products of 10 kinds: a product's photos are closest, its kind's products next."""
    return _photos(10, 4, spread=0.5, studio=0.0, seed=seed)


def test_photo_relevance_is_fitted_on_own_and_leave_product_out_searches():
    from multimodal_search.learning.heads import best_photo_scores
    from multimodal_search.learning.photo_relevance import fit_photo_relevance

    features, photo_item, queries = _photo_validation()
    fitted = fit_photo_relevance(features, photo_item, queries)
    model = calibration.PhotoCalibration.from_json(fitted["calibration"])
    assert model is not None and model.weight > 0  # more alike, more likely the product in the photo
    cuts = fitted["cuts"]
    assert 0 < cuts["related"] <= cuts["exact"] < 1
    scores = best_photo_scores(features, photo_item, queries)
    # each search's products together (the margin is against the best other one), its own product's probability
    own = np.array([model.probability(scores[row])[photo_item[q]] for row, q in enumerate(queries)])
    assert (own >= cuts["exact"]).mean() > 0.8  # these photos are easy: most own products are exact matches
    # a photo of something the shop does not sell: far from every product, under the related cut
    stranger = np.random.default_rng(9).standard_normal(32)
    stranger /= np.linalg.norm(stranger)
    per_product = np.array([(features[photo_item == item] @ stranger).max() for item in range(40)])
    assert model.probability(per_product).max() < cuts["related"]
    # worse-framed copies of the query photos (crops) also ask: the related cut comes down to meet them
    # (the cosine alone here, whose cut is a cosine)
    plain = fit_photo_relevance(features, photo_item, queries, margin=False)
    model = calibration.PhotoCalibration.from_json(plain["calibration"])
    assert model is not None and model.margin_weight == 0 and plain["report"]["margin"] is False
    cuts = plain["cuts"]
    rough = features[queries] + np.random.default_rng(4).standard_normal((len(queries), 32)) * 0.1
    rough /= np.linalg.norm(rough, axis=1, keepdims=True)
    with_crops = fit_photo_relevance(features, photo_item, queries, extra_queries=[rough], margin=False)
    assert with_crops["report"]["queries"] == 2 * len(queries)
    loose = calibration.PhotoCalibration.from_json(with_crops["calibration"])
    assert loose is not None
    related_similarity = lambda model, p: model.mean + (np.log(p / (1 - p)) - model.bias) / model.weight * model.scale  # noqa: E731
    assert related_similarity(loose, with_crops["cuts"]["related"]) < related_similarity(model, cuts["related"])


@pytest.mark.django_db
def test_photo_queries_get_relevance_from_the_encoders_photo_calibration(indexed, model_dir, pil_photo, monkeypatch):
    from multimodal_search.encoders import get_encoder

    products = [ProductFactory(title=title, photos=[colour]) for colour, title in SPECS]
    indexed(*products)
    fitted = {
        "calibration": calibration.PhotoCalibration(weight=4.0, bias=0.0, mean=0.9, scale=0.05).to_json(),
        "cuts": {"related": 0.2, "exact": 0.7},
    }
    monkeypatch.setattr(type(get_encoder()), "photo_relevance", lambda self: fitted)
    response = services.search_products(image=pil_photo("red"), k=10)
    relevances = [hit.relevance for hit in response.hits]
    assert all(value is not None and 0 <= value <= 1 for value in relevances)
    assert relevances == sorted(relevances, reverse=True)  # one signal: relevance follows the ranking
    kept = services.search_products(image=pil_photo("red"), k=10, min_relevance="auto")
    assert kept.min_relevance == 0.2
    assert [hit.product for hit in kept.hits] == [hit.product for hit in response.hits if hit.relevance >= 0.2]
    assert response.match == ("exact" if relevances[0] >= 0.7 else "related" if relevances[0] >= 0.2 else "none")
    # words with the photo: no calibration fits both, so nothing is dropped
    both = services.search_products("hoodie", image=pil_photo("red"), k=5, min_relevance="auto")
    assert all(hit.relevance is None for hit in both.hits) and len(both.hits) == 5


def test_photo_domain_is_fitted_on_validation_photos_against_the_other_products():
    from multimodal_search.learning.photo_domain import fit_photo_domain

    rng = np.random.default_rng(3)
    n_items, per_item, n_classes = 60, 3, 40
    photo_item = np.repeat(np.arange(n_items), per_item)
    # the catalogue's photos fall in classes 0-9 (its kinds), each product mostly in one of them
    favourite = rng.integers(0, 10, n_items)[photo_item]
    classes = np.full((len(photo_item), n_classes), 1e-4)
    classes[np.arange(len(photo_item)), favourite] = 1.0
    classes[:, :10] += rng.random((len(photo_item), 10)) * 0.1
    classes /= classes.sum(1, keepdims=True)
    keys = [f"item-{i}" for i in range(n_items)]
    fitted = fit_photo_domain(classes, photo_item, keys)
    assert fitted is not None and fitted["report"]["photos"] >= 10
    domain = calibration.PhotoDomain.from_json(fitted)
    assert domain is not None and len(domain.mixture) == n_classes
    assert domain.cut <= fitted["report"]["median_support"]
    # every catalogue photo counts as sold; a photo of classes the catalogue never shows does not
    assert all(domain.sells(row) for row in classes)
    unsold = np.full(n_classes, 1e-4)
    unsold[30] = 1.0
    assert not domain.sells(unsold / unsold.sum())
    assert fit_photo_domain(classes[:5], photo_item[:5], keys) is None  # too few validation photos


def test_a_photo_of_something_the_shop_does_not_sell_has_no_relevant_result(
    client, indexed, model_dir, pil_photo, monkeypatch
):
    from multimodal_search.encoders import get_encoder

    products = [ProductFactory(title=title, photos=[colour]) for colour, title in SPECS]
    indexed(*products)
    encoder_type = type(get_encoder())
    original = encoder_type.encode_photo_query
    shown = {"classes": np.array([1.0, 0.0, 0.0, 0.0])}

    def with_classes(self, image):
        shared, features, _ = original(self, image)
        return shared, features, shown["classes"]

    monkeypatch.setattr(encoder_type, "encode_photo_query", with_classes)
    fitted = {
        "calibration": calibration.PhotoCalibration(weight=4.0, bias=0.0, mean=0.5, scale=0.2).to_json(),
        "cuts": {"related": 0.05, "exact": 0.7},
        "domain": calibration.PhotoDomain(np.array([0.7, 0.3, 0.0, 0.0]), float(np.log(0.5))).to_json(),
    }
    monkeypatch.setattr(encoder_type, "photo_relevance", lambda self: fitted)

    sold = services.search_products(image=pil_photo("red"), k=10, min_relevance="auto")
    assert sold.query["photo_sold_here"] is True and sold.hits and sold.match in ("exact", "related")
    assert all(hit.relevance > 0 for hit in sold.hits)

    shown["classes"] = np.array([0.0, 0.0, 0.1, 0.9])  # kinds the catalogue never shows
    everything = services.search_products(image=pil_photo("red"), k=10)
    assert everything.query["photo_sold_here"] is False and len(everything.hits) == 10
    assert [hit.relevance for hit in everything.hits] == [0.0] * 10 and everything.match == "none"
    assert services.search_products(image=pil_photo("red"), k=10, min_relevance="auto").hits == []
    upload = io.BytesIO()
    pil_photo("red").save(upload, format="PNG")
    answer = client.post("/search/", {"image": SimpleUploadedFile("plate.png", upload.getvalue())}, follow=True)
    page = answer.content.decode()
    assert answer.redirect_chain and "This shop sells nothing like your photo" in page and "mm-card" not in page
    # with words the photo is only a hint: not judged
    both = services.search_products("hoodie", image=pil_photo("red"), k=5, min_relevance="auto")
    assert "photo_sold_here" not in both.query and len(both.hits) == 5


def test_relaxed_queries_offer_shorter_forms_that_find_something(indexed):
    indexed(*[ProductFactory(title=title, photos=[colour]) for colour, title in SPECS])
    found = services.relaxed_queries("blue hoodie tent", min_relevance=None)
    assert all(len(r.text.split()) == 2 for r in found)  # one word left out comes before single words
    assert len(found) == 3 and all(r.count == len(SPECS) and len(r.hits) == 4 for r in found)
    assert services.relaxed_queries("hoodie", min_relevance=None) == []  # one word: nothing shorter
    # filler is in no form ("something warm for winter" offered "something warm for" and "something")
    chatty = [r.text for r in services.relaxed_queries("something blue for a hoodie tent", min_relevance=None)]
    assert chatty[0] == "blue hoodie tent" and all(len(text.split()) == 2 for text in chatty[1:]), chatty
    assert services.relaxed_queries("something for me", min_relevance=None) == []
    # what the words leave out stays whole in every form: never "blue tent black" for "... not black"
    narrowed = [r.text for r in services.relaxed_queries("blue hoodie tent not black", min_relevance=None)]
    assert narrowed and all(text.endswith(" not black") and text.count("black") == 1 for text in narrowed), narrowed


@pytest.mark.django_db
def test_the_trained_cut_keeps_every_product_whose_title_the_words_name(trained, monkeypatch):
    from multimodal_search.ranking.reranker import get_reranker
    from multimodal_search.services.query import current_encoder

    everything = services.search_products("hoodie", k=10).hits
    relevance = {hit.product.title: hit.relevance for hit in everything}
    top, other = sorted(relevance[title] for title in ("Alpha Hoodie", "Beta Hoodie"))[::-1]
    assert top > other and top == max(relevance.values())  # one hoodie passes a cut at the top one
    reranker = get_reranker(current_encoder()[1])
    monkeypatch.setattr(reranker, "cuts", {**reranker.cuts, "related": top})  # as if trained so
    cut = services.search_products("hoodie", k=10, min_relevance="auto")
    assert {hit.product.title for hit in cut.hits} == {"Alpha Hoodie", "Beta Hoodie"} and "fallback" not in cut.query
    assert [hit.product.title for hit in services.search_products("hoodie", k=10, min_relevance=top).hits] == [
        next(title for title, value in relevance.items() if value == top)
    ]  # a number asked for is a number


@pytest.mark.django_db
def test_relaxed_queries_count_and_show_one_result_per_product_group(indexed):
    colours = ("red", "blue", "green")
    indexed(
        *(ProductFactory(title="Erika Running Short", parent_sku="ERIKA", color=c, photos=[c]) for c in colours),
        ProductFactory(title="Sybil Running Short", photos=["white"]),
        ProductFactory(title="Ana Running Short", photos=["black"]),
    )
    running = next(r for r in services.relaxed_queries("running xyzzy", min_relevance=None) if r.text == "running")
    assert running.count == 3 and len(running.hits) == 3  # the page's count: the Erika short once, in 3 colours
    assert len({hit.product.title for hit in running.hits}) == 3


@pytest.mark.django_db
def test_the_trained_cut_leaves_no_hole_above_the_last_result_it_passes(trained, monkeypatch):
    from multimodal_search.ranking.reranker import get_reranker
    from multimodal_search.services import search as search_module
    from multimodal_search.services.query import current_encoder

    monkeypatch.setattr(search_module, "_named_in_titles", lambda order, text, model_id: set())  # that rule apart
    ranked = [hit.product_pk for hit in services.search_products("jacket", k=10).hits]
    reranker = get_reranker(current_encoder()[1])
    # the calibration disagrees with the ranking: the first two unlikely, the third likely
    odds = {ranked[0]: 0.1, ranked[1]: 0.2, ranked[2]: 0.9}
    monkeypatch.setattr(reranker, "relevance", lambda pool, *rest, **named: {pk: odds.get(pk, 0.0) for pk in pool})
    monkeypatch.setattr(reranker, "cuts", {**reranker.cuts, "related": 0.5})
    shown = [hit.product_pk for hit in services.search_products("jacket", k=10, min_relevance="auto").hits]
    assert shown == ranked[:3]  # the two above the one it passes, none under it
    assert [hit.product_pk for hit in services.search_products("jacket", k=10, min_relevance=0.5).hits] == [ranked[2]]
    monkeypatch.setattr(search_module, "CUT_AT_DEPTH", False)
    assert [hit.product_pk for hit in services.search_products("jacket", k=10, min_relevance="auto").hits] == [
        ranked[2]
    ]


def test_relaxed_queries_leave_out_a_form_that_names_a_kind_nothing_is_called(trained):
    # "dress" finds items (every result is kept at no cut), but none of them is a dress
    assert services.search_products("dress", k=5).hits
    assert [r.text for r in services.relaxed_queries("hoodie dress", min_relevance=None)] == ["hoodie"]
    assert [r.text for r in services.relaxed_queries("hoodie backpack", min_relevance=None)] == ["hoodie", "backpack"]


def _colour_variants(seed: int = 5):
    """60 products, 30 models in two colours: a model's two colours look nearly alike, under a studio look."""
    return _photos(30, 2, spread=0.1, studio=3.0, seed=seed)


def test_the_photo_calibration_reads_the_margin_where_it_predicts_held_out_photos_better():
    from multimodal_search.learning.photo_relevance import choose_margin, fit_photo_relevance

    features, photo_item, queries = _colour_variants()
    fitted = fit_photo_relevance(features, photo_item, queries)
    plain = fit_photo_relevance(features, photo_item, queries, margin=False)
    held_out = fitted["report"]["held_out_log_loss"]
    assert fitted["report"]["margin"] is True and held_out["margin"] < held_out["similarity"]
    model = calibration.PhotoCalibration.from_json(fitted["calibration"])
    cosine_only = calibration.PhotoCalibration.from_json(plain["calibration"])
    assert model is not None and model.margin_weight > 0 and model.weight > 0
    assert cosine_only is not None and cosine_only.margin_weight == 0
    # a shopper's photo that is a catalogue photo: cosine 1 with its product, its other colour just below
    query = features[0]
    per_product = np.array([(features[photo_item == item] @ query).max() for item in range(60)])
    assert per_product[0] == pytest.approx(1.0, abs=1e-5) and per_product.argsort()[-2] == 1
    with_margin, without = model.probability(per_product), cosine_only.probability(per_product)
    # the margin tells them apart: the product gains, and more than its other colour (which stands out from nothing)
    assert with_margin[0] > without[0]
    assert with_margin[0] / with_margin[1] > 1.2 * without[0] / without[1]
    # the cosine alone is the floor: a margin that does not predict better is left out
    assert not choose_margin({"similarity": 0.05, "margin": 0.06}) and not choose_margin({})


def test_a_photo_calibration_without_a_margin_reads_as_before():
    stored = {"input": "visual", "weight": 4.0, "bias": 0.5, "mean": 0.9, "scale": 0.05}
    model = calibration.PhotoCalibration.from_json(stored)
    assert model is not None and model.margin_weight == 0 and model.to_json() == stored
    x = np.array([0.95, 0.9, 0.7])
    np.testing.assert_allclose(model.probability(x), 1 / (1 + np.exp(-((x - 0.9) / 0.05 * 4.0 + 0.5))))
    np.testing.assert_allclose(calibration.margins(x), [0.05, -0.05, -0.25])
    assert calibration.margins(np.array([0.3])).tolist() == [0.0]
    with_margin = calibration.PhotoCalibration(4.0, 0.5, 0.9, 0.05, 2.0, 0.0, 0.1)
    assert calibration.PhotoCalibration.from_json(with_margin.to_json()) == with_margin


@pytest.mark.django_db
def test_when_nothing_passes_the_trained_cut_the_candidates_having_every_word_are_shown(
    client, admin_client, trained, indexed, monkeypatch
):
    model_id = current_encoder()[1]
    reranker = reranking.get_reranker(model_id)
    assert reranker is not None and reranker is reranking.get_reranker(model_id)  # one loaded copy
    monkeypatch.setitem(reranker.cuts, "related", 1.01)  # no result passes "auto"
    monkeypatch.setitem(reranker.cuts, "exact", 1.02)
    found = services.search_products("backpack", k=10, min_relevance="auto")
    assert sorted(hit.product.title for hit in found.hits) == ["Delta Backpack", "Gamma Backpack"]
    assert "fallback" not in found.query and found.match == "none"  # their titles name them: kept under the cut
    assert found.hits == sorted(found.hits, key=lambda hit: -hit.score)  # in the ranking's order
    # a word no product uses is read with its synonyms too ("rucksack": the backpacks)
    synonym = services.search_products("rucksack", k=10, min_relevance="auto")
    assert sorted(hit.product.title for hit in synonym.hits) == ["Delta Backpack", "Gamma Backpack"]
    assert synonym.query["read_as"] == ["backpack"]  # the readings that found them ("knapsack" found none)
    assert "read_as" not in found.query  # the words themselves found the backpacks
    assert services.search_products("the rucksack", k=10, min_relevance="auto").hits  # a stop word beside it
    # a word some product uses is read as typed: not the backpacks, though "daypack" is their synonym too
    indexed(ProductFactory(title="Lambda Bottle", description="Fits the side pocket of any daypack."))
    typed = services.search_products("daypack", k=10, min_relevance="auto")
    assert [hit.product.title for hit in typed.hits] == ["Lambda Bottle"] and typed.query["fallback"] == "every_word"
    # every word: no product has both, and a word no product has finds nothing
    for words in ("backpack watch", "xyzzy"):
        nothing = services.search_products(words, k=10, min_relevance="auto")
        assert nothing.hits == [] and "fallback" not in nothing.query
    # words that are a product code: its product first, relevance 1 whatever the cut
    delta = Product.objects.get(title="Delta Backpack")
    coded = services.search_products(delta.sku, k=10, min_relevance="auto")
    assert [hit.product for hit in coded.hits] == [delta] and coded.hits[0].relevance == 1.0  # the others cut
    assert coded.query["code"] == delta.sku and "fallback" not in coded.query
    # a number asked for is never relaxed, and without a cut nothing is dropped
    assert services.search_products("backpack", k=10, min_relevance=1.0).hits == []
    assert "fallback" not in services.search_products("backpack", k=10).query

    answer = client.get("/api/v1/search/", {"q": "backpack", "min_relevance": "auto"}).json()
    assert "fallback" not in answer["query"] and answer["match"] == "none"  # named by their titles
    assert sorted(item["title"] for item in answer["results"]) == ["Delta Backpack", "Gamma Backpack"]
    answer = client.get("/api/v1/search/", {"q": "daypack", "min_relevance": "auto"}).json()
    assert answer["query"]["fallback"] == "every_word" and answer["match"] == "none"
    assert [item["title"] for item in answer["results"]] == ["Lambda Bottle"]
    page = client.get("/search/", {"q": "daypack"}).content.decode()
    assert "No close matches — showing the products whose descriptions use your words" in page
    assert "Lambda Bottle" in page and "No results" not in page
    # the log says which searches the fallback answered, and the analytics list them (not as zero results)
    assert SearchLog.objects.filter(query="daypack", fallback="every_word").count() == 2  # the API, the page
    assert set(SearchLog.objects.exclude(query="daypack").values_list("fallback", flat=True)) <= {""}
    today = timezone.localdate()
    assert [(row.query, row.searches) for row in services.loose_queries(today, today)] == [("daypack", 2)]
    report = admin_client.get("/admin/multimodal_search/searchlog/report/").content.decode()
    assert "Queries no product matched closely" in report and "<td>daypack</td><td>2</td>" in report
    # the page and the API say which readings found the results (the bottle's "daypack" now one of them)
    answer = client.get("/api/v1/search/", {"q": "rucksack", "min_relevance": "auto"}).json()
    assert answer["query"]["fallback"] == "every_word" and answer["query"]["read_as"] == ["backpack", "daypack"]
    page = client.get("/search/", {"q": "rucksack"}).content.decode()
    assert "No close matches — showing the products whose descriptions use the words “backpack” or “daypack”." in page


@pytest.mark.django_db
def test_another_order_than_relevance_sorts_the_likely_matches_first(trained, settings):
    """ "cheap hoodie": the cheapest hoodies, then the cheapest of the similar items, not a cheap mug first."""
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "RELEVANCE": {"STOREFRONT_MIN": 0.0}}
    for n, product in enumerate(trained[0]):  # the hoodies the dearest
        Product.objects.filter(pk=product.pk).update(price=Decimal(100 - 7 * n))
    for sort, dearest_first in (("price_asc", False), ("price_desc", True)):
        page = services.browse_products("hoodie", sort=sort, page_size=10)
        likely = [calibration.likely_match(hit.relevance, page.exact_cut) for hit in page.hits]
        assert any(likely) and not all(likely) and likely == sorted(likely, reverse=True)
        assert page.hits[0].product.title.endswith("Hoodie")
        for tier in (True, False):
            prices = [hit.product.price for hit, match in zip(page.hits, likely) if match is tier]
            assert prices == sorted(prices, reverse=dearest_first)


def _capris_and_yoga_gear(indexed, pant: tuple[str, str, str]) -> list[Product]:
    """Two capris and ``pant`` (title, description, photo colour) in Pants, a yoga strap and brick in Fitness
    Equipment, indexed, with a re-ranker trained (which finds the kinds: titles' head nouns, leaves' words)."""
    from shop.catalog.models import Category

    pants = Category.from_path("Women > Bottoms > Pants")
    gear = Category.from_path("Gear > Fitness Equipment")
    title, description, colour = pant
    made = [
        ProductFactory(title=title, description=description, category=pants, photos=[colour]),
        ProductFactory(title="Beta Capri", description="a capri for yoga", category=pants, photos=["red"]),
        ProductFactory(title="Gamma Relaxed Capri", description="relaxed fit", category=pants, photos=["blue"]),
        ProductFactory(title="Delta Yoga Strap", description="a yoga strap for yoga", category=gear, photos=["red"]),
        ProductFactory(title="Epsilon Yoga Brick", description="yoga brick for yoga", category=gear, photos=["red"]),
    ]
    indexed(*made)
    train_reranker(max_queries=40, calibration=20)
    return made


@pytest.mark.django_db
def test_products_of_the_kind_the_words_name_come_first(indexed, model_dir):
    from multimodal_search.services.query import encode_query

    _capris_and_yoga_gear(indexed, ("Alpha Yoga Pant", "for yoga", "red"))
    model_id = current_encoder()[1]
    # "yoga" names no kind; "capri" is a title's head noun, "pants" a leaf's word
    assert encode_query("yoga capri", None, model_id=model_id).title_kinds == ["capri"]
    assert encode_query("yoga pants", None, model_id=model_id).title_kinds == ["pant"]
    assert encode_query("yoga", None, model_id=model_id).title_kinds == []
    for method in ("feature", "decision", "embedding"):
        hits = services.search_products("yoga capri", k=5, method=method).hits
        titles = [hit.product.title for hit in hits]
        assert set(titles[:2]) == {"Beta Capri", "Gamma Relaxed Capri"}, (method, titles)
        assert [hit.signals["title_kind"] for hit in hits] == [1.0, 1.0, 0.0, 0.0, 0.0]
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)  # scores fall
        # "pants": by the leaf too, the capris are pants; the strap and the brick are not
        pant_titles = [hit.product.title for hit in services.search_products("yoga pants", k=5, method=method).hits]
        assert set(pant_titles[:3]) == {"Alpha Yoga Pant", "Beta Capri", "Gamma Relaxed Capri"}, (method, pant_titles)
    # the re-ranker weighs the words itself, the one-signal methods are the baselines: neither reads it;
    # words naming no kind move nothing
    for method in ("rerank", "text", "lexical"):
        assert all(
            "title_kind" not in hit.signals for hit in services.search_products("yoga capri", k=5, method=method).hits
        )
    assert all("title_kind" not in hit.signals for hit in services.search_products("yoga", k=5, method="feature").hits)


@pytest.mark.django_db
def test_the_trained_cut_keeps_the_products_called_by_the_kind_the_words_name(indexed, model_dir, monkeypatch):
    from multimodal_search.ranking.reranker import get_reranker

    made = _capris_and_yoga_gear(indexed, ("Zeta Capri Short (Cropped)", "a short", "blue"))
    reranker = get_reranker(current_encoder()[1])
    odds = {product.pk: 0.9 if product.title in ("Beta Capri", "Delta Yoga Strap") else 0.1 for product in made}
    monkeypatch.setattr(reranker, "relevance", lambda pool, *rest, **named: {pk: odds.get(int(pk), 0.0) for pk in pool})
    monkeypatch.setattr(reranker, "cuts", {**reranker.cuts, "related": 0.5})
    monkeypatch.setattr(search_module, "CUT_AT_DEPTH", False)

    def shown(words: str) -> set[str]:
        return {hit.product.title for hit in services.search_products(words, k=10, min_relevance="auto").hits}

    # the capri the calibration calls unlikely is kept; the capri short is a short (its head noun), the brick no capri
    assert shown("yoga capri") == {"Beta Capri", "Gamma Relaxed Capri", "Delta Yoga Strap"}
    assert shown("yoga") == {"Beta Capri", "Delta Yoga Strap"}  # words naming no kind keep nothing more
    # a gender the words name: no product of the other gender is kept
    indexed(ProductFactory(title="Iota Capri", description="a capri", gender="Men", category=made[1].category))
    assert "Iota Capri" in shown("yoga capri") and "Iota Capri" not in shown("womens yoga capri")
    assert "Gamma Relaxed Capri" in shown("womens yoga capri")  # stating no gender, it is kept
    # a number asked for is a number
    assert {hit.product.title for hit in services.search_products("yoga capri", k=10, min_relevance=0.5).hits} == {
        "Beta Capri",
        "Delta Yoga Strap",
    }


@pytest.mark.django_db
def test_a_size_word_beside_a_kind_is_read_as_a_size(client, indexed, model_dir, pil_photo):
    from shop.catalog.models import Category

    tees = Category.from_path("Men > Tops > Tees")
    bags = Category.from_path("Gear > Bags")
    made = [
        ProductFactory(title="Alpha Tee", description="a cotton tee", category=tees, sizes="S,M,L", photos=["red"]),
        ProductFactory(title="Beta Tee", description="a soft tee", category=tees, sizes="S,M", photos=["blue"]),
        ProductFactory(title="Gamma Tee", description="a tee for running", category=tees, sizes="L,XL", photos=["red"]),
        ProductFactory(title="Delta Bag", description="a large bag for the gym", category=bags, photos=["red"]),
        ProductFactory(title="Epsilon Bag", description="a small bag for a walk", category=bags, photos=["blue"]),
    ]
    indexed(*made)
    train_reranker(max_queries=40, calibration=20)  # finds the catalogue's kinds: "tee", "bag"

    def titles(page) -> set[str]:
        return {hit.product.title for hit in page.hits}

    in_large = services.browse_products("tee", filters={"size": ["L"]}, page_size=50)
    assert titles(in_large) == {"Alpha Tee", "Gamma Tee"}
    # before the kind, a gender or colour between, or after it: a size, not searched
    for words in ("large tee", "large men's tee", "tee large", "Tee Large red", "tee in a large", "tee large not blue"):
        page = services.browse_products(words, page_size=50)
        assert page.query.get("size") == "L" and titles(page) <= titles(in_large), (words, page.query)
        assert "large" not in (page.query.get("searched") or "").lower(), words
    assert services.browse_products("extra large tee", page_size=50).query.get("size") == "XL"
    # several sizes joined: any of them
    either = services.browse_products("tee small or medium", page_size=50)
    assert either.query.get("size") == "S, M" and titles(either) == {"Alpha Tee", "Beta Tee"}, either.query
    # with a photo, "this" and "one" stand for its kind
    for words in ("this in large", "a large one please", "like this but large"):
        page = services.browse_products(words, image=pil_photo("red"), page_size=50)
        assert page.query.get("size") == "L" and titles(page) <= titles(in_large), (words, page.query)
    assert "size" not in services.browse_products("this in large", page_size=50).query  # no photo: words
    # not beside a kind, or a number before one: words
    for words in ("large print tee", "tee for large people", "32 tee"):
        assert "size" not in services.browse_products(words, page_size=50).query, words
    # no bag states a size: "large bag" is searched as typed, as without reading loose sizes
    bag = services.browse_products("large bag", page_size=50)
    as_words = services.browse_products("large bag", page_size=50, loose_sizes=False)
    assert "size" not in bag.query and [hit.product_pk for hit in bag.hits] == [hit.product_pk for hit in as_words.hits]
    assert bag.query.get("searched") in (None, "large bag")

    answer = client.get("/api/v1/search/", {"q": "large tee"}).json()
    assert answer["query"]["size"] == "L" and {item["title"] for item in answer["results"]} <= titles(in_large)
    page = client.get("/search/", {"q": "large tee"}).content.decode()
    assert 'Size <span class="muted">(from your words)</span>' in page
    # unticking it searches the words without it
    assert ticked_link(page, "L") == "/search/?q=tee"
    # with a price after it, unticking keeps the price
    priced = client.get("/search/", {"q": "tee large under 30"}).content.decode()
    assert ticked_link(priced, "L") == "/search/?q=tee+under+30"


@pytest.mark.django_db
def test_the_every_word_fallback_reads_a_department_word_as_the_department(indexed, model_dir, monkeypatch):
    from shop.catalog.models import Category

    made = [
        ProductFactory(title="Alpha Tee", description="A light tee for hiking trips.", photos=["red"]),
        ProductFactory(title="Beta Tee", description="A soft tee.", photos=["blue"]),
        ProductFactory(title="Gamma Pack", description="Room for your tops on hiking trips.", photos=["red"]),
        ProductFactory(title="Delta Pant", description="Pants for hiking.", photos=["blue"]),
    ]
    paths = ["Men > Tops > Tees", "Men > Tops > Tees", "Gear > Bags", "Men > Bottoms > Pants"]
    for product, path in zip(made, paths):
        product.category = Category.from_path(path)
        product.save()
    indexed(*made)
    train_reranker(max_queries=40, calibration=20)  # finds the departments: "tops", "bottoms"
    reranker = reranking.get_reranker(current_encoder()[1])
    monkeypatch.setitem(reranker.cuts, "related", 1.01)  # no result passes "auto"
    monkeypatch.setitem(reranker.cuts, "exact", 1.02)
    # "tops" is met by being a top, not by the pack's "room for your tops"
    found = services.search_products("tops for hiking", k=10, min_relevance="auto")
    assert [hit.product.title for hit in found.hits] == ["Alpha Tee"] and found.query["fallback"] == "every_word"
    # words naming no department: every word in the text, as before
    plain = services.search_products("room hiking", k=10, min_relevance="auto")
    assert [hit.product.title for hit in plain.hits] == ["Gamma Pack"]
