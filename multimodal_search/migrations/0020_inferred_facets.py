"""``multimodal_search_inferredfacets``: the facets the attribute classifiers inferred, one narrow row per
product row, instead of keys of the product row's ``fields``.

A retrain (``mmsearch_train``) writes every product's inferred facets. Written into the product row, each
write rewrote the row whole (its vectors are stored in line, migration 0014) and added an entry for it to
each of the row's HNSW indexes: about 100 rows a second at 100,000 products, hours at 1,000,000, and
every HNSW index of the searched version twice its size until vacuumed.

The facets of the rows already stored are copied here. They are left in the rows' ``fields`` too (taking
them out would rewrite every row, the cost this avoids): reads take this table's keys first, and its rows
carry every inferred key, null where nothing is inferred, so a value left in ``fields`` is never read.
A product row's facets are deleted with it, and all of them when the products are emptied by ``TRUNCATE``,
by triggers.
Reversed, the table goes: rows written since keep no inferred facets until the next retrain.
"""

from django.db import migrations, models

TABLE = "multimodal_search_inferredfacets"
PRODUCTS = "multimodal_search_productembedding"
#: the keys ``ranking.vocabulary.INFERRED_FIELDS`` names (as of this migration)
KEYS = ("gender_inferred", "colour_inferred", "category_inferred", "material_inferred")
EVENTS = ("delete", "truncate")

_pairs = ", ".join(f"'{key}', fields -> '{key}'" for key in KEYS)
_any_key = ", ".join(f"'{key}'" for key in KEYS)

CREATE = [
    f"""
CREATE OR REPLACE FUNCTION mmsearch_inferred_facets_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {TABLE} f USING old_rows o WHERE f.product_pk = o.product_pk AND f.model_id = o.model_id;
    RETURN NULL;
END
$$
""",
    f"""
CREATE OR REPLACE FUNCTION mmsearch_inferred_facets_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- not TRUNCATE: Django's flush truncates this table in the same statement as the products
    DELETE FROM {TABLE};
    RETURN NULL;
END
$$
""",
    f"CREATE TRIGGER mmsearch_inferred_facets_delete AFTER DELETE ON {PRODUCTS} "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mmsearch_inferred_facets_delete()",
    f"CREATE TRIGGER mmsearch_inferred_facets_truncate AFTER TRUNCATE ON {PRODUCTS} "
    "FOR EACH STATEMENT EXECUTE FUNCTION mmsearch_inferred_facets_truncate()",
    # the facets of the rows stored before this migration (a key they lack becomes a JSON null, as written now)
    f"INSERT INTO {TABLE} (product_pk, model_id, inferred) "
    f"SELECT product_pk, model_id, jsonb_build_object({_pairs}) FROM {PRODUCTS} WHERE fields ?| ARRAY[{_any_key}]",
    f"ANALYZE {TABLE}",
]

DROP = [
    *(f"DROP TRIGGER IF EXISTS mmsearch_inferred_facets_{event} ON {PRODUCTS}" for event in EVENTS),
    *(f"DROP FUNCTION IF EXISTS mmsearch_inferred_facets_{event}()" for event in EVENTS),
]


class Migration(migrations.Migration):
    dependencies = [("multimodal_search", "0019_drift_walks")]

    operations = [
        migrations.CreateModel(
            name="InferredFacets",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("product_pk", models.CharField(max_length=64)),
                ("model_id", models.CharField(max_length=200)),
                ("inferred", models.JSONField(default=dict)),
            ],
            options={
                "verbose_name_plural": "inferred facets",
                "constraints": [
                    models.UniqueConstraint(fields=("product_pk", "model_id"), name="mmsearch_facets_uniq")
                ],
            },
        ),
        migrations.RunSQL(CREATE, DROP),
    ]
