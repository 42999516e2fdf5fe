"""The planner uses the HNSW indexes: ``EXPLAIN`` of every vector read the searches run.

A few thousand products with clustered vectors (real searches look like this: many near-copies
of a few kinds of product) are stored through the store and ``ANALYZE``d, and each statement is
explained under the settings the store runs it with (``store.sql.session_settings``). For an
unfiltered read those turn sequential scans and sorts off, so the plan shows the HNSW index exactly
when the index is *eligible*: when its predicate and expression match the query. That is the bug
this file guards against: partial indexes ``WHERE ... AND col IS NOT NULL`` that PostgreSQL 18 never
matched for a NOT NULL column, which no setting could make it use. With those settings left on, the
planner prefers a scan at this size (m = 32 makes its index estimate higher); its own choice at
100,000 products, the index, is in ``bench/search.py``'s saved ``EXPLAIN ANALYZE``. The keyword
branch is checked for its bounded cost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction

from multimodal_search.store import sql
from multimodal_search.store.base import CandidateRequest, Neighbours, PhotoVectors, ProductVectors, Scope
from multimodal_search.store.pgvector import PgvectorStore, VectorQuery

MODEL = "explain-v1"
DIMS = 32
FEATURES = 24
PRODUCTS = 3000
CLUSTERS = 30
WORDS = ["black", "blue", "red", "hoodie", "jacket", "bag", "watch", "shorts", "tee", "yoga"]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def _catalogue(rng: np.random.RandomState) -> list[ProductVectors]:
    centres = _unit(rng.standard_normal((CLUSTERS, DIMS)))
    feature_centres = _unit(rng.standard_normal((CLUSTERS, FEATURES)))
    items = []
    for i in range(PRODUCTS):
        kind = i % CLUSTERS

        def near(scale: float = 0.35, kind: int = kind) -> np.ndarray:
            return _unit(centres[kind] + scale * rng.standard_normal(DIMS) / np.sqrt(DIMS))

        words = " ".join(WORDS[j] for j in rng.choice(len(WORDS), 3, replace=False))
        items.append(
            ProductVectors(
                product_pk=f"P{i:05d}",
                content_hash=str(i),
                text_vector=near(),
                title_vector=near() if i % 5 else None,  # nullable columns hold NULLs
                image_vector=near() if i % 7 else None,
                fused_vector=near(),
                categories=[f"C{i % 100}"],
                fields={},
                search_text=f"product {i} {words}",
                photos=[
                    PhotoVectors(
                        f"{i}-0.jpg",
                        _unit(feature_centres[kind] + 0.35 * rng.standard_normal(FEATURES) / np.sqrt(FEATURES)),
                        near(),
                    )
                ],
            )
        )
    return items


@pytest.fixture(scope="module")
def catalogue(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, ProductVectors]]:
    """Stored once for the module (committed) and removed at its end."""
    store = PgvectorStore()
    items = _catalogue(np.random.RandomState(11))
    with django_db_blocker.unblock():
        store.ensure_indexes(MODEL, DIMS, FEATURES)
        store.save_products(MODEL, items)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {sql.PRODUCT_TABLE}")
            cursor.execute(f"ANALYZE {sql.IMAGE_TABLE}")
        yield {item.product_pk: item for item in items}
        store.drop_model(MODEL)


@pytest.fixture
def store(catalogue: dict[str, ProductVectors], db: None) -> PgvectorStore:
    return PgvectorStore()


def _index(table: str, column: str) -> str:
    return sql.index_name(table, column, MODEL)


def _query(seed: int, dims: int = DIMS) -> np.ndarray:
    return _unit(np.random.RandomState(seed).standard_normal(dims))


def _plans(store: PgvectorStore, query: VectorQuery | None) -> list[str]:
    assert query is not None
    return [store.explain(query)]


def _sorts_by_distance(plan: str) -> list[str]:
    return [line for line in plan.splitlines() if "Sort Key" in line and ("<=>" in line or "<#>" in line)]


@pytest.mark.parametrize("column", ["text_vector", "title_vector", "image_vector", "fused_vector", "pool_vector"])
def test_nearest_product_uses_its_index(store: PgvectorStore, column: str) -> None:
    for plan in _plans(store, store.nearest_query(column, _query(1), Scope(MODEL, 10))):
        assert f"Index Scan using {_index(sql.PRODUCT_TABLE, column)}" in plan, plan
        assert "Seq Scan" not in plan, plan
        assert not _sorts_by_distance(plan), plan


@pytest.mark.parametrize("column", ["feature_vector", "shared_vector"])
def test_nearest_photo_uses_its_index(store: PgvectorStore, column: str) -> None:
    dims = FEATURES if column == "feature_vector" else DIMS
    for plan in _plans(store, store.nearest_query(column, _query(2, dims), Scope(MODEL, 10))):
        assert f"Index Scan using {_index(sql.IMAGE_TABLE, column)}" in plan, plan
        assert "Seq Scan" not in plan, plan


def test_every_candidate_branch_uses_its_index(store: PgvectorStore) -> None:
    """The one statement of the first stage: each of the five HNSW branches (the pool column's, by inner
    product, among them) reads its index, and no step sorts rows by a vector distance (what an exact
    scan does). At this size the planner reads the keyword matches and the exact signals of the pool
    with cheap, bounded sequential scans (``LIMIT`` on the matches; see the keyword test)."""
    columns = {"text": "text_vector", "title": "title_vector", "image": "image_vector", "fused": "fused_vector"}
    ranked = {"pool": "pool_vector", **columns}
    request = CandidateRequest(
        vector=_query(3),
        rank_columns=ranked,
        signal_columns=columns,
        lexical_text="black hoodie",
        extra_pks=["P00001"],
        field_keys=["color"],
        neighbours=Neighbours(("text", "lexical"), 10, FEATURES, 60),
    )
    query, names = store.candidates_query(request, Scope(MODEL, 100))
    assert names == ["text", "title", "image", "fused", "lexical", "neighbours"]
    for plan in _plans(store, query):
        for column in ranked.values():
            assert f"Index Scan using {_index(sql.PRODUCT_TABLE, column)}" in plan, plan
        assert not _sorts_by_distance(plan), plan


def test_candidate_branches_search_deep_enough_for_their_rows(store: PgvectorStore) -> None:
    """The pool's branches return 100 rows each and are re-scored exactly: they run at
    ``POOL_EF_FACTOR`` times the configured ``ef_search``, at least their row count (a scan returns at
    most ``ef_search`` rows) and at most pgvector's 1,000; a raw answer at the configured value."""
    request = CandidateRequest(vector=_query(5), rank_columns={"text": "text_vector"}, signal_columns={})
    for configured in (400, 50, 600, 1000):
        expected = min(1000, max(100, round(sql.POOL_EF_FACTOR * configured)))
        query, _names = store.candidates_query(request, Scope(MODEL, 100, ef_search=configured))
        assert query is not None and query.ef_search == expected
        assert f"SET LOCAL hnsw.ef_search = {expected}" in sql.session_settings(query.ef_search, False)
        assert store.nearest_query("text_vector", _query(5), Scope(MODEL, 10, ef_search=configured)).ef_search == (
            configured
        )
    # the pool column's branch returns POOL_ROWS_FACTOR times the rows: its scan searches at least as deep
    pooled = CandidateRequest(vector=_query(5), rank_columns={"pool": "pool_vector"}, signal_columns={})
    query, _names = store.candidates_query(pooled, Scope(MODEL, 200, ef_search=50))
    assert query is not None and query.ef_search == 200 * sql.POOL_ROWS_FACTOR
    assert f"LIMIT {200 * sql.POOL_ROWS_FACTOR}" in query.statement
    assert len(store.candidates(pooled, Scope(MODEL, 200, ef_search=50)).pool) == 200 * sql.POOL_ROWS_FACTOR


