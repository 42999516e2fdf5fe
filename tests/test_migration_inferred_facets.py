"""Migration 0020 moves the facets inferred before it into their own table, without rewriting the rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.db import connection

from multimodal_search.store import sql
from multimodal_search.store.pgvector import PgvectorStore
from tests.test_migration_pool_vector import _migrate

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "migration-v2"


def _insert(cursor, pk: str, fields: dict) -> None:
    vector = sql.to_literal(np.ones(8, np.float32))
    cursor.execute(
        f"INSERT INTO {sql.PRODUCT_TABLE} (product_pk, model_id, content_hash, text_vector, fused_vector, image_count, "
        "categories, fields, search_text, updated_at) VALUES (%s, %s, 'h', %s, %s, 0, '{}', %s, '', now())",
        [pk, MODEL, vector, vector, json.dumps(fields)],
    )


def test_facets_inferred_before_are_read_from_their_table_and_the_rows_stay() -> None:
    enriched = {"title": "Tee", "color": "Red", "gender_inferred": {"men": 0.9}, "category_inferred": {"tees": 0.8}}
    _migrate("0019_drift_walks")
    try:
        with connection.cursor() as cursor:
            _insert(cursor, "A", enriched)
            _insert(cursor, "B", {"title": "Bag"})  # nothing inferred: no facets row
            cursor.execute(f"SELECT product_pk, xmin::text FROM {sql.PRODUCT_TABLE} WHERE model_id = %s", [MODEL])
            versions = dict(cursor.fetchall())
        _migrate("0020_inferred_facets")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT product_pk, inferred FROM {sql.FACETS_TABLE} WHERE model_id = %s", [MODEL])
            moved = {pk: json.loads(value) if isinstance(value, str) else value for pk, value in cursor.fetchall()}
            cursor.execute(f"SELECT product_pk, xmin::text FROM {sql.PRODUCT_TABLE} WHERE model_id = %s", [MODEL])
            assert dict(cursor.fetchall()) == versions  # no row rewritten
        assert moved == {
            "A": {
                "gender_inferred": {"men": 0.9},
                "category_inferred": {"tees": 0.8},
                "colour_inferred": None,
                "material_inferred": None,
            }
        }
        store = PgvectorStore()
        assert store.product_fields(["A", "B"], model_id=MODEL) == {"A": enriched, "B": {"title": "Bag"}}
        # a retrain that no longer infers a facet hides the value the row still holds
        store.update_inferred(MODEL, {"A": {**moved["A"], "gender_inferred": None}})
        assert "gender_inferred" not in store.product_fields(["A"], model_id=MODEL)["A"]
        with connection.cursor() as cursor:  # deleted with their product row (a trigger)
            cursor.execute(f"DELETE FROM {sql.PRODUCT_TABLE} WHERE model_id = %s", [MODEL])
            cursor.execute(f"SELECT count(*) FROM {sql.FACETS_TABLE} WHERE model_id = %s", [MODEL])
            assert cursor.fetchone()[0] == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {sql.PRODUCT_TABLE} WHERE model_id = %s", [MODEL])
        _migrate(None)
