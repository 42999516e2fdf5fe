"""Migration 0013 gives the rows already stored their ``pool_vector`` and its HNSW index."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from multimodal_search.store import hnsw, sql
from multimodal_search.store.base import pool_vector

pytestmark = pytest.mark.django_db(transaction=True)
APP = "multimodal_search"
MODEL = "migration-v1"


def _migrate(target: str | None) -> None:
    """Migrate the app to ``target`` (None: its latest migration, as every other test expects)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    if target is None:
        (node,) = executor.loader.graph.leaf_nodes(APP)
        target = node[1]
    executor.migrate([(APP, target)])


def _literal(vector: np.ndarray) -> str:
    return sql.to_literal(vector)


def test_rows_stored_before_get_their_pool_vector_and_index() -> None:
    rng = np.random.RandomState(3)
    text, title, image = (rng.standard_normal(8).astype(np.float32) * 2 for _ in range(3))
    _migrate("0012_shopper_profiles")
    try:
        with connection.cursor() as cursor:
            for pk, photo in (("A", image), ("B", None)):
                cursor.execute(
                    f"INSERT INTO {sql.PRODUCT_TABLE} (product_pk, model_id, content_hash, text_vector, title_vector, "
                    "image_vector, fused_vector, image_count, categories, fields, search_text, updated_at) "
                    "VALUES (%s, %s, 'h', %s, %s, %s, %s, 0, '{}', '{}', '', now())",
                    [
                        pk,
                        MODEL,
                        _literal(text),
                        _literal(title),
                        None if photo is None else _literal(photo),
                        _literal(text),
                    ],
                )
        _migrate("0013_pool_vector")
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT product_pk, pool_vector::text FROM {sql.PRODUCT_TABLE} WHERE model_id = %s ORDER BY 1", [MODEL]
            )
            stored = {pk: np.array(value.strip("[]").split(","), dtype=np.float32) for pk, value in cursor.fetchall()}
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE indexname = %s",
                [sql.index_name(sql.PRODUCT_TABLE, "pool_vector", MODEL)],
            )
            assert cursor.fetchone() is not None
        assert stored["A"] == pytest.approx(pool_vector(text, title, image), abs=2e-3)
        assert stored["B"] == pytest.approx(pool_vector(text, title, None), abs=2e-3)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {sql.PRODUCT_TABLE} WHERE model_id = %s", [MODEL])
        hnsw.drop(MODEL)
        _migrate(None)
