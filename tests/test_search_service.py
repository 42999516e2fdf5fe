"""Indexing and search services on real PostgreSQL + pgvector with the deterministic HashEncoder."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command

from multimodal_search import services
from multimodal_search.models import ImageEmbedding, ProductEmbedding
from multimodal_search.ranking import fusion
from multimodal_search.services import candidates, query, search
from multimodal_search.store import get_store
from multimodal_search.store.base import Scope
from multimodal_search.store.pgvector import as_array
from shop.catalog.models import Category
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_index_stores_text_image_and_fused_vectors(indexed):
    product = ProductFactory(title="red running shoe", photos=["red", ("blue", "circle")])
    report = indexed(product)
    assert report.indexed == 1
    row = ProductEmbedding.objects.get(product_pk=str(product.pk))
    assert row.model_id == "hash-v1"
    assert len(row.text_vector) == 32
    assert row.image_count == 2
    assert ImageEmbedding.objects.filter(product_pk=str(product.pk)).count() == 2


def test_unchanged_content_is_skipped_and_changes_reindex(indexed):
    product = ProductFactory(title="green tent", photos=["green"])
    indexed(product)
    assert indexed(product).unchanged == 1
    product.title = "blue tent"
    product.save()
    assert indexed(product).indexed == 1


def test_a_new_fusion_text_weight_marks_stored_vectors_stale(indexed, settings):
    product = ProductFactory(title="green tent", photos=["green"])
    indexed(product)
    before = as_array(ProductEmbedding.objects.get(product_pk=str(product.pk)).fused_vector)
    assert indexed(product).unchanged == 1
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "FUSION": {**settings.MULTIMODAL_SEARCH.get("FUSION", {}), "TEXT_WEIGHT": 0.9},
    }
    assert indexed(product).indexed == 1  # the same content, stored with another recipe: re-encoded
    after = as_array(ProductEmbedding.objects.get(product_pk=str(product.pk)).fused_vector)
    assert not np.allclose(before, after, atol=1e-3)


def test_removed_and_inactive_products_leave_the_index(indexed):
    keep = ProductFactory(title="yellow kayak", photos=["yellow"])
    hide = ProductFactory(title="black kayak", photos=["black"])
    indexed(keep, hide)
    hide.active = False
    hide.save()
    report = indexed(hide)
    assert report.removed == 1
    assert not ProductEmbedding.objects.filter(product_pk=str(hide.pk)).exists()
    assert ProductEmbedding.objects.filter(product_pk=str(keep.pk)).exists()


def test_text_search_ranks_by_words(indexed):
    products = [
        ProductFactory(title="wool hiking socks", photos=["white"]),
        ProductFactory(title="leather travel bag", photos=["black"]),
        ProductFactory(title="steel water bottle", photos=["blue"]),
    ]
    indexed(*products)
    response = services.search_products("travel bag", k=3)
    assert response.hits[0].product == products[1]
    scores = [hit.score for hit in response.hits]
    assert scores == sorted(scores, reverse=True)


def test_photo_search_finds_the_product_with_that_photo(indexed, pil_photo):
    red = ProductFactory(title="thing one", photos=["red"])
    blue = ProductFactory(title="thing two", photos=["blue"])
    green = ProductFactory(title="thing three", photos=["green"])
    indexed(red, blue, green)
    response = services.search_products(image=pil_photo("blue"), k=3)
    assert response.hits[0].product == blue
    assert response.hits[0].explanation["visual"] > 0.5
    assert set(response.hits[0].explanation) == {"visual", "colour"}


def test_text_and_photo_together(indexed, pil_photo):
    a = ProductFactory(title="canvas tote bag", photos=["red"])
    b = ProductFactory(title="canvas tote bag", photos=["blue"])
    c = ProductFactory(title="metal lamp", photos=["blue"])
    indexed(a, b, c)
    hits = services.search_products("tote bag", pil_photo("blue"), k=3).hits
    assert hits[0].product == b
    assert set(hits[0].explanation) == {"visual", "text", "title", "image", "colour"}
    assert abs(sum(hits[0].explanation.values()) - 1) < 1e-3


def test_category_filter_returns_only_that_subtree(indexed):
    bags = Category.from_path("Gear > Bags")
    shoes = Category.from_path("Men > Shoes")
    products = [ProductFactory(title=f"item {i}", category=bags if i % 2 else shoes, photos=["red"]) for i in range(10)]
    indexed(*products)
    hits = services.search_products("item", k=10, category="Gear").hits
    assert len(hits) == 5
    assert all(hit.product.category == bags for hit in hits)


@pytest.mark.parametrize("method", services.METHODS)
def test_every_fusion_method_answers(indexed, method):
    products = [ProductFactory(title=t, photos=[c]) for t, c in [("red scarf", "red"), ("blue scarf", "blue")]]
    indexed(*products)
    hits = services.search_products("scarf", k=2, method=method).hits
    assert len(hits) == 2


def test_bad_input_raises_search_error():
    with pytest.raises(services.SearchError):
        services.search_products("   ")
    with pytest.raises(services.SearchError):
        services.search_products("x", k=0)
    with pytest.raises(services.SearchError):
        services.search_products("x", method="nope")


def test_similar_products_excludes_itself(indexed):
    products = [ProductFactory(title=f"blue denim jacket {i}", photos=["blue"]) for i in range(3)]
    products.append(ProductFactory(title="chocolate bar", photos=["black"]))
    indexed(*products)
    hits = services.similar_products(products[0], k=2)
    assert products[0] not in [hit.product for hit in hits]
    assert {hit.product for hit in hits} == {products[1], products[2]}


def test_similar_products_of_another_gender_come_last(indexed):
    own = ProductFactory(title="grey fleece hoodie", gender="Men", photos=["gray"])
    women = ProductFactory(title="grey fleece hoodie", gender="Women", photos=["gray"])
    unisex = ProductFactory(title="grey fleece hoodie zip", gender="Unisex", photos=["gray"])
    men = ProductFactory(title="grey cotton tee", gender="Men", photos=["white"])
    unstated = ProductFactory(title="grey wool scarf", photos=["white"])
    indexed(own, women, unisex, men, unstated)
    # the women's hoodie, its words and photo the men's own, is the nearest by the fused vector
    _encoder, model_id = query.current_encoder()
    store = get_store()
    vector = store.product_vector(str(own.pk), "fused_vector", model_id=model_id)
    nearest = [pk for pk, _ in store.nearest("fused_vector", vector, Scope(model_id, 5))]
    assert nearest.index(str(women.pk)) < nearest.index(str(men.pk))
    hits = [hit.product for hit in services.similar_products(own, k=4)]
    assert hits[-1] == women and set(hits[:3]) == {unisex, men, unstated}
    # a women's product's page: the men's tee last; a unisex product's: every gender in its place
    assert [hit.product for hit in services.similar_products(women, k=4)][-1] == men
    assert women in [hit.product for hit in services.similar_products(unisex, k=4)][:2]


def test_gender_within_kind_moves_only_the_products_of_the_kind_asked():
    kind = {"m-short": 1.0, "w-short": 1.0, "u-short": 1.0, "w-tank": 0.0, "m-short-2": 0.9}
    gender = {"m-short": 0.0, "w-short": 1.0, "u-short": 1.0, "w-tank": 1.0, "m-short-2": 0.0}
    order = ["m-short", "w-tank", "m-short-2", "w-short", "u-short", "unknown"]
    scores = dict(zip(order, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]))
    # the shorts keep places 0, 2, 3 and 4: the women's and unisex ones first; the tank and the rest stay
    moved, placed = search.gender_within_kind(order, scores, kind, gender)
    assert moved == ["w-short", "w-tank", "u-short", "m-short", "m-short-2", "unknown"]
    # each takes the score of its place: the scores fall with the order
    assert [placed[pk] for pk in moved] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert search.gender_within_kind(order, scores, None, gender) == (order, scores)  # no kind named
    assert search.gender_within_kind(order, scores, kind, None) == (order, scores)  # no gender named
    men_only = {pk: 0.0 for pk in order}
    assert search.gender_within_kind(order, scores, kind, men_only) == (order, scores)  # nothing to move


def test_the_kind_asked_for_the_gender_asked_comes_before_the_same_kind_for_another(
    indexed, model_dir, settings, monkeypatch
):
    """ "women's running shorts": a men's running short matches more of the words than a women's
    drawstring short, but of the shorts the women's come first; a women's running tank, not the kind
    asked, does not pass the men's short."""
    from multimodal_search.learning.attributes import train_attributes

    # the fused score by the words alone, as where a men's product's words say more than the gender (the
    # re-ranker's weights are learned); the rule holds whatever the scores
    fusion_settings = settings.MULTIMODAL_SEARCH.get("FUSION", {})
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "FUSION": {**fusion_settings, "GENDER_WEIGHT": 0.0}}
    shorts = {g: Category.from_path(f"{g} > Bottoms > Shorts") for g in ("Men", "Women")}
    tanks = Category.from_path("Women > Tops > Tanks")
    men = [
        ProductFactory(
            title=f"running shorts {i}",
            description="Running shorts.",
            gender="Men",
            category=shorts["Men"],
            photos=["blue"],
        )
        for i in range(4)
    ]
    women = [
        ProductFactory(title=f"drawstring short {i}", gender="Women", category=shorts["Women"], photos=["blue"])
        for i in range(4)
    ]
    tank = [
        ProductFactory(title=f"running tank {i}", gender="Women", category=tanks, photos=["blue"]) for i in range(4)
    ]
    indexed(*men, *women, *tank)
    assert "category" in train_attributes()["facets"]
    hits = services.search_products("women's running shorts", k=12, method="feature").hits
    assert hits[0].signals["kind_asked"] == 1.0 and hits[0].signals["gender"] == 1.0
    order = [hit.product for hit in hits]
    # of the shorts, every women's one comes before every men's one, and the scores fall with the order
    assert max(order.index(product) for product in women) < min(order.index(product) for product in men)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    # by the words alone (the rule off), a men's short came first, and the tanks held the same places
    monkeypatch.setattr(search, "gender_within_kind", lambda order, scores, kind, gender: (order, scores))
    plain = [hit.product for hit in services.search_products("women's running shorts", k=12, method="feature").hits]
    assert plain.index(men[0]) < max(plain.index(product) for product in women)
    assert [order.index(product) for product in tank] == [plain.index(product) for product in tank]


