"""Evaluation sets that do not look like Luma (make_travel_eval), negatives in the runner, the backbone baseline."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image, ImageDraw, ImageOps

from multimodal_search import services
from multimodal_search.evaluation import runner as evaluation
from multimodal_search.evaluation.queries import QueryFileError, load_queries
from shop.catalog.evaluation import shopper_photos, travel_eval
from shop.catalog.importers.jsonl import read_jsonl
from shop.catalog.importers.records import CatalogRecord, RecordError
from tests.factories import ProductFactory, photo_bytes

CREAM = shopper_photos.CREAM
GREY = shopper_photos.GREY


def studio(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (300, 360)) -> Image.Image:
    """A studio photo: a coloured product on a white backdrop, away from the edges."""
    image = Image.new("RGB", size, (255, 255, 255))
    w, h = size
    ImageDraw.Draw(image).rectangle([w * 0.3, h * 0.25, w * 0.7, h * 0.75], fill=colour)
    return image


@pytest.fixture
def tiny_catalogue(tmp_path: Path) -> list[CatalogRecord]:
    """Six parents in two categories, two colours each, a main and an alternate photo per item."""
    photos = tmp_path / "photos"
    photos.mkdir()
    records = []
    colours = {"Red": (200, 30, 30), "Blue": (30, 40, 190)}
    for p in range(6):
        category = "Men > Tops > Tees" if p < 3 else "Gear > Bags"
        for name, rgb in colours.items():
            sku = f"P{p}-{name}"
            images = []
            for view in ("main", "alt1"):
                path = photos / f"{sku.lower()}_{view}.jpg"
                studio(rgb, (240 + 10 * p, 300)).save(path, quality=92)
                images.append((path, "main" if view == "main" else "alternate"))
            records.append(
                CatalogRecord(
                    sku=sku, parent_sku=f"P{p}", title=f"Product {p}", category=category, color=name, images=images
                )
            )
    return records


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- generation ---------------------------------------------------------------------------


def test_sets_are_the_same_for_a_seed_and_differ_for_another(tiny_catalogue, tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    travel_eval.write_travel_sets(tiny_catalogue, first, seed=13)
    travel_eval.write_travel_sets(tiny_catalogue, second, seed=13)
    travel_eval.write_travel_sets(tiny_catalogue, other, seed=14)
    files = _files(first)
    assert files == _files(second)
    assert {"luma/queries.jsonl", "merged/queries.jsonl", "shopper/queries.jsonl", "negative/queries.jsonl"} <= set(
        files
    )
    shopper = [name for name in files if name.startswith("shopper/photos/")]
    assert shopper and any(files[name] != _files(other).get(name) for name in shopper)


def test_merged_catalogue_has_one_sku_per_parent_with_every_colour(tiny_catalogue, tmp_path, settings):
    settings.CATALOG_PHOTO_ROOTS = [str(tmp_path / "photos")]
    travel_eval.write_travel_sets(tiny_catalogue, tmp_path, seed=13)
    rows = _jsonl(tmp_path / "merged" / "catalog_full.jsonl")
    assert sorted(row["sku"] for row in rows) == [f"P{p}" for p in range(6)]
    assert {row["color"] for row in rows} == {"Red, Blue"}
    queries = _jsonl(tmp_path / "merged" / "queries.jsonl")
    withheld = {q["query"] for q in queries}
    for row in rows:
        paths = [image["path"] for image in row["images"]]
        assert not withheld & set(paths)
        assert [image["kind"] for image in row["images"]].count("main") == 1
        # every colour still shows: the withheld photo was one of several
        assert {Path(p).name.split("-")[1].split("_")[0] for p in paths} == {"red", "blue"}
    for query in queries:
        parent = query["qid"].split("-")[1]
        assert query["graded"][parent] == 2
        same_leaf = [f"P{p}" for p in (range(3) if int(parent[1]) < 3 else range(3, 6)) if f"P{p}" != parent]
        assert {sku: g for sku, g in query["graded"].items() if g == 1} == dict.fromkeys(same_leaf, 1)
    # the jsonl reader accepts the catalogue (photo paths relative to its folder)
    read = [r for _n, r in read_jsonl(tmp_path / "merged" / "catalog_full.jsonl")]
    assert not [r for r in read if isinstance(r, RecordError)] and len(read) == 6
    # and the query file is a valid judged query file
    assert len(load_queries(tmp_path / "merged" / "queries.jsonl")) == len(queries)


def test_shopper_photos_are_new_files_judged_like_the_photo_queries(tiny_catalogue, tmp_path):
    travel_eval.write_travel_sets(tiny_catalogue, tmp_path, seed=13, variants=3)
    luma = {q["qid"]: q for q in _jsonl(tmp_path / "luma" / "queries.jsonl") if q["kind"] == "image"}
    shopper = _jsonl(tmp_path / "shopper" / "queries.jsonl")
    heldout = [q for q in luma.values() if q["split"] == "heldout"]
    assert len(shopper) == 3 * len(heldout) > 0
    catalogue = {
        str((tmp_path / "luma" / image["path"]).resolve())
        for row in _jsonl(tmp_path / "luma" / "catalog_full.jsonl")
        for image in row["images"]
    }
    assert catalogue
    for query in shopper:
        source = luma["photo-" + query["qid"].removeprefix("shopper-").rsplit("-", 1)[0]]
        assert query["graded"] == source["graded"] and query["split"] == "heldout"
        photo = (tmp_path / "shopper" / query["query"]).resolve()
        assert photo.is_file() and str(photo) not in catalogue
        assert photo.read_bytes() != (tmp_path / "luma" / source["query"]).resolve().read_bytes()
    assert {q["recipe"]["backdrop"] for q in shopper} == set(shopper_photos.BACKDROPS)


# --- shopper photo steps --------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_rotated_photo_stores_its_exif_tag_and_a_correct_reader_turns_it_upright(orientation):
    upright = Image.new("RGB", (120, 60), (220, 20, 20))
    upright.paste(Image.new("RGB", (60, 60), (20, 20, 220)), (60, 0))  # red left, blue right
    data = shopper_photos.phone_jpeg(upright, 120, 90, orientation)
    stored = Image.open(io.BytesIO(data))
    assert stored.getexif().get(shopper_photos.ORIENTATION_TAG) == orientation
    if orientation in (6, 8):
        assert stored.size == (60, 120)  # the pixels really lie on their side
    turned = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"), dtype=np.int16)
    assert turned.shape == (60, 120, 3)
    assert turned[30, 15, 0] > 150 and turned[30, 15, 2] < 100  # red on the left again
    assert turned[30, 105, 2] > 150 and turned[30, 105, 0] < 100


def test_the_product_goes_onto_a_new_backdrop_by_its_own_mask():
    photo = studio()
    for backdrop, colour in (("cream", CREAM), ("grey", GREY)):
        out, replaced = shopper_photos.composite(photo, backdrop, random.Random(1))
        pixels = np.asarray(out, dtype=np.int16)
        assert replaced
        assert np.abs(pixels[5, 5] - colour).max() <= 2  # the white studio backdrop is gone
        assert np.abs(pixels[180, 150] - (200, 30, 30)).max() <= 2  # the product is kept
    busy, _ = shopper_photos.composite(photo, "busy", random.Random(1))
    border = np.asarray(busy, dtype=np.float32)[:20].reshape(-1, 3)
    assert border.std(axis=0).max() > 10  # not one flat colour


def test_a_close_up_without_backdrop_keeps_its_pixels():
    close_up = Image.new("RGB", (200, 200))
    for band, colour in enumerate([(30, 120, 60), (150, 40, 40), (40, 40, 150), (120, 100, 20)]):
        ImageDraw.Draw(close_up).rectangle([band * 50, 0, band * 50 + 49, 199], fill=colour)  # fabric off every edge
    data, recipe = shopper_photos.shopper_photo(close_up, seed="x", backdrop="grey")
    assert recipe.backdrop == "kept"
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_shopper_photo_is_deterministic_and_smaller():
    photo = studio(size=(1080, 1340))
    first, recipe = shopper_photos.shopper_photo(photo, seed="s1", backdrop="busy")
    again, _ = shopper_photos.shopper_photo(photo, seed="s1", backdrop="busy")
    other, _ = shopper_photos.shopper_photo(photo, seed="s2", backdrop="busy")
    assert first == again and first != other
    assert max(ImageOps.exif_transpose(Image.open(io.BytesIO(first))).size) == recipe.side
    left, top, right, bottom = recipe.crop
    assert abs((left + right) / 2 - 0.5) > 0.01 or abs((top + bottom) / 2 - 0.5) > 0.01  # off-centre


# --- negatives ----------------------------------------------------------------------------


def test_negatives_have_no_relevant_items_and_skip_what_the_shop_sells(tiny_catalogue, tmp_path):
    travel_eval.write_travel_sets(tiny_catalogue, tmp_path, seed=13)
    queries = load_queries(tmp_path / "negative" / "queries.jsonl")
    assert {q.kind for q in queries} == {"text", "image"}
    assert all(q.negative and q.graded == {} and q.split == "negative" for q in queries)
    texts = {q.query for q in queries if q.kind == "text"}
    assert "xyzzy" in texts and "velvet throw pillow" in texts
    shoes = CatalogRecord(sku="S1", title="Trail Running Shoes", category="Footwear")
    kept = travel_eval.negative_rows([*tiny_catalogue, shoes], tmp_path / "again", seed=13)
    assert "womens running shoes" not in {row["query"] for row in kept}


def test_a_negative_query_with_grades_or_a_judged_one_without_is_refused(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"qid": "n", "kind": "text", "query": "x", "negative": True, "graded": {"A": 2}}))
    with pytest.raises(QueryFileError, match="a negative query has no graded items"):
        load_queries(path)
    path.write_text(json.dumps({"qid": "n", "kind": "text", "query": "x", "graded": {}}))
    with pytest.raises(QueryFileError, match="graded must be"):
        load_queries(path)


@pytest.mark.django_db
def test_the_runner_reports_negatives_as_zero_result_share_and_top_score(indexed, tmp_path):
    indexed(ProductFactory(sku="TEE-RED", title="red cotton tee", photos=["red"]))
    path = tmp_path / "q.jsonl"
    lines = [
        {"qid": "t", "kind": "text", "query": "red tee", "graded": {"TEE-RED": 2}},
        {"qid": "n1", "kind": "text", "query": "espresso machine", "negative": True},
        {"qid": "n2", "kind": "text", "query": "xyzzy", "negative": True},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    results = evaluation.run_evaluation(load_queries(path), ["text", evaluation.PLAIN_KNN])
    assert results["counts"]["text"] == 1 and results["negative_counts"]["text"] == 2
    assert results["methods"]["text"]["text"]["n"] == 1
    negative = results["negatives"]["text"]["text"]
    assert negative["n"] == 2 and negative["zero_share"] == 0.0  # no threshold yet: a full page
    assert negative["top_score_max"] >= negative["top_score_p50"]
    rows = [row for row in results["queries"] if row.get("negative")]
    assert len(rows) == 4 and all(row["top_score"] is not None for row in rows)
    # options reach the search service unchanged
    with mock.patch.object(services, "search_products", wraps=services.search_products) as search:
        evaluation.run_evaluation(load_queries(path), ["text"], search_options={"category": "nothing-here"})
    assert all(call.kwargs["category"] == "nothing-here" for call in search.call_args_list)


@pytest.mark.django_db
def test_backbone_needs_the_packaged_encoder_and_is_skipped_otherwise(indexed, tmp_path):
    indexed(ProductFactory(sku="TEE-RED", title="red cotton tee", photos=["red"]))
    (tmp_path / "q.jpg").write_bytes(photo_bytes("red"))
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"qid": "i", "kind": "image", "query": "q.jpg", "graded": {"TEE-RED": 2}}))
    out = tmp_path / "r.json"
    call_command("mmsearch_evaluate", str(path), "--backbone", "--method", "image", "--json", str(out))
    results = json.loads(out.read_text())
    assert "packaged" in results["methods"][evaluation.BACKBONE]["image"]["skipped"]
    assert results["methods"]["image"]["image"]["n"] == 1


# --- the raw-backbone baseline (real EfficientNet) ---------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db
def test_backbone_ranks_a_product_by_its_own_photo_first(packaged_settings, tmp_path):
    from multimodal_search.encoders import get_encoder
    from multimodal_search.services.baseline import backbone_gallery, raw_features

    products = [
        ProductFactory(sku="A", title="one", photos=["red", ("blue", "circle")]),
        ProductFactory(sku="B", title="two", photos=[("green", "circle")]),
        ProductFactory(sku="C", title="three", photos=["yellow"]),
    ]
    assert services.index_products([p.pk for p in products]).indexed == 3
    encoder = get_encoder()
    # the catalogue's photos come from the kept backbone outputs: the CNN does not run for them
    with mock.patch.object(type(encoder._cnn), "forward", side_effect=AssertionError("CNN ran")):
        gallery = backbone_gallery()
    assert len(gallery.features) == 4
    for product, position in ((products[0], 1), (products[1], 0), (products[2], 0)):
        image = Image.open(product.images.get(position=position).image.path).convert("RGB")
        ranked = gallery.search(image, k=3)
        assert ranked[0][0].pk == product.pk and ranked[0][1] == pytest.approx(1.0, abs=2e-3)
        assert [score for _p, score in ranked] == sorted((score for _p, score in ranked), reverse=True)
        # the score is the cosine of the raw CNN features: no head, no colour part
        raw = raw_features(encoder, encoder.encode_image_backbone([image]))[0]
        assert raw.shape == (1280,) and np.linalg.norm(raw) == pytest.approx(1.0, abs=1e-4)
    # through the runner, as the "backbone" row
    (tmp_path / "q.jpg").write_bytes(Path(products[1].images.get().image.path).read_bytes())
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"qid": "i", "kind": "image", "query": "q.jpg", "graded": {"B": 2}}))
    results = evaluation.run_evaluation(load_queries(path), [evaluation.BACKBONE])
    assert results["methods"][evaluation.BACKBONE]["image"]["r1"] == 1.0
    assert results["methods"][evaluation.BACKBONE]["text"]["skipped"] == "no queries"
