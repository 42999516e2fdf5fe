from django.db import migrations


class Migration(migrations.Migration):
    """A stored tsvector, so full-text ranking does not re-parse product text per query."""

    dependencies = [("multimodal_search", "0003_title_vector")]

    operations = [
        migrations.RunSQL(
            [
                "DROP INDEX IF EXISTS mmsearch_pe_fts_gin",
                "ALTER TABLE multimodal_search_productembedding ADD COLUMN search_vector tsvector "
                "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, search_text)) STORED",
                "CREATE INDEX mmsearch_pe_search_vector_gin ON multimodal_search_productembedding USING gin (search_vector)",
            ],
            [
                "DROP INDEX IF EXISTS mmsearch_pe_search_vector_gin",
                "ALTER TABLE multimodal_search_productembedding DROP COLUMN IF EXISTS search_vector",
                "CREATE INDEX IF NOT EXISTS mmsearch_pe_fts_gin ON multimodal_search_productembedding "
                "USING gin (to_tsvector('english'::regconfig, search_text))",
            ],
        )
    ]
