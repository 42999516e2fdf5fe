"""The contract every vector store must pass (``multimodal_search.store.base.BaseVectorStore``).

A new store subclasses ``VectorStoreContract`` and provides a ``store`` fixture, as
``TestPgvectorStore`` does for the pgvector one (real PostgreSQL with pgvector).
Distances are checked against numpy, as pgvector's own tests check its operators.
"""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_search.store.base import (
    POOL_COLUMN,
    BaseVectorStore,
    CandidateRequest,
    Neighbours,
    PhotoVectors,
    ProductVectors,
    Scope,
    pool_vector,
)
from multimodal_search.store.pgvector import PgvectorStore

MODEL = "contract-v1"
OTHER = "contract-v2"
DIMS = 8
FEATURES = 6
#: halfvec keeps about 3 significant digits
HALF = 2e-3


#: product identifiers of one parent sku ("MH07") and of another
CODES = ("MH07-Gray", "MH07-Red", "MH07-Gray-XS", "MH070", "24-MB01")


def unit(rng: np.random.RandomState, dims: int) -> np.ndarray:
    vector = rng.standard_normal(dims).astype(np.float32)
    return vector / np.linalg.norm(vector)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def product(
    pk: str, rng: np.random.RandomState, *, photos: int = 2, category: str = "Tops", text: str = ""
) -> ProductVectors:
    return ProductVectors(
        product_pk=pk,
        content_hash=f"hash-{pk}",
        text_vector=unit(rng, DIMS),
        title_vector=unit(rng, DIMS),
        image_vector=unit(rng, DIMS) if photos else None,
        fused_vector=unit(rng, DIMS),
        categories=[category],
        fields={"title": f"Product {pk}", "color": "Red", "group": pk[:1]},
        search_text=text or f"product {pk}",
        photos=[PhotoVectors(f"{pk}-{i}.jpg", unit(rng, FEATURES), unit(rng, DIMS)) for i in range(photos)],
    )


