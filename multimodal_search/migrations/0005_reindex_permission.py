from django.db import migrations


class Migration(migrations.Migration):
    """The permission that guards re-indexing, retraining and the index status endpoint."""

    dependencies = [("multimodal_search", "0004_search_vector")]

    operations = [
        migrations.AlterModelOptions(
            name="productembedding",
            options={"permissions": [("reindex_products", "Can reindex and retrain the search index")]},
        )
    ]
