"""Photo attribute classifiers, training labels, and the gender and inferred-colour signals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from multimodal_search import services
from multimodal_search.learning.attributes import train_attributes
from multimodal_search.learning.fitting import train_classifier
from multimodal_search.learning.labels import LabelError, load_labels
from multimodal_search.models import InferredFacets, ProductEmbedding
from multimodal_search.ranking import attributes
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.text import gender_in_text
from multimodal_search.store import get_store
from tests.factories import ProductFactory, half_labelled, write_labels


@pytest.mark.parametrize(
    "text, expected",
    [
        ("womens yoga pants", "women"),
        ("yoga pants for men", "men"),
        ("men's black tee", "men"),
        ("ladies tee", "women"),
        ("black tee", None),
        ("men and women tees", None),
        ("hoodie for her", "women"),
        ("a rain jacket for my dad", "men"),
        ("Tee for HIM", "men"),
        ("hoodie for her and him", None),
        ("her hoodie", None),  # only as whom it is for
        ("for running", None),
    ],
)
def test_gender_in_text(text, expected):
    assert gender_in_text(text) == expected


def test_stated_facts_win_over_inferred_ones():
    inferred = {"gender": {"men": 0.9, "women": 0.1}, "colour": {"red": 0.8, "blue": 0.2}}
    stated = attributes.enrich_fields({"gender": "Women", "color": "Blue"}, inferred)
    assert "gender_inferred" not in stated and "colour_inferred" not in stated
    assert attributes.gender_match("women", stated) == 1.0
    assert attributes.gender_match("men", {"gender": "Unisex"}) == 1.0

    unknown = attributes.enrich_fields({"colours": {"red": 0.4, "white": 0.6}}, inferred)
    assert attributes.gender_match("men", unknown) == pytest.approx(0.9)
    assert attributes.colour_profile(unknown)["red"] == pytest.approx(0.6)  # half pixels, half classifier
    assert attributes.gender_match("men", {}) == 0.5  # nothing known: neutral


def test_softmax_classifier_learns_separable_classes_and_needs_two():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(2, 1, (20, 5)), rng.normal(-2, 1, (20, 5))])
    values = ["men"] * 20 + ["women"] * 20
    clf = train_classifier(x, values)
    predicted = [clf.classes[i] for i in clf.probabilities(x).argmax(axis=1)]
    assert np.mean([p == v for p, v in zip(predicted, values)]) > 0.95
    assert train_classifier(x, ["men"] * 40) is None
    assert train_classifier(x[:6], ["men"] * 3 + ["women"] * 3) is None  # too few photos per class


def test_load_labels_reports_the_bad_line(tmp_path):
    good = tmp_path / "labels.jsonl"
    good.write_text('{"sku": "A", "color": "Red", "gender": "Women"}\n\n{"sku": "B", "category": "Men > Tops"}\n')
    labels = load_labels(good)
    assert labels["A"].color == "Red" and labels["B"].leaf == "Tops"
    assert "Colour: Red." in labels["A"].caption("Alpha tee")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sku": "A"}\n{"color": "Red"}\n')
    with pytest.raises(LabelError, match="line 2"):
        load_labels(bad)
    with pytest.raises(LabelError, match="no such file"):
        load_labels(tmp_path / "missing.jsonl")


@pytest.fixture
def catalogue(indexed):
    """Red photos are women's hoodies, blue photos men's; the labels say so for the L* products only."""
    return half_labelled(indexed, "Hoodie", red=("U-red", "Quiet Hoodie"), blue=("U-blue", "Calm Hoodie"))


def _write_labels(path, labelled):
    return write_labels(path, labelled, {"gender": "Women", "color": "Red"}, {"gender": "Men", "color": "Blue"})


@pytest.mark.django_db
def test_trained_attributes_find_unlabelled_products_by_gender_and_colour(catalogue, model_dir, tmp_path):
    labelled, unknown_red, unknown_blue = catalogue
    labels = load_labels(_write_labels(tmp_path / "labels.jsonl", labelled))
    before = services.search_products("womens hoodie", k=12, method="feature")
    assert {"gender"} <= set(before.hits[0].signals)
    assert before.hits[0].signals["gender"] == 0.5  # nothing known yet

    versions = _row_versions()
    summary = train_attributes(labels=labels)
    assert summary["facets"]["gender"]["classes"] == ["men", "women"]
    assert summary["facets"]["colour"]["classes"] == ["blue", "red"]
    assert summary["enriched"] == 12
    facets = dict(InferredFacets.objects.values_list("product_pk", "inferred"))
    assert facets[str(unknown_red.pk)]["gender_inferred"]["women"] > 0.8
    assert facets[str(unknown_blue.pk)]["gender_inferred"]["men"] > 0.8
    # only the facets were written: no product row (nor its HNSW index entries) was rewritten
    assert _row_versions() == versions
    assert not any("gender_inferred" in fields for fields in ProductEmbedding.objects.values_list("fields", flat=True))

    hits = services.search_products("womens hoodie", k=12, method="feature").hits
    order = [hit.product.sku for hit in hits]
    assert order.index("U-red") < order.index("U-blue")
    red = next(hit for hit in hits if hit.product.sku == "U-red")
    assert red.signals["gender"] > 0.8 and red.explanation["gender"] > 0


@pytest.mark.django_db
def test_a_large_catalogue_is_fitted_on_a_sample_and_enriched_a_chunk_at_a_time(
    catalogue, model_dir, tmp_path, monkeypatch
):
    """Fitting read every photo's 23 kB classifier row (over 10 GB at 100,000 products): beyond
    ``TRAIN_PRODUCTS`` the classifiers are fitted on a fixed sample, and every product is then enriched
    ``APPLY_CHUNK`` products at a time. Here 11 of 12 products, in chunks of 5."""
    from multimodal_search.learning import attributes as learning

    labelled, unknown_red, unknown_blue = catalogue
    monkeypatch.setattr(learning, "TRAIN_PRODUCTS", 11)
    monkeypatch.setattr(learning, "APPLY_CHUNK", 5)
    store = type(get_store())
    reads: list[int | None] = []
    photo_vectors = store.photo_vectors

    def counted(self, model_id, pks=None):
        reads.append(None if pks is None else len(pks))
        return photo_vectors(self, model_id, pks)

    monkeypatch.setattr(store, "photo_vectors", counted)
    sample = learning.training_sample(services.current_model_id())
    assert sample is not None and len(sample) == 11 and sample == learning.training_sample(services.current_model_id())

    summary = train_attributes(labels=load_labels(_write_labels(tmp_path / "labels.jsonl", labelled)))
    assert summary["sampled"] is True and summary["fitted_on"] <= 11
    assert summary["facets"]["gender"]["classes"] == ["men", "women"]
    assert reads == [11, 5, 5, 2]  # the sample, then the three chunks of every product
    assert summary["enriched"] == 12
    fields = get_store().product_fields(
        [str(unknown_red.pk), str(unknown_blue.pk)], model_id=services.current_model_id()
    )
    assert fields[str(unknown_red.pk)]["gender_inferred"]["women"] > 0.8
    assert fields[str(unknown_blue.pk)]["gender_inferred"]["men"] > 0.8


@pytest.mark.django_db
def test_new_products_are_indexed_with_inferred_attributes(catalogue, model_dir, tmp_path, indexed):
    labelled, _, _ = catalogue
    train_attributes(labels=load_labels(_write_labels(tmp_path / "labels.jsonl", labelled)))
    late = ProductFactory(sku="late", title="Late Hoodie", photos=["blue"])
    indexed(late)
    facets = InferredFacets.objects.get(product_pk=str(late.pk)).inferred
    assert facets["gender_inferred"]["men"] > 0.8
    assert max(facets["colour_inferred"], key=facets["colour_inferred"].get) == "blue"
    assert set(facets) >= set(v.INFERRED_FIELDS)  # every key, null where nothing is inferred


def _row_versions() -> dict[str, str]:
    """Each product row's ``xmin``: the transaction that wrote its current version (an UPDATE makes a new one)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT product_pk, xmin::text FROM {ProductEmbedding._meta.db_table}")
        return dict(cursor.fetchall())


