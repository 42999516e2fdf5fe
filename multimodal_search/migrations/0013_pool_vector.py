"""``pool_vector``: text + title + photos in text space at unit length, indexed by inner product, so that
one HNSW index finds the candidates of a words search (``store.sql.POOL_ROWS_FACTOR``). Rows already
stored get theirs from their own vectors, and every encoder version already indexed its HNSW index (on a
large table: one pass over the rows, then an index build of minutes per million products)."""

import pgvector.django
from django.db import migrations


def fill_and_index(apps, schema_editor):
    from multimodal_search.store import sql

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
        zero = "array_fill(0, ARRAY[vector_dims(text_vector)])::halfvec"
        cursor.execute(
            f"UPDATE {sql.PRODUCT_TABLE} SET pool_vector = l2_normalize(text_vector) "
            f"+ coalesce(l2_normalize(title_vector), {zero}) + coalesce(l2_normalize(image_vector), {zero})"
        )
        cursor.execute(
            f"SELECT model_id, vector_dims(text_vector) FROM (SELECT DISTINCT ON (model_id) model_id, text_vector "
            f"FROM {sql.PRODUCT_TABLE} ORDER BY model_id) t"
        )
        for model_id, dims in cursor.fetchall():
            try:
                sql.check_model_id(model_id)
            except ValueError:
                continue  # never indexed by the store (it refuses such ids)
            cursor.execute(f"SELECT vector_dims(feature_vector) FROM {sql.IMAGE_TABLE} WHERE model_id = %s LIMIT 1", [model_id])
            row = cursor.fetchone()
            for statement in sql.index_statements(model_id, dims, row[0] if row else 0):
                if sql.PRODUCT_TABLE in statement and "pool_vector" in statement:
                    cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("multimodal_search", "0012_shopper_profiles")]

    operations = [
        migrations.AddField(
            model_name="productembedding",
            name="pool_vector",
            field=pgvector.django.HalfVectorField(blank=True, null=True),
        ),
        migrations.RunPython(fill_and_index, migrations.RunPython.noop),
    ]
