"""Vectors stay in their rows (migration 0014): scoring a search's candidates reads no TOAST table.

Sizes as the packaged encoder writes them: five 384-d halfvecs per product, 2,455-d photo features.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from multimodal_search.store import sql
from multimodal_search.store.base import PRODUCT_COLUMNS, PhotoVectors, ProductVectors
from multimodal_search.store.pgvector import PgvectorStore

pytestmark = pytest.mark.django_db
MODEL = "storage-v1"
DIMS, FEATURES = 384, 2455


def _unit(rng: np.random.RandomState, dims: int) -> np.ndarray:
    vector = rng.standard_normal(dims).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_a_product_and_its_photos_are_stored_in_line() -> None:
    rng = np.random.RandomState(5)
    item = ProductVectors(
        product_pk="P1",
        content_hash="h",
        text_vector=_unit(rng, DIMS),
        title_vector=_unit(rng, DIMS),
        image_vector=_unit(rng, DIMS),
        fused_vector=_unit(rng, DIMS),
        categories=["Tops"],
        fields={"title": "Product 1"},
        search_text="product one",
        photos=[PhotoVectors(f"p{i}.jpg", _unit(rng, FEATURES), _unit(rng, DIMS)) for i in range(2)],
    )
    PgvectorStore().save_products(MODEL, [item])
    with connection.cursor() as cursor:
        for table in (sql.PRODUCT_TABLE, sql.IMAGE_TABLE):
            cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
            assert "toast_tuple_target=8160" in cursor.fetchone()[0]
        # pg_column_toast_chunk_id: NULL unless the value lies in the TOAST table
        chunks = ", ".join(f"pg_column_toast_chunk_id({column})" for column in PRODUCT_COLUMNS)
        cursor.execute(f"SELECT pg_column_size(t.*), {chunks} FROM {sql.PRODUCT_TABLE} t WHERE model_id = %s", [MODEL])
        size, *toasted = cursor.fetchone()
        assert size > 2 * 1024 and toasted == [None] * len(PRODUCT_COLUMNS)  # over the default 2 kB target, yet whole
        cursor.execute(
            f"SELECT pg_column_toast_chunk_id(feature_vector), pg_column_toast_chunk_id(shared_vector) "
            f"FROM {sql.IMAGE_TABLE} WHERE model_id = %s",
            [MODEL],
        )
        assert cursor.fetchall() == [(None, None), (None, None)]