class VectorStoreContract:
    """Tests any ``BaseVectorStore`` must pass; subclasses give a ``store`` fixture."""

    @pytest.fixture
    def catalogue(self, store: BaseVectorStore) -> dict[str, ProductVectors]:
        rng = np.random.RandomState(7)
        items = [product(f"P{i}", rng, category="Tops" if i % 2 else "Bags") for i in range(12)]
        items.append(product("Q", rng, photos=0, text="waterproof rucksack for hiking"))
        store.ensure_indexes(MODEL, DIMS, FEATURES)
        store.save_products(MODEL, items)
        return {item.product_pk: item for item in items}

    def test_bookkeeping(self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]) -> None:
        assert store.count(MODEL) == 13
        assert store.count(MODEL, ["P1", "P2", "nope"]) == 2
        assert store.count_photos(MODEL) == 24
        assert store.stored_pks(MODEL) == set(catalogue)
        assert store.content_hashes(MODEL, ["P1", "nope"]) == {"P1": "hash-P1"}
        assert store.model_ids() == [MODEL]

    def test_titled_reads_whole_title_words_not_the_description(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        # every title is "Product <pk>"; Q's text says "rucksack", its title does not
        groups = [["products", "product"], ["rucksack"], ["prod"], ["q"], [], ["x'); drop"]]
        assert store.titled(MODEL, groups) == [True, False, False, True, False, False]
        assert store.titled(OTHER, [["product"]]) == [False]  # another encoder version's rows
        assert store.titled(MODEL, []) == []

    def test_titles_having_reads_every_group_among_the_products_given(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        # every title is "Product <pk>" (P1, P2, ... Q)
        assert store.titles_having(MODEL, ["P1", "P2", "Q"], [["products", "product"], ["p1", "q"]]) == {"P1", "Q"}
        assert store.titles_having(MODEL, ["P1", "Q"], [["product"], ["rucksack"]]) == set()  # Q's text, not title
        assert store.titles_having(MODEL, ["P1"], []) == set() and store.titles_having(MODEL, [], [["p1"]]) == set()
        assert store.titles_having(MODEL, ["P1"], [["p1"], ["x'); drop"]]) == set()  # an unsafe form: no group
        assert store.titles_having(OTHER, ["P1"], [["product"]]) == set()  # another encoder version's rows

    def test_saving_again_replaces_a_product_and_its_photos(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        again = product("P1", np.random.RandomState(99), photos=1)
        again.content_hash = "changed"
        store.save_products(MODEL, [again])
        assert store.count(MODEL) == 13
        assert store.count_photos(MODEL) == 23
        assert store.content_hashes(MODEL, ["P1"]) == {"P1": "changed"}
        stored = store.product_vector("P1", "text_vector", model_id=MODEL)
        assert stored is not None
        np.testing.assert_allclose(stored, again.text_vector, atol=HALF)

    def test_versions_live_side_by_side_and_drop_alone(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        store.ensure_indexes(OTHER, DIMS, FEATURES)
        store.ensure_indexes(OTHER, DIMS, FEATURES)  # idempotent
        store.save_products(OTHER, [product("P1", np.random.RandomState(3))])
        assert store.model_ids() == [MODEL, OTHER]
        assert store.stored_pks() == set(catalogue)
        assert store.stored_pks(OTHER) == {"P1"} and store.stored_pks(among=["P1", "P2", "nope"]) == {"P1", "P2"}
        # every stored product once, whatever its versions, a page at a time and in one order
        pages, after = [], None
        while page := store.stored_pks_after(after, 5):
            pages.append(page)
            after = page[-1]
        assert [len(page) for page in pages] == [5, 5, 3]
        walked = [pk for page in pages for pk in page]
        assert len(walked) == len(set(walked)) and set(walked) == set(catalogue)
        assert store.drop_model(OTHER) == 1
        assert store.model_ids() == [MODEL]
        assert store.count(MODEL) == 13

    def test_delete_removes_every_version(self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]) -> None:
        store.save_products(OTHER, [product("P1", np.random.RandomState(3))])
        assert store.delete_products(["P1", "P2"]) == 3
        assert store.stored_pks() == set(catalogue) - {"P1", "P2"}
        assert store.count_photos(MODEL) == 20

    def test_nearest_orders_by_cosine(self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]) -> None:
        query = unit(np.random.RandomState(1), DIMS)
        found = store.nearest("text_vector", query, Scope(MODEL, 5))
        exact = sorted(catalogue, key=lambda pk: -cosine(query, catalogue[pk].text_vector))[:5]
        assert [pk for pk, _ in found] == exact
        for pk, similarity in found:
            assert similarity == pytest.approx(cosine(query, catalogue[pk].text_vector), abs=HALF)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)

    def test_category_filter_still_returns_limit_rows(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        query = unit(np.random.RandomState(2), DIMS)
        found = store.nearest("fused_vector", query, Scope(MODEL, 4, ["Bags"]))
        assert len(found) == 4
        assert all(catalogue[pk].categories == ["Bags"] for pk, _ in found)
        photos = store.nearest("feature_vector", unit(np.random.RandomState(2), FEATURES), Scope(MODEL, 3, ["Tops"]))
        assert len(photos) == 3 and all(catalogue[pk].categories == ["Tops"] for pk, _ in photos)

    def test_nearest_by_photos_scores_a_product_by_its_best_photo(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        target = catalogue["P3"].photos[1].features
        found = store.nearest("feature_vector", target, Scope(MODEL, 4))
        assert found[0][0] == "P3" and found[0][1] == pytest.approx(1.0, abs=HALF)
        assert len({pk for pk, _ in found}) == len(found)  # one row per product

        def best(pk: str) -> float:
            return max(cosine(target, photo.features) for photo in catalogue[pk].photos)

        exact = store.similarities(["P3", "P4", "Q"], "feature_vector", target, model_id=MODEL)
        assert set(exact) == {"P3", "P4"}  # Q has no photos
        for pk, similarity in exact.items():
            assert similarity == pytest.approx(best(pk), abs=HALF)

    def test_exact_product_similarities(self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]) -> None:
        query = unit(np.random.RandomState(4), DIMS)
        exact = store.similarities(["P1", "P2", "Q"], "image_vector", query, model_id=MODEL)
        assert set(exact) == {"P1", "P2"}  # Q has no pooled photo vector
        for pk, similarity in exact.items():
            image = catalogue[pk].image_vector
            assert image is not None
            assert similarity == pytest.approx(cosine(query, image), abs=HALF)
        assert store.similarities([], "text_vector", query, model_id=MODEL) == {}

    def test_inferred_facets_are_read_over_the_fields(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        assert store.product_fields(["P1"], model_id=MODEL)["P1"] == catalogue["P1"].fields
        # what a retrain writes: the facets alone, a pk not stored for this version skipped
        written = store.update_inferred(
            MODEL,
            {
                "P1": {"colour_inferred": {"blue": 0.9}, "gender_inferred": None},
                "P2": {"color": "Green"},  # a facet over a stated field is read first
                "nope": {"colour_inferred": {"red": 1.0}},
            },
        )
        assert written == 2
        assert store.product_fields(["P1", "P2", "nope"], model_id=MODEL) == {
            "P1": {**catalogue["P1"].fields, "colour_inferred": {"blue": 0.9}},
            "P2": {**catalogue["P2"].fields, "color": "Green"},
        }
        assert store.product_rows(MODEL)["P1"] == (
            {**catalogue["P1"].fields, "colour_inferred": {"blue": 0.9}},
            ["Tops"],
        )
        assert store.product_rows(MODEL, ["P3"]) == {"P3": (catalogue["P3"].fields, ["Tops"])}
        request = CandidateRequest(
            vector=catalogue["P1"].text_vector,
            rank_columns={"text": "text_vector"},
            signal_columns={},
            extra_pks=["P1", "P2"],
            field_keys=["color", "colour_inferred", "gender_inferred"],
        )
        found = store.candidates(request, Scope(MODEL, 1))
        assert found.fields["P1"] == {"color": "Red", "colour_inferred": {"blue": 0.9}}
        assert found.fields["P2"] == {"color": "Green"}

        # a null facet hides the same key stored in the fields (rows written before migration 0020)
        old = product("P4", np.random.RandomState(4))
        old.fields = {**old.fields, "gender_inferred": {"men": 1.0}, "colour_inferred": {"red": 1.0}}
        store.save_products(MODEL, [old])
        store.update_inferred(MODEL, {"P4": {"gender_inferred": None, "colour_inferred": {"blue": 1.0}}})
        assert store.product_fields(["P4"], model_id=MODEL)["P4"] == {
            **catalogue["P4"].fields,
            "colour_inferred": {"blue": 1.0},
        }
        found = store.candidates(
            CandidateRequest(
                old.text_vector,
                {"text": "text_vector"},
                {},
                extra_pks=["P4"],
                field_keys=["gender_inferred", "colour_inferred"],
            ),
            Scope(MODEL, 1),
        )
        assert found.fields["P4"] == {"colour_inferred": {"blue": 1.0}}

    def test_saving_a_product_replaces_its_inferred_facets(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        item = product("P1", np.random.RandomState(1))
        item.inferred = {"colour_inferred": {"blue": 0.8}}
        store.save_products(MODEL, [item])
        assert store.product_fields(["P1"], model_id=MODEL)["P1"]["colour_inferred"] == {"blue": 0.8}
        item.inferred = {}  # saved again with none (its attribute model gone): none read
        store.save_products(MODEL, [item])
        assert store.product_fields(["P1"], model_id=MODEL)["P1"] == item.fields
        item.inferred = {"colour_inferred": {"red": 0.7}}
        store.save_products(MODEL, [item])
        store.save_products(OTHER, [item])
        assert store.delete_products(["P1"]) == 2  # and its facets with it, every version
        store.save_products(MODEL, [product("P1", np.random.RandomState(1))])
        assert "colour_inferred" not in store.product_fields(["P1"], model_id=MODEL)["P1"]

    def test_training_reads(self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]) -> None:
        texts = store.text_vectors(MODEL)
        assert set(texts) == set(catalogue)
        np.testing.assert_allclose(texts["P5"], catalogue["P5"].text_vector, atol=HALF)
        photos = store.photo_vectors(MODEL)
        assert "Q" not in photos
        features, shared = photos["P5"]
        assert features.shape == (2, FEATURES) and shared.shape == (2, DIMS)
        np.testing.assert_allclose(features[1], catalogue["P5"].photos[1].features, atol=HALF)  # photo order kept
        assert store.product_vector("nope", "text_vector", model_id=MODEL) is None
        fused = store.product_vectors(["P5", "P2", "nope"], "fused_vector", model_id=MODEL)
        assert set(fused) == {"P5", "P2"}
        np.testing.assert_allclose(fused["P2"], catalogue["P2"].fused_vector, atol=HALF)
        closest = store.closest_products(["P1", "P2", "nope"], ["P1", "P3", "P4"], "fused_vector", model_id=MODEL)
        assert set(closest) == {"P1", "P2"}
        for pk, (like, sim) in closest.items():
            cosines = {
                other: float(
                    catalogue[pk].fused_vector
                    @ catalogue[other].fused_vector
                    / np.linalg.norm(catalogue[pk].fused_vector)
                    / np.linalg.norm(catalogue[other].fused_vector)
                )
                for other in ("P1", "P3", "P4")
                if other != pk
            }
            assert like == max(cosines, key=cosines.__getitem__) and sim == pytest.approx(cosines[like], abs=1e-3)

    def test_candidates_pool_signals_and_fields(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        query = unit(np.random.RandomState(5), DIMS)
        request = CandidateRequest(
            vector=query,
            rank_columns={"text": "text_vector"},
            signal_columns={"text": "text_vector", "image": "image_vector"},
            lexical_text="rucksack",
            extra_pks=["P11"],
            field_keys=["color"],
            neighbours=Neighbours(("text", "lexical"), 3, FEATURES, 60),
        )
        found = store.candidates(request, Scope(MODEL, 3))
        top3 = sorted(catalogue, key=lambda pk: -cosine(query, catalogue[pk].text_vector))[:3]
        assert set(found.pool) == set(top3) | {"Q", "P11"}  # nearest by text, the keyword match, the extra pk
        for pk in found.pool:
            assert found.signals["text"][pk] == pytest.approx(cosine(query, catalogue[pk].text_vector), abs=HALF)
            assert found.fields[pk] == {"color": "Red"}
        assert "Q" not in found.signals["image"]  # no photos, no value
        assert found.signals["lexical"]["Q"] > 0
        assert all(value == 0 for pk, value in found.signals["lexical"].items() if pk != "Q")
        assert set(found.signals["neighbours"]) == set(found.pool) - {"Q"}
        assert all(-1.0 <= value <= 1.0 + HALF for value in found.signals["neighbours"].values())

    def test_products_by_code_reads_identifiers_and_groups(self, store: BaseVectorStore) -> None:
        rng = np.random.RandomState(5)
        items = [product(pk, rng, category="Bags" if pk.endswith("Red") else "Tops") for pk in CODES]
        for item in items:  # the variants' parent sku; another product's is no start of its identifier
            item.fields["group"] = "MH07" if item.product_pk.startswith("MH07-") else f"Parent-{item.product_pk}"
        store.ensure_indexes(MODEL, DIMS, FEATURES)
        store.save_products(MODEL, items)
        # the identifier itself first, case aside, then the others that start with it and a separator
        assert store.products_by_code(MODEL, "mh07-gray") == ["MH07-Gray", "MH07-Gray-XS"]
        assert store.products_by_code(MODEL, "MH07") == ["MH07-Gray", "MH07-Gray-XS", "MH07-Red"]
        assert store.products_by_code(MODEL, "mh07", categories=["Bags"]) == ["MH07-Red"]
        assert store.products_by_code(MODEL, "MH07", limit=1) == ["MH07-Gray"]
        # the group alone: a parent sku that is no identifier's start
        assert store.products_by_code(MODEL, "parent-24-mb01") == ["24-MB01"]
        assert store.products_by_code(MODEL, "24-MB01") == ["24-MB01"]
        # a code that only starts an identifier, or a LIKE wildcard, finds nothing
        assert store.products_by_code(MODEL, "mh0") == [] and store.products_by_code(MODEL, "mh_7") == []
        assert store.products_by_code(MODEL, "%") == [] and store.products_by_code(OTHER, "mh07") == []
        # a shop whose primary keys are numbers states the code shoppers see as ``fields["sku"]``
        numbered = product("991", rng)
        numbered.fields.update(sku="WT09-Yellow", group="WT09")
        store.save_products(MODEL, [numbered])
        assert store.products_by_code(MODEL, "wt09-yellow") == ["991"] == store.products_by_code(MODEL, "WT09")
        assert store.products_by_code(MODEL, "991") == ["991"]

    def test_having_every_word_reads_the_full_text_of_the_listed_products(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        everyone = list(catalogue)
        assert store.having_every_word(MODEL, everyone, ["Rucksacks for the hike"]) == {"Q"}  # stemmed, stop words out
        assert store.having_every_word(MODEL, everyone, ["rucksack tent"]) == set()  # every word, not any
        assert store.having_every_word(MODEL, everyone, ["rucksack tent", "hiking rucksack"]) == {"Q"}  # of one text
        assert store.having_every_word(MODEL, ["P1", "P2"], ["rucksack"]) == set()  # only those listed
        assert store.having_every_word(OTHER, everyone, ["rucksack"]) == set()  # only that version
        assert store.having_every_word(MODEL, everyone, ["the"]) == set()  # no word left to have
        assert store.having_every_word(MODEL, [], ["rucksack"]) == set() == store.having_every_word(MODEL, everyone, [])

    def test_the_pool_column_ranks_by_the_sum_of_three_cosines(
        self, store: BaseVectorStore, catalogue: dict[str, ProductVectors]
    ) -> None:
        """One branch over ``POOL_COLUMN`` takes the products whose text, title and photos-in-text-space
        cosines to the words add up to most (a product without photos by the other two), its rows
        ``POOL_ROWS_FACTOR`` times a branch's."""
        query = unit(np.random.RandomState(6), DIMS)

        def summed(item: ProductVectors) -> float:
            parts = (item.text_vector, item.title_vector, item.image_vector)
            return sum(cosine(query, part) for part in parts if part is not None)

        request = CandidateRequest(vector=query, rank_columns={"pool": POOL_COLUMN}, signal_columns={})
        found = store.candidates(request, Scope(MODEL, 2))
        ranked = sorted(catalogue, key=lambda pk: -summed(catalogue[pk]))
        assert set(found.pool) == set(ranked[:6])  # 2 rows x POOL_ROWS_FACTOR 3
        nearest = store.nearest(POOL_COLUMN, query, Scope(MODEL, 4))
        assert [pk for pk, _ in nearest] == ranked[:4]

    def test_unsafe_model_ids_and_columns_are_refused(self, store: BaseVectorStore) -> None:
        with pytest.raises(ValueError):
            store.ensure_indexes("bad'; drop table x; --", DIMS, FEATURES)
        with pytest.raises(ValueError):
            store.nearest("search_text", np.ones(DIMS), Scope(MODEL, 1))


def test_pool_vector_sums_unit_vectors_and_skips_missing_ones() -> None:
    text, title = np.array([3.0, 0.0], np.float32), np.array([0.0, 0.5], np.float32)
    assert pool_vector(text, title, None) == pytest.approx([1.0, 1.0])
    assert pool_vector(text, np.zeros(2, np.float32), np.array([0.0, -2.0])) == pytest.approx([1.0, -1.0])


@pytest.mark.django_db
class TestPgvectorStore(VectorStoreContract):
    @pytest.fixture
    def store(self) -> BaseVectorStore:
        return PgvectorStore()