def test_lexical_is_postgres_full_text_search(indexed, pil_photo):
    boots = ProductFactory(title="waterproof hiking boots", photos=["black"])
    tee = ProductFactory(title="cotton tee", photos=["white"])
    indexed(boots, tee)
    hits = services.search_products("boot", method="lexical", k=5).hits  # stemmed: boot ~ boots
    assert [hit.product for hit in hits] == [boots]
    assert hits[0].explanation == {"lexical": 1.0}
    with pytest.raises(services.SearchError):
        services.search_products(image=pil_photo("red"), method="lexical")


def test_decision_fusion_explains_by_rank_contributions(indexed):
    products = [ProductFactory(title=t, photos=[c]) for t, c in [("red wool scarf", "red"), ("blue wool hat", "blue")]]
    indexed(*products)
    hit = services.search_products("wool scarf", k=1, method="decision").hits[0]
    assert hit.product == products[0]
    assert set(hit.explanation) == {"text", "title", "image", "lexical"}


def _copy_rows_to(model_id):
    for model in (ProductEmbedding, ImageEmbedding):
        for row in model.objects.all():
            row.pk = None
            row.model_id = model_id
            row.save()


def test_reindex_drops_older_encoder_versions_once_the_current_one_is_complete(indexed):
    products = [ProductFactory(title=f"tent {i}", photos=["green"]) for i in range(3)]
    indexed(*products[:2])
    _copy_rows_to("old-v0")
    assert services.drop_older_encoders() == (0, [])  # the third product is not indexed yet: keep the old ones
    call_command("mmsearch_reindex", "--sync", "--missing", "--keep-old")
    assert ProductEmbedding.objects.filter(model_id="old-v0").count() == 2
    call_command("mmsearch_reindex", "--sync", "--missing")
    assert not ProductEmbedding.objects.filter(model_id="old-v0").exists()
    assert not ImageEmbedding.objects.filter(model_id="old-v0").exists()
    assert ProductEmbedding.objects.filter(model_id="hash-v1").count() == 3


