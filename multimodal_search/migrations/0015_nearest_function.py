"""``mmsearch_nearest``: run one candidate branch at its own ``hnsw.ef_search`` inside the candidate statement.

A search's candidates come from one statement (``store.sql``), and one statement has one
``hnsw.ef_search``: the deepest branch's (the pool column's 300 rows, 800 by default). The title's
100 rows searched as deep: at 100,000 products 7.5 ms for that branch, 3.1 ms at 200 (README
"Performance"). The function sets the value for its own run only (its ``SET`` clause restores the
caller's on exit) and executes the branch it is given: ``$1`` is the query vector as text, ``$2``
the categories. It runs with the caller's rights (``SECURITY INVOKER``, the default).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION mmsearch_nearest(statement text, query text, categories varchar[], ef_search integer)
RETURNS SETOF varchar LANGUAGE plpgsql SET hnsw.ef_search = 40 AS $$
BEGIN
    PERFORM set_config('hnsw.ef_search', ef_search::text, true);
    RETURN QUERY EXECUTE statement USING query, categories;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS mmsearch_nearest(text, text, varchar[], integer)"


class Migration(migrations.Migration):
    dependencies = [("multimodal_search", "0014_vectors_in_line")]

    operations = [migrations.RunSQL(CREATE, DROP)]
