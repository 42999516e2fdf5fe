from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("multimodal_search", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS mmsearch_pe_fts_gin ON multimodal_search_productembedding "
            "USING gin (to_tsvector('english'::regconfig, search_text))",
            "DROP INDEX IF EXISTS mmsearch_pe_fts_gin",
        )
    ]
