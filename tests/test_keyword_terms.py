"""The keyword branch's word table (migration 0016): kept in step with the product rows by triggers, and
its per-word ranks add up to PostgreSQL's own ``ts_rank`` of an OR query."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction

from multimodal_search.store import sql
from multimodal_search.store.base import ProductVectors
from multimodal_search.store.pgvector import PgvectorStore

pytestmark = pytest.mark.django_db
MODEL = "terms-v1"


def _product(pk: str, text: str) -> ProductVectors:
    vector = np.ones(4, dtype=np.float32) / 2
    return ProductVectors(
        product_pk=pk,
        content_hash=text,
        text_vector=vector,
        title_vector=None,
        image_vector=None,
        fused_vector=vector,
        categories=[],
        fields={},
        search_text=text,
        photos=[],
    )


def _terms(model_id: str = MODEL) -> dict[str, dict[str, float]]:
    """product_pk -> lexeme -> stored rank, for one encoder version."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT product_pk, lexeme, impact FROM {sql.TERM_TABLE} WHERE model_key = mmsearch_model_key(%s)",
            [model_id],
        )
        found: dict[str, dict[str, float]] = {}
        for pk, lexeme, impact in cursor.fetchall():
            found.setdefault(pk, {})[lexeme] = impact
        return found


def _expected(pk: str, model_id: str = MODEL) -> dict[str, float]:
    """Each lexeme of a stored row with ``ts_rank`` of that lexeme alone, computed here from its text."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT u.lexeme, ts_rank(e.search_vector, quote_literal(u.lexeme)::tsquery) "
            f"FROM {sql.PRODUCT_TABLE} e, unnest(e.search_vector) AS u WHERE e.product_pk = %s AND e.model_id = %s",
            [pk, model_id],
        )
        return dict(cursor.fetchall())


def _locations(pk: str) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ctid FROM {sql.TERM_TABLE} WHERE product_pk = %s ORDER BY lexeme", [pk])
        return [row[0] for row in cursor.fetchall()]


def test_the_words_follow_every_write_of_the_product_rows() -> None:
    store = PgvectorStore()
    store.save_products(
        MODEL, [_product("A", "black hoodie, black zip"), _product("B", "red running shorts with pockets")]
    )
    terms = _terms()
    assert set(terms) == {"A", "B"}
    assert set(terms["A"]) == {"black", "hoodi", "zip"} and set(terms["B"]) == {"red", "run", "short", "pocket"}
    for pk in ("A", "B"):
        assert terms[pk] == pytest.approx(_expected(pk))
    assert terms["A"]["black"] > terms["A"]["zip"]  # a word said twice ranks higher

    before = _locations("B")
    store.save_products(MODEL, [_product("A", "blue hoodie"), _product("B", "red running shorts with pockets")])
    terms = _terms()
    assert set(terms["A"]) == {"blue", "hoodi"} and terms["A"] == pytest.approx(_expected("A"))
    assert _locations("B") == before  # an upsert that does not change the words leaves them where they are

    store.save_products("terms-v2", [_product("A", "green tee")])  # another encoder version: its own words
    assert set(_terms("terms-v2")) == {"A"} and set(_terms()["A"]) == {"blue", "hoodi"}
    store.delete_products(["A"])
    assert set(_terms()) == {"B"} and _terms("terms-v2") == {}
    store.drop_model(MODEL)
    assert _terms() == {}


def test_truncating_the_products_empties_the_words() -> None:
    PgvectorStore().save_products(MODEL, [_product("A", "black hoodie")])
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {sql.PRODUCT_TABLE}, {sql.IMAGE_TABLE}")  # as Django's flush does
        cursor.execute(f"SELECT count(*) FROM {sql.TERM_TABLE}")
        assert cursor.fetchone() == (0,)


@pytest.mark.parametrize(
    "words", ["black hoodie", "black black hoodie sweatshirt", "red shorts with pockets", "o'neil t-shirt a\\b"]
)
def test_an_or_querys_rank_is_the_sum_of_its_words_ranks(words: str) -> None:
    """What lets ``store.sql.best_matches`` order the matches by the stored ranks: ``ts_rank`` of an OR
    query over a row is the sum of its words' own ranks there over the number of (distinct) words."""
    texts = [
        "black hoodie black zip hoodie",
        "red running shorts with pockets, red",
        "O'Neil T-shirt in black a\\b",
        "sweatshirt black hoodie",
    ]
    PgvectorStore().save_products(MODEL, [_product(f"P{i}", text) for i, text in enumerate(texts)])
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.product_pk, ts_rank(e.search_vector, {sql.TSQUERY}), "
            f"(SELECT sum(t.impact::float8) FROM {sql.TERM_TABLE} t WHERE t.model_key = mmsearch_model_key(e.model_id) "
            "AND t.product_pk = e.product_pk AND t.lexeme = ANY(tsvector_to_array(to_tsvector('english', %s)))) "
            "/ (SELECT count(*) FROM unnest(tsvector_to_array(to_tsvector('english', %s)))) "
            f"FROM {sql.PRODUCT_TABLE} e WHERE e.model_id = %s AND e.search_vector @@ {sql.TSQUERY}",
            [words, words, words, MODEL, words],
        )
        rows = cursor.fetchall()
    assert rows
    for _pk, rank, total in rows:
        assert total == pytest.approx(rank, rel=1e-6)