@pytest.mark.django_db
def test_held_out_labels_are_not_learned_from(catalogue, model_dir, tmp_path):
    labelled, _, _ = catalogue
    labels = load_labels(_write_labels(tmp_path / "labels.jsonl", labelled))
    summary = train_attributes(labels=labels, holdout={labelled[0].sku})
    assert summary["facets"]["gender"]["products"] == 9
    summary = train_attributes(labels=labels, holdout={p.sku for p in labelled[:3]})
    assert summary["facets"]["gender"].startswith("not learned")  # 2 women's photos left: too few


@pytest.mark.django_db
def test_mmsearch_train_reads_labels_and_reports_bad_files(catalogue, model_dir, tmp_path):
    labelled, _, _ = catalogue
    path = _write_labels(tmp_path / "labels.jsonl", labelled)
    call_command("mmsearch_train", "--skip-head", "--labels", str(path), "--queries", "20")
    assert (model_dir / f"{attributes.ARTEFACT}.json").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(CommandError, match="line 1"):
        call_command("mmsearch_train", "--skip-head", "--labels", str(bad))


def test_saved_classifier_survives_near_constant_features():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4))
    x[:, 3] = 1e-8 * rng.normal(size=40)  # a photo feature that barely varies
    clf = train_classifier(x, ["men", "women"] * 20)
    again = attributes.Classifier.from_json(json.loads(json.dumps(clf.to_json())))
    assert np.isfinite(again.probabilities(x)).all()
    assert np.allclose(again.probabilities(x), clf.probabilities(x), atol=1e-4)
