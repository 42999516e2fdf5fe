"""The learned relevance layer: features, training on pseudo-queries, re-ranking, explanations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multimodal_search import services
from multimodal_search.learning import pseudo_queries
from multimodal_search.learning.data import TrainingError
from multimodal_search.learning.fitting import fit_logistic
from multimodal_search.learning.reranker import train_reranker
from multimodal_search.ranking import reranker as reranking
from tests.factories import ProductFactory


def test_feature_matrix_standardises_within_the_pool():
    pool = ["a", "b", "c"]
    x = reranking.feature_matrix(pool, {"text": {"a": 0.9, "b": 0.5, "c": 0.1}, "lexical": {"a": 0.2}})
    column = dict(zip(reranking.FEATURES, x.T))
    assert column["text_z"].mean() == pytest.approx(0)
    assert column["lexical"].tolist() == [1.0, 0.0, 0.0]
    assert column["text_top"].tolist() == pytest.approx([0.0, -0.4, -0.8])
    assert not column["colour"].any()


def test_logistic_fit_learns_the_informative_feature():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 1] > 0).astype(float)
    weights, _bias, _mean, _scale = fit_logistic(x, y)
    assert abs(weights[1]) > 5 * max(abs(weights[0]), abs(weights[2]))


def test_pseudo_query_targets_are_graded_like_a_shopper_would():
    asked = {"noun": "hoodie", "colour": "red", "word": "fleece"}
    exact = pseudo_queries.Facts(
        title="Alpha Hoodie", colours={}, color="Red", words=pseudo_queries.text_stems("Warm fleece")
    )
    other_colour = pseudo_queries.Facts(title="Beta Hoodie", colours={}, color="Blue", words=exact.words)
    other_kind = pseudo_queries.Facts(title="Gamma Tee", colours={}, color="Red", words=exact.words)
    assert pseudo_queries.relevance(exact, asked) == 1.0
    assert pseudo_queries.relevance(other_colour, asked) == pseudo_queries.PARTIAL_RELEVANCE
    assert pseudo_queries.relevance(other_kind, asked) == 0.0
    assert pseudo_queries.relevance(exact, {"noun": "hoodie", "word": "cotton"}) == pseudo_queries.PARTIAL_RELEVANCE


def test_broad_pseudo_queries_ask_a_colour_or_a_gender_alone_and_grade_all_or_nothing():
    import random

    women_red = pseudo_queries.Facts(title="Alpha Hoodie", colours={"red": 0.8}, color="Red", gender="Women")
    men_red = pseudo_queries.Facts(title="Beta Tee", colours={"red": 0.7}, color="Red", gender="Men")
    women_blue = pseudo_queries.Facts(title="Gamma Hoodie", colours={"blue": 0.9}, color="Blue", gender="Women")
    made = [pseudo_queries.broad_query(women_red, random.Random(seed)) for seed in range(40)]
    assert {text for text, _asked in filter(None, made)} == {"red", "women's", "women's red"}  # no noun, ever
    assert all("noun" not in asked for _text, asked in filter(None, made))
    asked = {"gender": "Women", "colour": "red"}
    assert pseudo_queries.relevance(women_red, asked) == 1.0
    assert pseudo_queries.relevance(men_red, asked) == 0.0  # not partly relevant: there is no kind to be right about
    assert pseudo_queries.relevance(women_blue, {"colour": "red"}) == 0.0
    # a product that states neither facet, nor shows a colour, phrases none
    assert pseudo_queries.broad_query(pseudo_queries.Facts(title="Delta Mat", colours={}), random.Random(0)) is None


def test_descriptor_words_skip_model_names_colours_and_common_words():
    frequency = {"yoga": 0.1, "cotton": 0.05, "pant": 0.15, "aurora": 0.01, "women": 0.6}
    found = pseudo_queries.descriptor_words("Aurora Yoga Pant", "Organic Cotton, Black", frequency, low=0.02, high=0.2)
    assert found == ("yoga", "cotton")  # not the head noun, the one-off name, a colour or a frequent word


def test_head_noun():
    assert pseudo_queries.head_noun("Chaz Kangeroo Hoodie") == "hoodie"
    assert pseudo_queries.head_noun("Sprite Yoga Strap 6 foot") == "strap"
    assert pseudo_queries.head_noun("!!") is None


@pytest.mark.django_db
def test_train_and_rerank_with_explanations(indexed, model_dir):
    specs = [
        ("red", "Alpha Hoodie"),
        ("blue", "Beta Hoodie"),
        ("red", "Gamma Backpack"),
        ("green", "Delta Backpack"),
        ("blue", "Epsilon Jacket"),
        ("yellow", "Zeta Jacket"),
        ("black", "Eta Watch"),
        ("white", "Theta Watch"),
    ]
    products = [ProductFactory(title=title, photos=[colour]) for colour, title in specs]
    indexed(*products)
    assert services.search_products("hoodie", method="rerank").method == "feature"  # nothing trained yet

    summary = train_reranker(max_queries=50)
    assert summary["queries"] > 0 and summary["pairs"] > summary["positives"] > 0
    assert (model_dir / f"{reranking.ARTEFACT}.json").exists()

    response = services.search_products("red hoodie", k=3, method="rerank")
    assert response.method == "rerank"
    assert response.hits[0].product == products[0]
    explanation = response.hits[0].explanation
    assert set(explanation) == {"text", "title", "image", "lexical", "colour", "neighbours"}
    assert sum(explanation.values()) == pytest.approx(1, abs=1e-3)

    # the re-ranker is kept for the encoder version it was trained on: another version ignores it
    path = model_dir / f"{reranking.ARTEFACT}.json"
    data = json.loads(path.read_text())
    assert data["model_id"] == "hash-v1"
    path.write_text(json.dumps({**data, "model_id": "another-encoder-v2"}))
    assert reranking.get_reranker("hash-v1") is None
    assert services.search_products("red hoodie", k=3, method="rerank").method == "feature"


@pytest.mark.django_db
def test_training_needs_an_index_and_respects_holdout(indexed, model_dir):
    with pytest.raises(TrainingError):
        train_reranker()
    products = [ProductFactory(sku=f"S{i}", title=f"Item{i} Hoodie", photos=["red"]) for i in range(3)]
    indexed(*products)
    with pytest.raises(TrainingError, match="held out"):
        train_reranker(holdout={"S0", "S1", "S2"})


@pytest.mark.django_db
def test_mmsearch_train_command(indexed, model_dir, tmp_path):
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError

    products = [
        ProductFactory(sku=f"T{i}", title=f"Item{i} {noun}", photos=[c])
        for i, (noun, c) in enumerate(
            [("Hoodie", "red"), ("Hoodie", "blue"), ("Backpack", "green"), ("Backpack", "black")]
        )
    ]
    indexed(*products)
    holdout = tmp_path / "split.json"
    holdout.write_text(json.dumps({"parents": {"T0": "heldout", "T1": "train"}}))
    call_command("mmsearch_train", "--skip-head", "--holdout", str(holdout), "--queries", "20")
    assert (model_dir / f"{reranking.ARTEFACT}.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="cannot read holdout"):
        call_command("mmsearch_train", "--skip-head", "--holdout", str(bad))
