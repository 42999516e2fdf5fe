"""HNSW indexes the planner uses: replace the first definition (``WHERE model_id = ... AND col IS NOT NULL``,
which PostgreSQL 18 never chose for a NOT NULL column) by ``store.sql``'s current one, for every encoder
version already indexed. On a large table this builds the indexes (minutes per million products)."""

from django.db import migrations


def replace_indexes(apps, schema_editor):
    from multimodal_search.store import sql

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")  # index builds on a large table take minutes
        cursor.execute(
            f"SELECT model_id, vector_dims(text_vector) FROM (SELECT DISTINCT ON (model_id) model_id, text_vector "
            f"FROM {sql.PRODUCT_TABLE} ORDER BY model_id) t"
        )
        versions = cursor.fetchall()
        for model_id, dims in versions:
            try:
                sql.check_model_id(model_id)
            except ValueError:
                continue  # never indexed by the store (it refuses such ids)
            cursor.execute(f"SELECT vector_dims(feature_vector) FROM {sql.IMAGE_TABLE} WHERE model_id = %s LIMIT 1", [model_id])
            row = cursor.fetchone()
            # without photos the photo indexes wait for ensure_indexes (it knows the encoder's dimensions)
            for statement in sql.index_statements(model_id, dims, row[0] if row else 0):
                if row or sql.IMAGE_TABLE not in statement:
                    cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("multimodal_search", "0006_index_state")]

    operations = [migrations.RunPython(replace_indexes, migrations.RunPython.noop)]