def test_shallower_branches_run_at_their_own_ef_search(store: PgvectorStore) -> None:
    """The pool column's branch returns three times the title's rows: the statement runs at the pool's
    ``ef_search`` (2 x 400) and the title's branch, through ``sql.NEAREST_FUNCTION``, at the configured
    400 (as deep per row returned would be 267: the configured value is the floor). The
    function's setting holds for its own scan only: an HNSW scan returns at most ``ef_search`` rows, so at
    10 a branch asking for 100 returns 10, and the caller's setting is the same afterwards."""
    ranked = {"pool": "pool_vector", "title": "title_vector"}
    request = CandidateRequest(vector=_query(8), rank_columns=ranked, signal_columns={})
    for categories in ([], ["C9"]):
        query, _names = store.candidates_query(request, Scope(MODEL, 100, categories, ef_search=400))
        assert query is not None and query.ef_search == 800
        assert [(branch.ef_search, "title_vector" in branch.statement) for branch in query.inner] == [(400, True)]
        assert query.statement.count(f"{sql.NEAREST_FUNCTION}(") == 1
        found = store.candidates(request, Scope(MODEL, 100, categories, ef_search=400)).pool
        with transaction.atomic(), connection.cursor() as cursor:  # the title's branch on its own, as deep
            title = [row[0] for row in PgvectorStore._run(cursor, query.inner[0])]
        assert len(title) == (100 if not categories else 30) and set(title) <= set(found)
    inner = sql.nearest_branch("title_vector", DIMS, MODEL, 100, False, ("$1", "$2"))
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in sql.session_settings(100, False):
            cursor.execute(setting)
        cursor.execute(
            f"SELECT count(*), current_setting('hnsw.ef_search') FROM {sql.NEAREST_FUNCTION}(%s, %s, %s::varchar[], 10)",
            [inner, sql.to_literal(_query(8)), []],
        )
        assert cursor.fetchone() == (10, "100")
        cursor.execute(
            f"SELECT count(*) FROM {sql.NEAREST_FUNCTION}(%s, %s, %s::varchar[], 100)",
            [inner, sql.to_literal(_query(8)), []],
        )
        assert cursor.fetchone() == (100,)


