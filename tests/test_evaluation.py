"""Relevance evaluation: metrics, fair ties, query files, the command, the Luma set generator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from multimodal_search import services
from multimodal_search.evaluation import runner as evaluation
from multimodal_search.evaluation.metrics import fair_ranking, ndcg_at_k, recall_at_k, reciprocal_rank
from multimodal_search.evaluation.queries import QueryFileError, load_queries
from multimodal_search.ranking.vocabulary import TEXT_ONLY_METHODS
from tests.data_paths import LUMA
from tests.factories import ProductFactory, photo_bytes

# --- metrics -------------------------------------------------------------------------


def test_ndcg_uses_graded_gains_and_the_ideal_from_the_judgements():
    graded = {"a": 2, "b": 1, "c": 0}
    # DCG = (2^1-1)/log2(2) + 0 + (2^2-1)/log2(4) = 1 + 1.5; ideal = 3/1 + 1/log2(3)
    expected = 2.5 / (3 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "x", "a"], graded, k=10) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b"], graded) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], graded) == 0.0
    # beyond k nothing counts
    assert ndcg_at_k(["x", "a"], graded, k=1) == 0.0


def test_ndcg_ideal_is_cut_at_k():
    graded = {f"s{i}": 2 for i in range(20)}
    assert ndcg_at_k([f"s{i}" for i in range(10)], graded, k=10) == pytest.approx(1.0)


def test_recall_counts_grade_two_items_or_grade_one_when_there_are_none():
    graded = {"a": 2, "b": 2, "c": 1}
    assert recall_at_k(["c", "a", "x"], graded, k=3) == 0.5
    assert recall_at_k(["c", "a", "b"], graded, k=2) == 0.5
    assert recall_at_k(["c", "x"], {"c": 1, "d": 1}, k=2) == 0.5


def test_reciprocal_rank_of_the_first_grade_two_item():
    graded = {"a": 2, "c": 1}
    assert reciprocal_rank(["c", "x", "a"], graded) == pytest.approx(1 / 3)
    assert reciprocal_rank(["c", "x", "a"], graded, k=2) == 0.0
    assert reciprocal_rank(["a"], graded) == 1.0


def test_ties_are_ordered_by_hash_not_by_input_order():
    pairs = [("RED", 0.5), ("BLUE", 0.5), ("TOP", 0.9)]
    for qid in ("q1", "q2", "q3"):
        forward = fair_ranking(qid, pairs)
        assert forward[0] == "TOP"
        assert forward == fair_ranking(qid, list(reversed(pairs)))
    # across queries the relevant variant neither always wins nor always loses
    firsts = {fair_ranking(f"q{i}", pairs[:2])[0] for i in range(40)}
    assert firsts == {"RED", "BLUE"}


def test_scores_equal_to_six_decimals_are_ties_and_higher_scores_still_win():
    assert fair_ranking("q", [("a", 0.3000001), ("b", 0.3000002)]) == fair_ranking("q", [("b", 0.3), ("a", 0.3)])
    assert fair_ranking("q", [("a", 0.1), ("b", 0.2)]) == ["b", "a"]
    assert fair_ranking("q", [("a", 0.1), ("a", 0.4), ("b", 0.2)]) == ["a", "b"]


# --- query files ---------------------------------------------------------------------


def _write(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


GOOD = {"qid": "q1", "kind": "text", "query": "red tee", "graded": {"A": 2}}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "invalid JSON"),
        ({**GOOD, "qid": "q2", "kind": "audio"}, "kind must be one of"),
        ({**GOOD, "qid": "q2", "graded": {}}, "graded must be"),
        ({**GOOD, "qid": "q2", "graded": {"A": "2"}}, "grade of 'A'"),
        ({**GOOD, "qid": "q2", "graded": {"A": 0}}, "no item with grade"),
        ({**GOOD, "qid": "q2", "query": " "}, "query must be"),
        ({**GOOD, "qid": "q2", "kind": "image", "query": "nope.jpg"}, "photo not found: nope.jpg"),
        (GOOD, "qid 'q1' already used on line 1"),
    ],
)
def test_load_queries_names_the_bad_line(tmp_path, bad, message):
    path = _write(tmp_path / "q.jsonl", GOOD, "", bad)
    with pytest.raises(QueryFileError, match="line 3: ") as info:
        load_queries(path)
    assert message in str(info.value)


def test_load_queries_resolves_photos_next_to_the_file(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(photo_bytes("red"))
    path = _write(
        tmp_path / "q.jsonl",
        GOOD,
        {"qid": "p", "kind": "image", "query": "photos/a.jpg", "graded": {"A": 2}, "split": "heldout"},
    )
    text, image = load_queries(path)
    assert (text.kind, text.query, text.split) == ("text", "red tee", None)
    assert image.photo_path == (tmp_path / "photos" / "a.jpg").resolve()
    assert image.split == "heldout"


def test_load_queries_missing_and_empty_files(tmp_path):
    with pytest.raises(QueryFileError, match="no such file"):
        load_queries(tmp_path / "missing.jsonl")
    with pytest.raises(QueryFileError, match="no queries"):
        load_queries(_write(tmp_path / "empty.jsonl", ""))


# --- end to end (HashEncoder) ----------------------------------------------------------


@pytest.mark.django_db
def test_command_reports_every_method_and_kind(indexed, tmp_path, capsys):
    products = [
        ProductFactory(sku="TEE-RED", title="red cotton tee", photos=["red"]),
        ProductFactory(sku="TEE-BLUE", title="blue cotton tee", photos=["blue"]),
        ProductFactory(sku="BAG-BLACK", title="black travel bag", photos=[("black", "circle")]),
        ProductFactory(sku="MUG-YELLOW", title="yellow mug", photos=["yellow"]),
    ]
    indexed(*products)
    (tmp_path / "query.jpg").write_bytes(photo_bytes("blue"))
    queries = _write(
        tmp_path / "queries.jsonl",
        {"qid": "t1", "kind": "text", "query": "red tee", "graded": {"TEE-RED": 2, "TEE-BLUE": 1}, "split": "heldout"},
        {"qid": "t2", "kind": "text", "query": "travel bag", "graded": {"BAG-BLACK": 2}, "split": "train"},
        {"qid": "i1", "kind": "image", "query": "query.jpg", "graded": {"TEE-BLUE": 2}, "split": "heldout"},
    )
    out = tmp_path / "out" / "results.json"

    call_command("mmsearch_evaluate", str(queries), "--split", "heldout", "--json", str(out))

    results = json.loads(out.read_text())
    assert results["counts"] == {"text": 1, "image": 1}
    assert set(results["methods"]) == {*services.METHODS, evaluation.PLAIN_KNN}
    for method, kinds in results["methods"].items():
        assert kinds["text"]["n"] == 1 and 0 <= kinds["text"]["ndcg"] <= 1
        assert kinds["text"]["p50_ms"] > 0
        if method in TEXT_ONLY_METHODS:
            assert kinds["image"]["skipped"]
        else:
            assert kinds["image"]["n"] == 1
    # an identical photo is found first by photo search
    assert results["methods"]["image"]["image"]["r1"] == 1.0
    assert results["methods"]["text"]["text"]["mrr"] == 1.0
    assert {row["qid"] for row in results["queries"]} == {"t1", "i1"}
    printed = capsys.readouterr().out
    assert "nDCG@10" in printed and "plain vector search" in printed


@pytest.mark.django_db
def test_command_errors_are_one_line(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("mmsearch_evaluate", str(tmp_path / "missing.jsonl"))
    bad = _write(tmp_path / "bad.jsonl", GOOD, "[1]")
    with pytest.raises(CommandError, match="line 2: expected a JSON object"):
        call_command("mmsearch_evaluate", str(bad))
    with pytest.raises(CommandError, match="unknown method 'nope'"):
        call_command("mmsearch_evaluate", str(bad), "--method", "nope")
    good = _write(tmp_path / "good.jsonl", GOOD)
    with pytest.raises(CommandError, match="no queries with split 'heldout'"):
        call_command("mmsearch_evaluate", str(good), "--split", "heldout")
    with pytest.raises(CommandError, match="no products are indexed"):
        call_command("mmsearch_evaluate", str(good))


# --- the Luma evaluation set ------------------------------------------------------------


@pytest.fixture(scope="module")
def luma_sets(tmp_path_factory):
    from shop.catalog.evaluation.luma_eval import build_eval_set, write_eval_set
    from shop.catalog.importers.luma import is_luma_folder, read_luma

    if not is_luma_folder(LUMA):
        pytest.skip(f"no Luma sample data at {LUMA}")
    folders = []
    for name in ("first", "second"):
        folder = tmp_path_factory.mktemp(name)
        write_eval_set(build_eval_set(read_luma(LUMA), seed=13), folder)
        folders.append(folder)
    return folders


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_luma_set_is_deterministic(luma_sets):
    first, second = luma_sets
    names = sorted(p.name for p in first.iterdir())
    assert names == [
        "catalog_full.jsonl",
        "catalog_minimal.jsonl",
        "labels_train.jsonl",
        "queries.jsonl",
        "split.json",
        "summary.json",
    ]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_luma_split_is_by_parent_and_covers_every_category(luma_sets):
    folder = luma_sets[0]
    split = json.loads((folder / "split.json").read_text())
    assert set(split["parents"].values()) == {"heldout", "train"}
    assert not set(split["heldout_skus"]) & set(split["train_skus"])
    rows = _jsonl(folder / "catalog_full.jsonl")
    by_parent: dict[str, set[str]] = {}
    for row in rows:
        by_parent.setdefault(row["parent_sku"], set()).add(row["sku"])
    held = set(split["heldout_skus"])
    for skus in by_parent.values():
        assert skus <= held or not skus & held  # no parent in both splits
    held_rows = [r for r in rows if r["sku"] in held]
    assert {r["category"].split(" > ")[0] for r in held_rows} == {"Gear", "Men", "Women"}
    assert 0.25 <= sum(v == "heldout" for v in split["parents"].values()) / len(split["parents"]) <= 0.35


def test_luma_training_labels_cover_train_items_only(luma_sets):
    folder = luma_sets[0]
    split = json.loads((folder / "split.json").read_text())
    labels = _jsonl(folder / "labels_train.jsonl")
    assert {row["sku"] for row in labels} == set(split["train_skus"])
    assert sum(bool(row["color"]) for row in labels) > 0.8 * len(labels)
    assert {row["gender"] for row in labels} >= {"Men", "Women"}


def test_luma_queries_meet_the_targets(luma_sets):
    folder = luma_sets[0]
    queries = load_queries(folder / "queries.jsonl")
    text = [q for q in queries if q.kind == "text"]
    photos = [q for q in queries if q.kind == "image"]
    assert sum(q.split == "heldout" for q in text) >= 150
    assert len(photos) >= 100
    assert sum(q.split == "heldout" for q in photos) >= 40  # one per held-out item with an alternate photo
    for query in text:
        exact = [s for s, g in query.graded.items() if g == 2]
        assert 1 <= len(exact) <= 30
    catalogue_skus = {row["sku"] for row in _jsonl(folder / "catalog_full.jsonl")}
    assert all(set(q.graded) <= catalogue_skus for q in queries)


def test_luma_photo_queries_never_use_main_photos_and_are_withheld(luma_sets):
    from shop.catalog.importers.luma import read_luma

    folder = luma_sets[0]
    records = list(read_luma(LUMA))
    mains = {str(r.images[0][0]) for r in records}
    own = {r.sku: {str(p) for p, _ in r.images} for r in records}
    photos = [q for q in load_queries(folder / "queries.jsonl") if q.kind == "image"]
    for query in photos:
        assert query.query not in mains
        sku = next(s for s, g in query.graded.items() if g == 2)
        assert query.query in own[sku]  # the product's own alternate photo
    queried = {q.query for q in photos}
    for variant in ("full", "minimal"):
        rows = _jsonl(folder / f"catalog_{variant}.jsonl")
        listed = {str((folder / img["path"]).resolve()) for row in rows for img in row["images"]}
        assert not listed & queried, variant
        assert all(row["images"] and row["images"][0]["kind"] == "main" for row in rows)


def test_luma_catalogues_import_through_the_jsonl_reader(luma_sets):
    from shop.catalog.importers.jsonl import read_jsonl
    from shop.catalog.importers.records import CatalogRecord

    folder = luma_sets[0]
    minimal = [item for _, item in read_jsonl(folder / "catalog_minimal.jsonl")]
    assert len(minimal) == 463 and all(isinstance(r, CatalogRecord) for r in minimal)
    assert all(r.category is None and not r.color and not r.attributes and not r.gender for r in minimal)
    full = {r.sku: r for _, r in read_jsonl(folder / "catalog_full.jsonl")}
    assert full["MH01-Black"].color == "Black" and full["MH01-Black"].category.startswith("Men > Tops")
    assert {r.title for r in minimal if r.parent_sku == "MH01"} == {"Chaz Kangeroo Hoodie"}