def test_neighbour_signal_matches_its_definition(indexed):
    """The one-round-trip SQL gives what the docstring says: each candidate's best photo against
    the mean photo features of the top 5 candidates by RRF of text, title and keyword ranks."""
    specs = [
        ("red canvas bag", "red"),
        ("red leather bag", ("red", "circle")),
        ("blue bag", "blue"),
        ("green tent", "green"),
        ("yellow kayak", "yellow"),
        ("red tent", ("red", "circle")),
        ("white socks", "white"),
        ("black bag", "black"),
    ]
    products = [ProductFactory(title=title, photos=[photo, "white"]) for title, photo in specs]
    indexed(*products)
    encoded = query.encode_query("red bag", None)
    pool, signals = candidates.collect_signals(
        encoded, {"text", "title", "image", "lexical", "neighbours"}, "hash-v1", 100, []
    )
    lists = {name: fusion.rank(signals[name]) for name in ("text", "title", "lexical")}
    lists["lexical"] = [pk for pk in lists["lexical"] if signals["lexical"][pk] > 0]
    leaders = fusion.rank(fusion.reciprocal_rank_fusion(lists))[:5]
    photos = {}
    for row in ImageEmbedding.objects.filter(model_id="hash-v1"):
        photos.setdefault(row.product_pk, []).append(as_array(row.feature_vector))
    centre = np.mean([v for pk in leaders for v in photos[pk]], axis=0)

    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    expected = {pk: max(cosine(v, centre) for v in photos[pk]) for pk in pool}
    assert set(signals["neighbours"]) == set(pool)
    for pk in pool:
        assert signals["neighbours"][pk] == pytest.approx(expected[pk], abs=2e-3)


def test_index_stores_the_pool_vector_and_words_search_one_index_for_text_and_photos(indexed):
    product = ProductFactory(title="red running shoe", description="light trail runner", photos=["red"])
    indexed(product)
    row = ProductEmbedding.objects.get(product_pk=str(product.pk))
    parts = [as_array(vector) for vector in (row.text_vector, row.title_vector, row.image_vector)]
    assert as_array(row.pool_vector) == pytest.approx(sum(fusion.normalize(p) for p in parts), abs=2e-3)
    # a words search: text and photo-in-text-space candidates from the pool column, the title its own
    assert candidates.rank_columns({"text", "title", "image", "lexical"}) == {
        "pool": "pool_vector",
        "title": "title_vector",
    }
    assert candidates.rank_columns({"text", "lexical"}) == {"text": "text_vector"}
    found = services.search_products("red running shoe", k=5)
    assert [hit.product_pk for hit in found.hits] == [str(product.pk)]