def test_when_every_typed_word_is_common_the_all_words_half_reads_the_rarest_ones_best_rows(monkeypatch: Any) -> None:
    """``store.sql.all_words_matches`` with the common words of the column's statistics: it starts from
    the rarest typed word's best rows in the word table (at most ``KEYWORD_MATCH_CAP``), keeps those having
    every typed word, ranked by ``ts_rank``; a typed word that is not common sends it to the GIN index."""
    from multimodal_search.store import pgvector

    texts = [f"black hoodie {'black ' * (i % 3)}cotton" for i in range(12)]  # black 30, hoodie 20
    texts += [f"black hoodie {'hoodie ' * (i % 4)}" for i in range(8)]
    texts += [f"black jeans {i}" for i in range(10)] + ["black zip hoodie", "zip top", "zip bag"]
    PgvectorStore().save_products(MODEL, [_product(f"P{i:02d}", text) for i, text in enumerate(texts)])
    monkeypatch.setattr(sql, "KEYWORD_COMMON_ROWS", 15)
    monkeypatch.setattr(sql, "KEYWORD_MATCH_CAP", 5)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {sql.PRODUCT_TABLE}")  # the statistics the common words are read from
    monkeypatch.setattr(pgvector, "_common_words", {})
    common = pgvector.common_words_in("black hoodie zip")
    assert set(common) == {"black", "hoodi"}  # zip (4 rows) is not common
    assert common["black"] > common["hoodi"] > 15

    def run(words: str, typed: str) -> dict[str, float]:
        statement, params = sql.all_words_matches(MODEL, 10, [], words, typed, common)
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return dict(cursor.fetchall())

    def ts_rank(pks: list[str], words: str, typed: str) -> dict[str, float]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT product_pk, ts_rank(search_vector, {sql.TSQUERY}) FROM {sql.PRODUCT_TABLE} "
                f"WHERE model_id = %s AND search_vector @@ {sql.TSQUERY_ALL} AND product_pk = ANY(%s)",
                [words, MODEL, typed, pks],
            )
            return dict(cursor.fetchall())

    found = run("black hoodie sweatshirt", "black hoodie")
    hoodie_best = sorted(_terms(), key=lambda pk: (-_terms()[pk].get("hoodi", -1.0), pk))[:5]
    assert found and set(found) <= set(hoodie_best)  # the rarer typed word's 5 best rows
    assert found == pytest.approx(ts_rank(list(found), "black hoodie sweatshirt", "black hoodie"), rel=1e-6)
    assert len(found) == len(ts_rank(hoodie_best, "black hoodie sweatshirt", "black hoodie"))

    gin, params = sql.all_words_matches(MODEL, 10, [], "black zip", "black zip")
    with connection.cursor() as cursor:
        cursor.execute(gin, params)
        assert run("black zip", "black zip") == dict(cursor.fetchall()) == ts_rank(["P30"], "black zip", "black zip")


