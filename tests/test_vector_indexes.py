"""The HNSW indexes' build parameters as settings: indexing keeps what exists, ``mmsearch_indexes --build``
rebuilds concurrently, and the system check refuses what pgvector would.

Builds run on real PostgreSQL with pgvector, committed (``CREATE INDEX CONCURRENTLY`` cannot run in a
test's transaction); each test removes what it made."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from multimodal_search.store import hnsw, sql
from multimodal_search.store.base import BuildProgress, PhotoVectors, ProductVectors, Scope
from multimodal_search.store.pgvector import PgvectorStore

MODEL = "indexes-v1"
DIMS = 16
FEATURES = 12
SHIPPED = {"m": sql.HNSW_M, "ef_construction": sql.HNSW_EF_CONSTRUCTION}


def _products(count: int) -> list[ProductVectors]:
    rng = np.random.RandomState(5)

    def unit(dims: int) -> np.ndarray:
        vector = rng.standard_normal(dims).astype(np.float32)
        return vector / np.linalg.norm(vector)

    return [
        ProductVectors(
            product_pk=f"X{i:05d}",
            content_hash=str(i),
            text_vector=unit(DIMS),
            title_vector=unit(DIMS),
            image_vector=unit(DIMS),
            fused_vector=unit(DIMS),
            categories=["C"],
            fields={},
            search_text=f"product {i}",
            photos=[PhotoVectors(f"{i}.jpg", unit(FEATURES), unit(DIMS))],
        )
        for i in range(count)
    ]


@pytest.fixture
def committed(transactional_db: None) -> Iterator[PgvectorStore]:
    """A store whose writes are committed; every index of the test's encoder versions is removed after."""
    store = PgvectorStore()
    try:
        yield store
    finally:
        store.drop_model(MODEL)
        hnsw.drop("hash-v1")


def _options(model_id: str) -> dict[str, tuple[int | None, int | None, bool]]:
    return {info.name: (info.m, info.ef_construction, info.valid) for info in hnsw.indexes(model_id)}


def test_indexing_keeps_indexes_built_with_other_parameters(committed: PgvectorStore, settings: Any) -> None:
    """A worker's ``ensure_indexes`` never rebuilds an existing index (at 1,000,000 products that outlasts a
    task): with changed settings it keeps the shipped ones, and only a column without an index gets one
    built with the new parameters."""
    committed.ensure_indexes(MODEL, DIMS, FEATURES)
    shipped = _options(MODEL)
    assert set(shipped) == set(sql.index_names(MODEL)) and len(shipped) == 7
    assert set(shipped.values()) == {(sql.HNSW_M, sql.HNSW_EF_CONSTRUCTION, True)}

    pool = sql.index_name(sql.PRODUCT_TABLE, "pool_vector", MODEL)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {pool}")
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "HNSW_M": 8, "HNSW_EF_CONSTRUCTION": 40}
    PgvectorStore().ensure_indexes(MODEL, DIMS, FEATURES)
    now = _options(MODEL)
    new_pool = sql.index_name(sql.PRODUCT_TABLE, "pool_vector", MODEL, m=8, ef_construction=40)
    assert now == {**{name: shipped[name] for name in shipped if name != pool}, new_pool: (8, 40, True)}
    assert [info.current for info in hnsw.indexes(MODEL) if info.name == new_pool] == [True]


