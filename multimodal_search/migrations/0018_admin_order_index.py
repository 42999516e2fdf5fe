"""The admin's vector rows in product order read from an index (``admin.ProductEmbeddingAdmin``), built
concurrently: searches and indexing go on while a large table's index is built."""

import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("multimodal_search", "0017_drift_checks"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="productembedding",
            index=models.Index(
                django.db.models.functions.text.Length("product_pk"),
                models.F("product_pk"),
                models.F("model_id"),
                name="mmsearch_pe_admin_order_idx",
            ),
        ),
    ]