def test_the_rarest_words_rows_are_checked_one_by_one_not_joined_to_every_match_from_the_gin_index(
    monkeypatch: Any,
) -> None:
    """When every typed word is common, the all-words half checks the rarest word's best rows one by one:
    the GIN index is read only by the guarded branch for a rare word, never to fetch every product having
    all the words (what the planner chose at 1,000,000 products when it misjudged their number: 19,431
    rows and 25 ms for one query). Here only bitmap scans and hash joins are left, and the ``model_id``
    B-trees are dropped (all rolled back), so the planner would take the GIN index for that check if it
    could: it did before the check was written ``IS TRUE``."""
    from multimodal_search.store import pgvector

    texts = [f"black hoodie {'black ' * (i % 3)}cotton" for i in range(30)]
    texts += [f"zip bag {i}" for i in range(300)]  # the words' matches are a small part of the table
    PgvectorStore().save_products(MODEL, [_product(f"P{i:02d}", text) for i, text in enumerate(texts)])
    monkeypatch.setattr(sql, "KEYWORD_COMMON_ROWS", 15)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {sql.PRODUCT_TABLE}")
    monkeypatch.setattr(pgvector, "_common_words", {})
    common = pgvector.common_words_in("black hoodie")
    assert set(common) == {"black", "hoodi"}
    statement, params = sql.all_words_matches(MODEL, 10, [], "black hoodie", "black hoodie", common)

    def gin_reads(node: dict[str, Any]) -> int:
        own = int(node.get("Index Name") == "mmsearch_pe_search_vector_gin")
        return own + sum(gin_reads(child) for child in node.get("Plans", []))

    def reads_words(node: dict[str, Any]) -> bool:
        return node.get("Index Name") == "mmsearch_keywordterm_rank" or any(map(reads_words, node.get("Plans", [])))

    with transaction.atomic(), connection.cursor() as cursor:  # a savepoint, rolled back: settings and indexes
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute("DROP INDEX mmsearch_pe_model_idx, mmsearch_pe_admin_order_idx")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        plan = cursor.fetchone()[0]
        cursor.execute(statement, params)
        found = dict(cursor.fetchall())
        transaction.set_rollback(True)
    plan = plan if isinstance(plan, list) else json.loads(plan)
    rarest = [member for member in plan[0]["Plan"]["Plans"] if reads_words(member)]
    assert len(rarest) == 1 and gin_reads(rarest[0]) == 0
    assert len(found) == 10  # and the rows are still found


def test_mmsearch_reindex_leaves_fresh_statistics_so_common_words_are_known_at_once(monkeypatch: Any) -> None:
    """A bulk-loaded catalogue has its common words (and the planner its row counts) as soon as
    ``mmsearch_reindex`` ends, not after autovacuum's next ``ANALYZE``: the command refreshes the
    statistics of the tables it wrote."""
    import io

    from django.core.management import call_command

    from multimodal_search.store import pgvector
    from tests.factories import ProductFactory

    monkeypatch.setattr(sql, "KEYWORD_COMMON_ROWS", 15)
    for i in range(24):
        ProductFactory(sku=f"ZEB-{i}", title=f"zebrine hoodie {i}")
    monkeypatch.setattr(pgvector, "_common_words", {})  # this test's statistics stay in this test
    assert "zebrin" not in pgvector.common_words_in("zebrine hoodie")
    call_command("mmsearch_reindex", "--sync", stdout=io.StringIO(), stderr=io.StringIO())
    assert set(pgvector.common_words_in("zebrine hoodie")) >= {"zebrin", "hoodi"}