def test_a_read_never_inherits_another_reads_settings(store: PgvectorStore) -> None:
    """``SET LOCAL`` lasts until the transaction ends (a request's, with ``ATOMIC_REQUESTS``; here the
    test's): each read writes all of its settings, so an unfiltered read after a filtered one runs
    without the iterative scan, and a filtered one after it with sequential scans and sorts back on."""

    def current() -> tuple[str, ...]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('hnsw.iterative_scan'), current_setting('enable_seqscan'), "
                "current_setting('enable_sort')"
            )
            return tuple(cursor.fetchone())

    store.nearest("text_vector", _query(9), Scope(MODEL, 10, ["C9"]))
    assert current() == ("relaxed_order", "on", "on")
    store.nearest("text_vector", _query(9), Scope(MODEL, 10))
    assert current() == ("off", "off", "off")
    store.nearest("text_vector", _query(9), Scope(MODEL, 10, ["C9"]))
    assert current() == ("relaxed_order", "on", "on")


def test_filtered_reads_return_full_pages(store: PgvectorStore, catalogue: dict[str, ProductVectors]) -> None:
    """1% of the products are in a category: every filtered read still fills its page, in order."""
    for column in ("text_vector", "feature_vector"):
        dims = FEATURES if column == "feature_vector" else DIMS
        found = store.nearest(column, _query(4, dims), Scope(MODEL, 25, ["C7"]))
        assert len(found) == 25
        assert all(catalogue[pk].categories == ["C7"] for pk, _ in found)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    request = CandidateRequest(vector=_query(5), rank_columns={"text": "text_vector"}, signal_columns={})
    assert len(store.candidates(request, Scope(MODEL, 30, ["C8"])).pool) == 30


