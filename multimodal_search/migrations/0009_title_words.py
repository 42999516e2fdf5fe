from django.db import migrations


class Migration(migrations.Migration):
    """The title's words (``fields->>'title'``, no stemming) with a GIN index: autocomplete's prefix matches
    (``'chaz' & 'kang':*``) read the index instead of every title."""

    dependencies = [("multimodal_search", "0008_backbone_vectors")]

    operations = [
        migrations.RunSQL(
            [
                "ALTER TABLE multimodal_search_productembedding ADD COLUMN title_words tsvector "
                "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, coalesce(fields ->> 'title', ''))) STORED",
                "CREATE INDEX mmsearch_pe_title_words_gin ON multimodal_search_productembedding "
                "USING gin (title_words)",
            ],
            [
                "DROP INDEX IF EXISTS mmsearch_pe_title_words_gin",
                "ALTER TABLE multimodal_search_productembedding DROP COLUMN IF EXISTS title_words",
            ],
        )
    ]
