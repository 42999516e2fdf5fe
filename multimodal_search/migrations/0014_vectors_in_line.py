"""Keep each row's vectors in the row: ``toast_tuple_target`` at its maximum on both vector tables.

A product row holds five 384-d halfvecs (772 bytes each) and a photo row 2,455-d features (4.9 kB).
With PostgreSQL's default target (2 kB) most of them went to the TOAST table, so scoring a search's
few hundred candidates read each vector through the TOAST index: at 100,000 products, 463 candidates'
three exact similarities took 7.3 ms against 4.3 ms in line, and their photos' neighbour similarity 7.6
against 5.1 ms (README "Performance"). Rows up to 8,160 bytes now stay whole (larger ones are still
TOASTed). Only the setting changes here: rows already stored move in line when they are rewritten (a
reindex, or ``VACUUM FULL`` of both tables at a quiet time, which also rebuilds their HNSW indexes).
"""

from django.db import migrations

TABLES = ("multimodal_search_productembedding", "multimodal_search_imageembedding")


class Migration(migrations.Migration):
    dependencies = [("multimodal_search", "0013_pool_vector")]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {table} SET (toast_tuple_target = 8160)" for table in TABLES],
            [f"ALTER TABLE {table} RESET (toast_tuple_target)" for table in TABLES],
        )
    ]