def test_keyword_branch_ranks_a_bounded_set(store: PgvectorStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "black hoodie" (OR) matches about half of the products and about 200 have both words: with a
    cap of 50, products with every word still come first, the page is full, and no step of the plan
    after the GIN index handles more than the capped rows. The OR matches are read from the word
    table's B-tree, at most the cap per word, never as a bitmap of every match (only the AND half's
    matches go through the GIN index)."""
    request = CandidateRequest(vector=_query(6), rank_columns={}, signal_columns={}, lexical_text="black hoodie")
    uncapped = store.candidates(request, Scope(MODEL, 20))
    best = max(uncapped.signals["lexical"].values())
    monkeypatch.setattr(sql, "KEYWORD_MATCH_CAP", 50)
    capped = store.candidates(request, Scope(MODEL, 20))
    assert len(capped.pool) == 20
    assert all(value == pytest.approx(best) for value in capped.signals["lexical"].values())
    query = store.candidates_query(request, Scope(MODEL, 20))[0]
    assert query is not None
    plan = store.explain(query, analyze=True)
    rows = re.findall(r"->\s+([A-Za-z ]+?)(?: on | using |\s+\().*?actual time=\S+ rows=([\d.]+)", plan)
    assert rows, plan
    for node, count in rows:
        if "Bitmap Index Scan" not in node and "BitmapOr" not in node:
            assert float(count) <= 2 * 50, plan
    words = re.findall(r"Index (?:Only )?Scan using mmsearch_keywordterm_rank .*?rows=([\d.]+) loops=(\d+)", plan)
    assert words == [("50.00", "2")], plan  # each word's best 50, for each of the two words
    matched = [line for line in plan.splitlines() if re.search(r"(Cond|Filter):.*search_vector @@", line)]
    assert matched and all("&" in line and "|" not in line for line in matched), plan  # the AND half only


def test_keyword_branch_takes_the_typed_words_first(store: PgvectorStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The words searched carry an expansion no product has ("sweatshirt"): the capped set still takes
    first the products with every word the shopper typed, so a full page of them ranks on top. Had every
    word searched been required, nothing would match them all and the capped set would be the first
    matches of any word, mostly products with one of the two."""
    monkeypatch.setattr(sql, "KEYWORD_MATCH_CAP", 50)
    words = {"vector": _query(7), "rank_columns": {}, "signal_columns": {}, "lexical_text": "black hoodie sweatshirt"}
    typed = store.candidates(CandidateRequest(**words, all_words="black hoodie"), Scope(MODEL, 20))
    best = max(typed.signals["lexical"].values())
    assert len(typed.pool) == 20 and all(value == pytest.approx(best) for value in typed.signals["lexical"].values())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT search_text FROM {sql.PRODUCT_TABLE} WHERE product_pk = ANY(%s)", [typed.pool])
        assert all({"black", "hoodie"} <= set(text.split()) for (text,) in cursor.fetchall())
    query = store.candidates_query(CandidateRequest(**words, all_words="black hoodie"), Scope(MODEL, 20))[0]
    assert query is not None and f"LIMIT {sql.KEYWORD_ALL_ROWS_FACTOR * 20}) UNION" in query.statement
    every = store.candidates(CandidateRequest(**words), Scope(MODEL, 20))
    assert sum(value == pytest.approx(best) for value in every.signals["lexical"].values()) < 20


def test_indexes_of_an_older_definition_are_replaced(store: PgvectorStore) -> None:
    """A database indexed before this definition gets the new indexes (new names) and loses the old."""
    old = sql.index_name(sql.PRODUCT_TABLE, "text_vector", MODEL, version=1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX {old} ON {sql.PRODUCT_TABLE} USING hnsw ((text_vector::halfvec({DIMS})) "
            f"halfvec_cosine_ops) WHERE model_id = '{MODEL}' AND text_vector IS NOT NULL"
        )
    started = time.perf_counter()
    PgvectorStore().ensure_indexes(MODEL, DIMS, FEATURES)
    assert time.perf_counter() - started < 5  # the current indexes exist already: nothing is rebuilt
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'mmsearch_hnsw_%%'")
        names = {row[0] for row in cursor.fetchall()}
    assert old not in names
    assert _index(sql.PRODUCT_TABLE, "text_vector") in names


def test_a_product_code_is_read_from_its_indexes(store: PgvectorStore) -> None:
    """Words that are a product code ("MH07-Gray", a parent sku "MH07") are looked up on every search of
    one word with a digit, and the start of one on every autocomplete of it ("mh0"): by the identifier's,
    the sku's and the group's indexes, never a scan of the table."""
    for partial, code, found in ((False, "P00012", ["P00012"]), (True, "p0001", [f"P0001{i}" for i in range(10)])):
        statement, params = store.code_query(MODEL, code, partial=partial, limit=10)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute(statement, params)
            assert [pk for (pk,) in cursor.fetchall()] == found
        indexes = ["mmsearch_pe_code_idx", "mmsearch_pe_sku_idx"] + ([] if partial else ["mmsearch_pe_group_idx"])
        for index in indexes:
            assert index in plan, plan
        assert "Seq Scan" not in plan, plan
