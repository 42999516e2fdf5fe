"""``multimodal_search_keywordterm``: each product row's words, each with its own ``ts_rank``, for a
keyword branch whose cost does not grow with the number of matching products.

The GIN index of ``search_vector`` answers only bitmap scans: a common word's whole posting list is read
into a bitmap before the first row is taken, so "white trousers" built a bitmap of 28,000 products at
100,000 (6.5 ms) and would build ten times that at 1,000,000, although only 500 of them were ranked.
This table holds one row per (product row, lexeme) with the lexeme's ``ts_rank`` in that row, and a
B-tree ordered by it: the keyword branch reads each query word's best ``KEYWORD_MATCH_CAP`` rows and
stops (``store.sql.keyword_branch``). ``ts_rank`` of an OR query (normalisation 0) is the sum of its
words' own ranks divided by their number, so the sum of the stored ranks orders the matches as
``ts_rank`` does.

The table is kept by triggers on ``multimodal_search_productembedding`` (inserts and deletes
statement-level, with transition tables, so a ``COPY`` or a batch writes its words in one statement;
updates per row, only where the text or the keys changed), filled here from the rows
already stored, and emptied with the products by ``TRUNCATE``. ``model_key`` is a stable 64-bit key
of the encoder version (``mmsearch_model_key``: md5-based, unlike ``hashtext``, which may change between
PostgreSQL versions), shorter than ``model_id`` in each of the table's rows (about 58 per product); the
candidate statement scores the product rows of the ``model_id`` it was asked for.
"""

from django.db import migrations

TABLE = "multimodal_search_keywordterm"
PRODUCTS = "multimodal_search_productembedding"
EVENTS = ("insert", "update", "delete", "truncate")


def write_words(row: str, rows: str = "") -> str:
    """``INSERT`` of the words of product row ``row`` (a trigger's ``NEW``, or an alias of ``rows``)."""
    source = f"{rows} {row}, " if rows else ""
    return (
        f"INSERT INTO {TABLE} (model_key, product_pk, lexeme, impact) "
        f"SELECT mmsearch_model_key({row}.model_id), {row}.product_pk, u.lexeme, "
        f"ts_rank({row}.search_vector, mmsearch_lexeme_query(u.lexeme)) FROM {source}unnest({row}.search_vector) AS u"
    )


FUNCTIONS = [
    # a stable key of an encoder version (model_id): the first 64 bits of its md5
    """
CREATE OR REPLACE FUNCTION mmsearch_model_key(model_id text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN ('x' || left(md5(model_id), 16))::bit(64)::bigint
""",
    # one lexeme as a tsquery, quoted as tsquery input wants (quotes and backslashes doubled), not normalised again
    """
CREATE OR REPLACE FUNCTION mmsearch_lexeme_query(lexeme text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN ('''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''')::tsquery
""",
    f"""
CREATE OR REPLACE FUNCTION mmsearch_keyword_terms_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {write_words("n", "new_rows")};
    RETURN NULL;
END
$$
""",
    f"""
CREATE OR REPLACE FUNCTION mmsearch_keyword_terms_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {TABLE} WHERE model_key = mmsearch_model_key(OLD.model_id) AND product_pk = OLD.product_pk;
    {write_words("NEW")};
    RETURN NULL;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION mmsearch_keyword_terms_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM multimodal_search_keywordterm t USING old_rows o
    WHERE t.model_key = mmsearch_model_key(o.model_id) AND t.product_pk = o.product_pk;
    RETURN NULL;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION mmsearch_keyword_terms_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE multimodal_search_keywordterm;
    RETURN NULL;
END
$$
""",
]

CREATE = [
    f"CREATE TABLE {TABLE} (model_key bigint NOT NULL, product_pk varchar(64) NOT NULL, lexeme text NOT NULL, "
    "impact real NOT NULL)",
    *FUNCTIONS,
    write_words("e", PRODUCTS),  # the rows stored before this migration
    f"ALTER TABLE {TABLE} ADD PRIMARY KEY (model_key, product_pk, lexeme)",
    # a word's rows, best first (ties: by product_pk, as the keyword branch orders), per encoder version
    f"CREATE INDEX mmsearch_keywordterm_rank ON {TABLE} (model_key, lexeme, impact DESC, product_pk)",
    f"CREATE TRIGGER mmsearch_keyword_terms_insert AFTER INSERT ON {PRODUCTS} "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mmsearch_keyword_terms_insert()",
    # per row, and only for rows whose words (or keys) changed: an upsert rewrites every field, and an
    # UPDATE of other fields (or of every row's vectors) should not collect its rows for this table
    f"CREATE TRIGGER mmsearch_keyword_terms_update AFTER UPDATE ON {PRODUCTS} FOR EACH ROW "
    "WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text OR OLD.model_id IS DISTINCT FROM NEW.model_id "
    "OR OLD.product_pk IS DISTINCT FROM NEW.product_pk) EXECUTE FUNCTION mmsearch_keyword_terms_update()",
    f"CREATE TRIGGER mmsearch_keyword_terms_delete AFTER DELETE ON {PRODUCTS} "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mmsearch_keyword_terms_delete()",
    f"CREATE TRIGGER mmsearch_keyword_terms_truncate AFTER TRUNCATE ON {PRODUCTS} "
    "FOR EACH STATEMENT EXECUTE FUNCTION mmsearch_keyword_terms_truncate()",
    f"ANALYZE {TABLE}",
]

DROP = [
    *(f"DROP TRIGGER IF EXISTS mmsearch_keyword_terms_{event} ON {PRODUCTS}" for event in EVENTS),
    f"DROP TABLE IF EXISTS {TABLE}",
    *(f"DROP FUNCTION IF EXISTS mmsearch_keyword_terms_{event}()" for event in EVENTS),
    "DROP FUNCTION IF EXISTS mmsearch_lexeme_query(text)",
    "DROP FUNCTION IF EXISTS mmsearch_model_key(text)",
]


class Migration(migrations.Migration):
    dependencies = [("multimodal_search", "0015_nearest_function")]

    operations = [migrations.RunSQL(CREATE, DROP)]