def test_mmsearch_indexes_build_rebuilds_concurrently_and_drops_the_old(
    committed: PgvectorStore, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rebuild_indexes`` builds every index the new parameters name (reporting progress), searches read
    them, the old ones are gone; run again it builds nothing. The command lists and rebuilds the current
    encoder version's (the tests' hash encoder, no rows)."""
    committed.ensure_indexes(MODEL, DIMS, FEATURES)
    committed.save_products(MODEL, _products(2000))
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "HNSW_M": 8, "HNSW_EF_CONSTRUCTION": 40}
    monkeypatch.setattr(hnsw, "PROGRESS_SECONDS", 0.002)
    updates: list[BuildProgress] = []
    built, dropped = committed.rebuild_indexes(MODEL, DIMS, FEATURES, updates.append)
    assert sorted(built) == sorted(sql.index_names(MODEL, 8, 40))
    assert sorted(dropped) == sorted(sql.index_names(MODEL))
    assert set(_options(MODEL).values()) == {(8, 40, True)} and len(_options(MODEL)) == 7
    assert updates and {update.name for update in updates} <= set(built)
    assert [update.name for update in updates if update.finished] == built  # each build's last report
    reports = [update for update in updates if not update.finished]
    assert reports and all(update.done <= update.total and update.unit in ("tuples", "blocks") for update in reports)
    plan = committed.explain(committed.nearest_query("pool_vector", np.ones(DIMS, np.float32), Scope(MODEL, 10)))
    assert (
        f"Index Scan using {sql.index_name(sql.PRODUCT_TABLE, 'pool_vector', MODEL, m=8, ef_construction=40)}" in plan
    )
    assert committed.rebuild_indexes(MODEL, DIMS, FEATURES) == ([], [])

    out = io.StringIO()
    call_command("mmsearch_indexes", stdout=out)
    assert "HNSW indexes of hash-v1 (configured: m = 8, ef_construction = 40):\n  none" in out.getvalue()
    out = io.StringIO()
    call_command("mmsearch_indexes", "--build", stdout=out, stderr=io.StringIO())
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Built 7 index(es) of hash-v1: mmsearch_hnsw_") and lines[0].endswith(
        "; dropped 0 of other definitions."
    )
    assert (
        sum("m = 8, ef_construction = 40" in line and line.endswith(")") and "current" in line for line in lines) == 7
    )
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "HNSW_M": 16, "HNSW_EF_CONSTRUCTION": 64}
    out = io.StringIO()
    call_command("mmsearch_indexes", stdout=out)
    assert out.getvalue().count("other parameters") == 7 and "`manage.py mmsearch_indexes --build`" in out.getvalue()
    with pytest.raises(CommandError, match="leave out --model-id"):
        call_command("mmsearch_indexes", "--build", "--model-id", MODEL)


def test_one_rebuild_at_a_time(committed: PgvectorStore) -> None:
    """A second ``mmsearch_indexes --build`` while one runs stops with one line and changes nothing."""
    other = psycopg.connect(**connection.get_connection_params())
    try:
        other.execute("SELECT pg_advisory_lock(hashtext('mmsearch_hnsw_rebuild'))")
        with pytest.raises(CommandError, match=r"^Building the indexes failed: another rebuild .* is running"):
            call_command("mmsearch_indexes", "--build", stdout=io.StringIO())
        assert hnsw.indexes("hash-v1") == []
        # released before the build below: closing alone lets the server end that session a moment later,
        # and on a loaded machine the build then still found the lock held
        other.execute("SELECT pg_advisory_unlock(hashtext('mmsearch_hnsw_rebuild'))")
    finally:
        other.close()
    call_command("mmsearch_indexes", "--build", stdout=io.StringIO(), stderr=io.StringIO())
    assert len(hnsw.indexes("hash-v1")) == 7


def test_an_invalid_leftover_of_a_failed_build_is_replaced(committed: PgvectorStore) -> None:
    """A concurrent build that fails leaves an invalid index under the current name, which the planner
    never uses and ``IF NOT EXISTS`` would keep forever: indexing drops and rebuilds it."""
    committed.ensure_indexes(MODEL, DIMS, FEATURES)
    text = sql.index_name(sql.PRODUCT_TABLE, "text_vector", MODEL)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [text])
    assert _options(MODEL)[text][2] is False
    PgvectorStore().ensure_indexes(MODEL, DIMS, FEATURES)
    assert _options(MODEL)[text] == (sql.HNSW_M, sql.HNSW_EF_CONSTRUCTION, True)


@pytest.mark.parametrize(
    ("m", "ef_construction", "message"),
    [
        (1, 128, "'HNSW_M'] = 1: pgvector accepts a whole number from 2 to 100"),
        (32, "128", "'HNSW_EF_CONSTRUCTION'] = '128': pgvector accepts a whole number from 4 to 1,000"),
        (64, 100, "'HNSW_EF_CONSTRUCTION'] = 100 is below 2 x HNSW_M (128)"),
        (32, 128, "'HNSW_EF_SEARCH'] = 2000: pgvector accepts a whole number from 1 to 1,000"),
    ],
)
def test_system_check_names_hnsw_parameters_pgvector_refuses(
    settings: Any, m: Any, ef_construction: Any, message: str
) -> None:
    from multimodal_search.checks import check_settings

    ef_search = 2000 if "EF_SEARCH" in message else 500
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "HNSW_M": m,
        "HNSW_EF_CONSTRUCTION": ef_construction,
        "HNSW_EF_SEARCH": ef_search,
    }
    found = [error.msg for error in check_settings() if error.id == "multimodal_search.E007"]
    assert len(found) == 1 and found[0].startswith(f"MULTIMODAL_SEARCH[{message}"), found
    settings.MULTIMODAL_SEARCH = {
        **settings.MULTIMODAL_SEARCH,
        "HNSW_M": 16,
        "HNSW_EF_CONSTRUCTION": 64,
        "HNSW_EF_SEARCH": 1,
    }
    assert "multimodal_search.E007" not in [error.id for error in check_settings()]


def test_a_bad_memory_size_stops_the_build_with_one_line(committed: PgvectorStore) -> None:
    with pytest.raises(
        CommandError, match=r'^Building the indexes failed: invalid value for parameter "maintenance_work_mem"'
    ):
        call_command("mmsearch_indexes", "--build", "--memory", "lots", stdout=io.StringIO())
    assert hnsw.indexes("hash-v1") == []
    call_command("mmsearch_indexes", "--build", "--memory", "64MB", stdout=io.StringIO(), stderr=io.StringIO())
    assert len(hnsw.indexes("hash-v1")) == 7


def test_indexing_leaves_a_large_build_to_mmsearch_indexes_build(
    committed: PgvectorStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A new index definition (``INDEX_VERSION``) over a large table is not built inside an indexing task,
    which the build would outlast (at 1,000,000 products about 10 minutes for one column, writes blocked):
    the task logs it, the earlier definition stays in use, the listing says "missing", and
    ``rebuild_indexes`` builds the new ones and drops the earlier. Small tables and the commands that write
    a whole version (``any_size``) still build in place."""
    committed.ensure_indexes(MODEL, DIMS, FEATURES)
    committed.save_products(MODEL, _products(30))
    shipped = set(sql.index_names(MODEL))
    monkeypatch.setattr(sql, "INDEX_VERSION", sql.INDEX_VERSION + 1)
    monkeypatch.setattr(hnsw, "TASK_BUILD_ROWS", 29)  # both tables hold 30 rows of the version
    assert not shipped & set(sql.index_names(MODEL))  # the new definition has new names

    with caplog.at_level("ERROR", logger="multimodal_search.store.hnsw"):
        PgvectorStore().ensure_indexes(MODEL, DIMS, FEATURES)
    assert set(_options(MODEL)) == shipped  # nothing built, the earlier definition kept
    assert [record.getMessage() for record in caplog.records if "mmsearch_indexes --build" in record.getMessage()]
    states = {(info.column, info.state) for info in hnsw.status(MODEL)}
    assert len(states) == 14 and {state for _, state in states} == {"missing", "earlier definition"}
    plan = committed.explain(committed.nearest_query("pool_vector", np.ones(DIMS, np.float32), Scope(MODEL, 10)))
    assert f"Index Scan using {sql.index_name(sql.PRODUCT_TABLE, 'pool_vector', MODEL, 2)}" in plan

    out = io.StringIO()
    call_command("mmsearch_indexes", "--model-id", MODEL, stdout=out)
    assert out.getvalue().count("missing: searches read this column whole") == 7
    assert out.getvalue().count("earlier definition") == 7 and "mmsearch_indexes --build` builds them" in out.getvalue()

    built, dropped = committed.rebuild_indexes(MODEL, DIMS, FEATURES)
    assert set(built) == set(sql.index_names(MODEL)) and set(dropped) == shipped
    assert {info.state for info in hnsw.status(MODEL)} == {"current"} and len(hnsw.status(MODEL)) == 7

    text = sql.index_name(sql.PRODUCT_TABLE, "text_vector", MODEL)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {text}")
    assert hnsw.ensure(MODEL, DIMS, FEATURES) == []  # still over the cap
    assert [info.state for info in hnsw.status(MODEL) if info.column == "text_vector"] == ["missing"]
    assert hnsw.ensure(MODEL, DIMS, FEATURES, any_size=True) == [text]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {text}")
    monkeypatch.setattr(hnsw, "TASK_BUILD_ROWS", 30)
    assert hnsw.ensure(MODEL, DIMS, FEATURES) == [text]
