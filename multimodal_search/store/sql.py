"""SQL text for the pgvector store: every vector expression is built here, once.

Vector columns have no fixed dimension; each encoder gets partial HNSW (cosine) expression indexes
``((col::halfvec(D)) halfvec_cosine_ops) WHERE model_id = '<id>'``. Queries must repeat that exact
expression (:func:`cast`) and predicate, with the model id as a literal, for the planner to match the
partial index; :func:`check_model_id` makes the literal safe.

The predicate is ``model_id`` alone, never ``AND col IS NOT NULL``: PostgreSQL 18 drops a query's
``IS NOT NULL`` on a NOT NULL column before it matches partial indexes, so an index that requires it is
never chosen (every search was a sequential scan). HNSW does not index NULLs anyway, and a query's
extra ``col IS NOT NULL`` (kept for the nullable columns) still implies the bare predicate.
``tests/test_explain.py`` checks with ``EXPLAIN`` that every branch uses its index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np

from multimodal_search.conf import DEFAULTS
from multimodal_search.store.base import IMAGE_COLUMNS, POOL_COLUMN, PRODUCT_COLUMNS

PRODUCT_TABLE = "multimodal_search_productembedding"
IMAGE_TABLE = "multimodal_search_imageembedding"
_SAFE_MODEL_ID = re.compile(r"^[A-Za-z0-9:._/+@=-]{1,200}$")
#: the query words as an OR of their lexemes ("black holdall" matches either word)
TSQUERY = "replace(plainto_tsquery('english'::regconfig, %s)::text, '&', '|')::tsquery"
#: the query words as an AND of their lexemes (products that have every word)
TSQUERY_ALL = "plainto_tsquery('english'::regconfig, %s)"
#: keyword matches read per query word (its best by its own ``ts_rank``, from ``TERM_TABLE``), and per
#: filtered query (any word, in storage order, from the GIN indexes): a common word ("black") matches
#: half the catalogue. A word with fewer matches than this (the Luma catalogue has 463 products) is read
#: whole, so the result is that of ranking every match. At 100,000 products the GIN version of the OR
#: half at 500 took the candidate statement from 73 to 60 ms p50 (1,000 before), and the default
#: search's top 10 agreed with its exact self as often (0.965 and 0.975 at ef_search 400).
KEYWORD_MATCH_CAP = 500
#: of the matches that have every typed word, the keyword branch ranks this many times the rows it returns
#: (at most ``KEYWORD_MATCH_CAP``). At 100,000 products (400 judged queries, ``bench/search.py``'s
#: database and re-ranker) judged nDCG@10 was 0.8109 at 2 (200 rows), 0.8105 at 1 and 0.8076 at 500
#: rows, 0.8014 when the AND set needed the expansion words too; latency moved within the noise. The OR
#: half (``best_matches``) keeps as many of its best.
KEYWORD_ALL_ROWS_FACTOR = 2
#: a typed word estimated to be in more product rows than this is "common" (:func:`common_lexemes`): when
#: every typed word is, the AND half starts from the rarest one's best rows in ``TERM_TABLE`` instead of
#: the GIN index (:func:`all_words_matches`). ``bench/keywords.py`` at 1,000,000 products: the GIN
#: intersection took about 3 ms when the rarest typed word was in 6,500 rows, 4-8 ms at 11,000 to
#: 39,000 and 14-29 ms at 100,000 and more; the bounded read 5-10 ms however common the words.
KEYWORD_COMMON_ROWS = 20_000
#: HNSW build parameters (pgvector's defaults are m = 16, ef_construction = 64), chosen with
#: ``bench/search.py`` at 100,000 products (README "Performance"): text recall@10 0.96 at ef_search 400
#: against 0.85 with the defaults, for about twice the build time. ``bench/hnsw_build.py`` (the pool
#: column's index, 100,000 products): at the pool's ef_search 800 the default search agreed with its
#: exact self in 0.973 of places, 0.975 with ef_construction 256 or m = 48 (builds 25% and 2x longer).
#: They are the defaults of the ``HNSW_M`` and ``HNSW_EF_CONSTRUCTION`` settings, with which a shop builds
#: its own (``store.hnsw``); indexes built with these keep the names they had before those settings.
HNSW_M: int = DEFAULTS["HNSW_M"]
HNSW_EF_CONSTRUCTION: int = DEFAULTS["HNSW_EF_CONSTRUCTION"]
#: part of every index name: a new definition gets new names, and ``ensure_indexes`` replaces the old
INDEX_VERSION = 2
#: the candidate statement's branches search this many times deeper than ``HNSW_EF_SEARCH`` (at most
#: 1,000). They return 100 rows each, the pool column's 300 (``POOL_ROWS_FACTOR``), not 10. At 100,000
#: products (m = 32, 20 text queries of ``bench/search.py``) the default search's top 10 agreed with its
#: exact self (every branch an exact scan) in 0.92 of places at factor 1 (ef_search 400, as deep as
#: the 300 rows need and no deeper), 0.97 at 1.5 and 0.98 at 2, and the p50 of 200 queries did not
#: move with it (50 ms at each, interleaved); judged nDCG@10 0.7991 at 1 and 0.8009 at 2. With three
#: 100-row branches factor 1 had given 0.965. The pool is re-scored exactly, so deeper branches only
#: add candidates; on the 463-product Luma catalogue every depth is exact.
POOL_EF_FACTOR = 2
#: the branch over ``POOL_COLUMN`` (text + title + photos in text space) returns this many times the
#: candidates of one branch: it stands in for the text and photo-in-text-space branches (the title keeps
#: its own). At 100,000 products (``bench/search.py``'s judged relevance, 400 Luma queries, the two
#: interleaved in one process) the default search's nDCG@10 was 0.8175 with it against 0.8132 with the
#: three branches, p50 79 against 90 ms; a prototype without the title's own branch lost 0.017. On
#: Luma's 463 products (held-out queries, same database) ``rerank`` nDCG@10 moved by 0.0004.
POOL_ROWS_FACTOR = 3
#: column -> (HNSW operator class, the distance operator it orders by): cosine unless listed here
_INNER_PRODUCT = {POOL_COLUMN: ("halfvec_ip_ops", "<#>")}
_COSINE = ("halfvec_cosine_ops", "<=>")
#: index tuples a filtered (iterative) HNSW scan may visit before it gives up (pgvector's default: 20,000)
HNSW_MAX_SCAN_TUPLES = 100_000
TSVECTOR = "search_vector"  # stored, generated from search_text (migration 0004)
#: a query parameter: a text (vector literal, words, key, model id), a list of texts (categories, pks) or numbers
Param: TypeAlias = str | list[str] | list[float]


def check_model_id(model_id: str) -> str:
    """``model_id`` if it is safe to write as an SQL literal; else ValueError."""
    if not _SAFE_MODEL_ID.match(model_id):
        raise ValueError(f"encoder model_id {model_id!r} has characters outside [A-Za-z0-9:._/+@=-]")
    return model_id


def check_column(column: str, columns: Sequence[str]) -> str:
    """``column`` if it is one of ``columns``; else ValueError."""
    if column not in columns:
        raise ValueError(f"unknown vector column {column!r}; expected one of {', '.join(columns)}")
    return column


def to_literal(vector: np.ndarray) -> str:
    """A vector as pgvector's text form ("[0.1,0.2,...]")."""
    return "[" + ",".join(f"{x:.6g}" for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"


def cast(column: str, dims: int, alias: str = "") -> str:
    """The indexed expression of a column: ``(alias.column::halfvec(dims))``."""
    return f"({alias}{column}::halfvec({int(dims)}))"


def distance(column: str, dims: int, alias: str = "", param: str = "%s") -> str:
    """The distance of a column to the query parameter (``param``) that its HNSW index orders by: cosine,
    or the negative inner product for ``POOL_COLUMN`` (a sum of unit vectors)."""
    operator = _INNER_PRODUCT.get(column, _COSINE)[1]
    return f"{cast(column, dims, alias)} {operator} {param}::halfvec({int(dims)})"


def branch_rows(column: str, limit: int) -> int:
    """Rows a candidate branch over ``column`` returns: ``limit``, ``POOL_ROWS_FACTOR`` times it for ``POOL_COLUMN``."""
    return int(limit) * (POOL_ROWS_FACTOR if column == POOL_COLUMN else 1)


def similarity(column: str, dims: int, alias: str = "") -> str:
    """Cosine similarity of a column to the query parameter (``%s``) (not of ``POOL_COLUMN``)."""
    return f"1 - ({distance(column, dims, alias)})"


def build_parameters(m: int | None = None, ef_construction: int | None = None) -> tuple[int, int]:
    """``(m, ef_construction)`` of an HNSW build: the shipped ``HNSW_M`` and ``HNSW_EF_CONSTRUCTION`` where not given."""
    return (HNSW_M if m is None else int(m)), (
        HNSW_EF_CONSTRUCTION if ef_construction is None else int(ef_construction)
    )


def index_name(
    table: str,
    column: str,
    model_id: str,
    version: int | None = None,
    m: int | None = None,
    ef_construction: int | None = None,
) -> str:
    """The name of one HNSW index (``version`` None: ``INDEX_VERSION``; 1: the first definition, which had
    ``AND col IS NOT NULL``). Build parameters other than the shipped ones are part of the name, so
    ``mmsearch_indexes --build`` builds the indexes of changed settings beside the old ones, which
    searches read meanwhile."""
    version = INDEX_VERSION if version is None else version
    key = f"{table}:{column}:{model_id}" + (f":v{version}" if version > 1 else "")
    built = build_parameters(m, ef_construction)
    if built != (HNSW_M, HNSW_EF_CONSTRUCTION):
        key += f":m{built[0]}:efc{built[1]}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return f"mmsearch_hnsw_{column[:10]}_{digest}"


def vector_columns() -> list[tuple[str, str]]:
    """``(table, column)`` of every vector column that has HNSW indexes."""
    return [
        (table, column)
        for table, columns in ((PRODUCT_TABLE, PRODUCT_COLUMNS), (IMAGE_TABLE, IMAGE_COLUMNS))
        for column in columns
    ]


def index_statements(
    model_id: str,
    dimensions: int,
    feature_dimensions: int,
    m: int | None = None,
    ef_construction: int | None = None,
) -> list[str]:
    """``CREATE INDEX`` of every vector column of one encoder version (partial, cosine HNSW), then
    ``DROP INDEX`` of the same indexes' older definitions (build parameters: :func:`build_parameters`;
    indexes built with other ones are found by :func:`model_indexes`)."""
    statements = [
        index_statement(
            table,
            column,
            model_id,
            feature_dimensions if column == "feature_vector" else dimensions,
            m,
            ef_construction,
        )
        for table, column in vector_columns()
    ]
    return statements + old_index_drops(model_id)


def index_names(model_id: str, m: int | None = None, ef_construction: int | None = None) -> list[str]:
    """The names of the indexes :func:`index_statements` creates."""
    return [
        index_name(table, column, model_id, m=m, ef_construction=ef_construction) for table, column in vector_columns()
    ]


def model_indexes(model_id: str) -> tuple[str, list[Param]]:
    """``indexname, tablename, reloptions, indisvalid, bytes`` of every HNSW index of one encoder version
    in the database, whatever its definition (its predicate names the version), and the parameters."""
    literal = f"'{check_model_id(model_id)}'::text"
    return (
        "SELECT i.indexname, i.tablename, c.reloptions, x.indisvalid, pg_relation_size(c.oid) FROM pg_indexes i "
        "JOIN pg_class c ON c.relname = i.indexname AND c.relnamespace = to_regnamespace(i.schemaname) "
        "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s) "
        "AND i.indexname LIKE 'mmsearch\\_hnsw\\_%%' AND position(%s in i.indexdef) > 0",
        [[PRODUCT_TABLE, IMAGE_TABLE], literal],
    )


def column_of_index(table: str, name: str) -> str:
    """The vector column an index of :func:`index_name` is on ("" if the name is none of theirs)."""
    for owner, column in vector_columns():
        if owner == table and name.startswith(f"mmsearch_hnsw_{column[:10]}_"):
            return column
    return ""


#: how many index builds run now on the tables of the vectors
BUILDS_RUNNING = (
    "SELECT count(*) FROM pg_stat_progress_create_index "
    f"WHERE relid IN ('{PRODUCT_TABLE}'::regclass, '{IMAGE_TABLE}'::regclass)"
)
#: the advisory lock one rebuild of the indexes holds (``pg_try_advisory_lock``)
REBUILD_LOCK = "SELECT pg_try_advisory_lock(hashtext('mmsearch_hnsw_rebuild'))"
REBUILD_UNLOCK = "SELECT pg_advisory_unlock(hashtext('mmsearch_hnsw_rebuild'))"
#: ``phase, done, total, unit`` of the index build of one backend (its pid the parameter): tuples where
#: the phase counts them, else blocks (pgvector's HNSW build reports the blocks it has read)
BUILD_PROGRESS = (
    "SELECT phase, CASE WHEN tuples_total > 0 THEN tuples_done ELSE blocks_done END, "
    "CASE WHEN tuples_total > 0 THEN tuples_total ELSE blocks_total END, "
    "CASE WHEN tuples_total > 0 THEN 'tuples' ELSE 'blocks' END "
    "FROM pg_stat_progress_create_index WHERE pid = %s"
)


def index_statement(
    table: str,
    column: str,
    model_id: str,
    dims: int,
    m: int | None = None,
    ef_construction: int | None = None,
    *,
    concurrently: bool = False,
) -> str:
    """``CREATE INDEX`` of one vector column of one encoder version (build parameters: :func:`build_parameters`;
    ``concurrently``: without blocking writes, outside a transaction)."""
    check_model_id(model_id)
    ops = _INNER_PRODUCT.get(column, _COSINE)[0]
    m, ef_construction = build_parameters(m, ef_construction)
    name = index_name(table, column, model_id, m=m, ef_construction=ef_construction)
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {name} ON {table} USING hnsw "
        f"({cast(column, dims)} {ops}) WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
        f"WHERE model_id = '{model_id}'"
    )


def old_index_names(model_id: str) -> list[str]:
    """The names of every earlier definition (``INDEX_VERSION``) of one encoder version's indexes."""
    return [
        index_name(table, column, model_id, version)
        for version in range(1, INDEX_VERSION)
        for table, column in vector_columns()
    ]


def version_rows(table: str, cap: int) -> str:
    """How many rows of one encoder version (the parameter) ``table`` holds, counted up to ``cap + 1``
    (an index-only read of the version's B-tree: a few milliseconds however large the table)."""
    if table not in (PRODUCT_TABLE, IMAGE_TABLE):
        raise ValueError(f"not a vector table: {table!r}")
    return f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE model_id = %s LIMIT {int(cap) + 1}) r"


def old_index_drops(model_id: str) -> list[str]:
    """``DROP INDEX`` of every earlier definition of one encoder version's indexes."""
    return [f"DROP INDEX IF EXISTS {name}" for name in old_index_names(model_id)]


def session_settings(ef_search: int, filtered: bool) -> list[str]:
    """``SET LOCAL`` statements for one vector read (inside a transaction; the store sends them in one
    round trip). Every setting is written each time, so a read never inherits another's from earlier
    in the same transaction (a filtered read's iterative scan, an unfiltered read's sequential scans off).

    ``hnsw.ef_search`` is how many candidates the graph search keeps (recall against latency).

    Unfiltered reads always take the HNSW index: sequential scans and sorts are off, so no other path
    is left. The planner's HNSW cost grows with ``ef_search`` while it does not see what a full scan
    really costs (vectors are TOASTed: 2,455-d photo features are 4.9 kB), and it picked a parallel
    sequential scan 40x slower than the index (875 ms against 23 ms at 100,000 photos, ef_search 400);
    at small sizes it read the whole table through the ``model_id`` B-tree and sorted it.

    Filtered reads keep the planner's choice (a small category is best read whole through its GIN
    index and sorted). An HNSW scan without iterative scans returns at most ``ef_search`` rows *before*
    the filter, so a 1% category came back short; ``relaxed_order`` keeps scanning until ``LIMIT`` rows
    pass (callers re-sort: the order is then only nearly exact), up to ``HNSW_MAX_SCAN_TUPLES`` tuples.
    """
    settings = {
        "hnsw.ef_search": str(int(ef_search)),
        "hnsw.iterative_scan": "relaxed_order" if filtered else "off",
        "hnsw.max_scan_tuples": str(int(HNSW_MAX_SCAN_TUPLES)),
        "enable_seqscan": "on" if filtered else "off",
        "enable_sort": "on" if filtered else "off",
    }
    return [f"SET LOCAL {name} = {value}" for name, value in settings.items()]


def branch_ef_search(rows: int, deepest: int, ef_search: int) -> int:
    """``hnsw.ef_search`` of a candidate branch returning ``rows`` when the deepest returns ``deepest``:
    ``POOL_EF_FACTOR`` x ``ef_search`` for the deepest; the others as deep per row returned, but never
    shallower than ``ef_search`` itself (always at least their rows, at most pgvector's 1,000).

    At 100,000 products (``bench/search.py``'s 20 text queries) the title's 100 rows at 267 (as deep
    per row as the pool's 300 at 800) let the default search agree with its exact self in 0.945 of
    places, at 400 in 0.970, at 800 in 0.975; judged nDCG@10 0.8120 at 267 and 0.8105 at 800."""
    wanted = round(POOL_EF_FACTOR * int(ef_search) * int(rows) / max(1, int(deepest)))
    return max(1, min(1000, max(wanted, int(ef_search), int(rows))))


def candidate_branches(
    columns: Mapping[str, str],
    dims: int,
    literal: str,
    *,
    model_id: str,
    limit: int,
    categories: Sequence[str],
    lexical_text: str | None,
    all_words: str | None = None,
    ef_search: Mapping[str, int] | None = None,
    common: Mapping[str, float] | None = None,
) -> tuple[list[str], list[Param]]:
    """``SELECT product_pk ... ORDER BY ... LIMIT`` per index, and their parameters in order
    (``limit`` rows each, ``POOL_ROWS_FACTOR`` times as many from ``POOL_COLUMN``; the keyword branch
    takes first the matches having every one of ``all_words``, default ``lexical_text``'s).

    ``ef_search``: column -> the ``hnsw.ef_search`` its branch runs at, where it is less than the
    statement's (one statement has one setting): that branch runs through ``NEAREST_FUNCTION``.
    ``common``: :func:`all_words_matches`."""
    check_model_id(model_id)
    branches: list[str] = []
    params: list[Param] = []
    scope: list[Param] = [list(categories)] if categories else []
    for column in columns.values():
        rows, own = branch_rows(column, limit), (ef_search or {}).get(column)
        if own is None:
            branches.append(nearest_branch(column, dims, model_id, rows, bool(categories)))
            params += [*scope, literal]
            continue
        inner = nearest_branch(column, dims, model_id, rows, bool(categories), ("$1", "$2"))
        branches.append(
            f"SELECT product_pk FROM {NEAREST_FUNCTION}(%s, %s, %s::varchar[], {int(own)}) AS n(product_pk)"
        )
        params += [inner, literal, list(categories)]
    if lexical_text:
        statement, keyword_params = keyword_branch(
            model_id, limit, categories, lexical_text, all_words or lexical_text, common
        )
        branches.append(statement)
        params += keyword_params
    return branches, params


#: the plpgsql function (migration 0015) that runs one candidate branch at its own ``hnsw.ef_search``:
#: ``(statement, query vector as text, categories, ef_search)``, the statement reading ``$1`` and ``$2``.
#: At 100,000 products the title's 100 rows took 7.5 ms at the pool's ef_search 800, 3.1 at 200.
NEAREST_FUNCTION = "mmsearch_nearest"


def nearest_branch(
    column: str, dims: int, model_id: str, rows: int, filtered: bool, placeholders: tuple[str, str] = ("%s", "%s")
) -> str:
    """One candidate branch: the ``rows`` products nearest to the query by ``column``. Parameters: the
    categories when ``filtered``, then the vector (``placeholders``: the vector's and the categories')."""
    check_model_id(model_id)
    check_column(column, PRODUCT_COLUMNS)
    vector, categories = placeholders
    category_sql = f" AND categories @> {categories}::varchar[]" if filtered else ""
    return (
        f"SELECT product_pk FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' "
        f"AND {column} IS NOT NULL{category_sql} ORDER BY {distance(column, dims, param=vector)} LIMIT {int(rows)}"
    )


def keyword_branch(
    model_id: str,
    limit: int,
    categories: Sequence[str],
    words: str,
    typed: str,
    common: Mapping[str, float] | None = None,
) -> tuple[str, list[Param]]:
    """The top ``limit`` keyword matches by ``ts_rank`` of the OR query of ``words``, ranking a bounded
    set, and the statement's parameters.

    Ranked are ``KEYWORD_ALL_ROWS_FACTOR`` x ``limit`` products that have every word the shopper typed
    (``typed``, AND, from the GIN index) and as many of the best matches of the OR query (typed words,
    synonyms and expansions, :func:`best_matches`), whose cost does not grow with the number of products
    having a word. When no word has more matches than ``KEYWORD_MATCH_CAP``, the OR half holds the
    products that ranking every match would (the Luma catalogue has 463 products). Filtered by
    ``categories``, the OR half takes ``KEYWORD_MATCH_CAP`` matches in the categories from the GIN
    indexes instead, in storage order. ``common``: :func:`all_words_matches`.
    """
    cap = int(KEYWORD_MATCH_CAP)
    all_cap = min(cap, int(KEYWORD_ALL_ROWS_FACTOR) * int(limit))
    every, params = all_words_matches(model_id, all_cap, categories, words, typed, common)
    if categories:
        best = _ranked_matches(model_id, TSQUERY, cap, categories)
        params += [words, words, list(categories)]
    else:
        best = best_matches(model_id, all_cap)
        params.append(words)
    # a product in both halves has its rank from each (ts_rank, and the sum of the stored ranks): its best
    statement = (
        f"SELECT product_pk FROM (({every}) UNION ALL ({best})) m "
        f"GROUP BY product_pk ORDER BY max(rank) DESC, product_pk LIMIT {int(limit)}"
    )
    return statement, params


def all_words_matches(
    model_id: str,
    rows: int,
    categories: Sequence[str],
    words: str,
    typed: str,
    common: Mapping[str, float] | None = None,
) -> tuple[str, list[Param]]:
    """``product_pk, rank``: up to ``rows`` products having every word of ``typed``, with their ``ts_rank``
    for the OR query of ``words``; and the parameters.

    They are read from the GIN index (in storage order), whose bitmap of every product having the words
    grows with the catalogue: ``bench/keywords.py`` measured 1.8 / 3.9 ms p50 / p95 at 100,000
    products and 8.4 / 30 at 1,000,000. ``common`` (:func:`common_lexemes`: lexeme -> estimated rows, those
    over ``KEYWORD_COMMON_ROWS``) bounds it: when every typed word is common, the rarest one's
    ``KEYWORD_MATCH_CAP`` best rows by its own rank are read from ``TERM_TABLE`` and each product row is
    checked for the other words, whatever the number of products having them. When one typed word is
    not common (always on a catalogue of fewer than ``KEYWORD_COMMON_ROWS`` products, such as Luma's),
    the GIN intersection costs about as much as its posting list and is read as before. Filtered by
    ``categories``: the GIN indexes.

    The rarest word's rows are checked one by one (``IS TRUE`` keeps the check off the GIN index): the
    planner, misjudging how many rows have every word, had read all of them through the GIN index and
    joined them to the 500 (19,431 rows and 25 ms at 1,000,000 products for "men's v neck tee", whose
    rarest word "v" is in 78,000, against 1-2 ms for the 500 lookups).
    """
    scope: list[Param] = [list(categories)] if categories else []
    gin, params = _ranked_matches(model_id, TSQUERY_ALL, rows, categories), [words, typed, *scope]
    if categories or not common:
        return gin, params
    cap = int(KEYWORD_MATCH_CAP)
    typed_words = (
        "typed AS MATERIALIZED (SELECT q.lexeme, c.n FROM unnest(tsvector_to_array(to_tsvector('english'::regconfig, "
        "%s))) AS q(lexeme) LEFT JOIN unnest(%s::text[], %s::float8[]) AS c(lexeme, n) ON c.lexeme = q.lexeme), "
        "rarest AS MATERIALIZED (SELECT lexeme, n FROM typed ORDER BY n NULLS FIRST, lexeme LIMIT 1)"
    )
    best_of_rarest = (
        f"SELECT p.product_pk, ts_rank(p.{TSVECTOR}, {TSQUERY}) AS rank FROM rarest CROSS JOIN LATERAL ("
        f"SELECT product_pk FROM {TERM_TABLE} WHERE model_key = mmsearch_model_key('{model_id}') "
        f"AND lexeme = rarest.lexeme ORDER BY impact DESC, product_pk LIMIT {cap}) c JOIN {PRODUCT_TABLE} p "
        f"ON p.product_pk = c.product_pk AND p.model_id = '{model_id}' "
        f"WHERE rarest.n IS NOT NULL AND (p.{TSVECTOR} @@ {TSQUERY_ALL}) IS TRUE LIMIT {int(rows)}"
    )
    statement = (
        f"WITH {typed_words} SELECT product_pk, rank FROM ({gin}) g WHERE (SELECT n FROM rarest) IS NULL "
        f"UNION ALL ({best_of_rarest})"
    )
    return statement, [typed, list(common), [float(n) for n in common.values()], *params, words, typed]


def common_lexemes(above: int) -> str:
    """``lexeme, rows``: the lexemes of the products' full-text column estimated to be in more than
    ``above`` product rows (of every encoder version), from PostgreSQL's statistics of the column (its
    most common elements and their shares, kept by ``ANALYZE``; none before the first)."""
    return (
        "SELECT f.lexeme, f.share * c.reltuples FROM pg_class c, pg_stats s CROSS JOIN LATERAL "
        "unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS f(lexeme, share) "
        f"WHERE c.oid = '{PRODUCT_TABLE}'::regclass AND s.schemaname = current_schema() "
        f"AND s.tablename = '{PRODUCT_TABLE}' AND s.attname = '{TSVECTOR}' AND f.share * c.reltuples > {int(above)}"
    )


def _ranked_matches(model_id: str, tsquery: str, rows: int, categories: Sequence[str]) -> str:
    """``product_pk, rank``: ``rows`` matches of ``tsquery`` (its words the second parameter, in the
    categories: the third), ranked by ``ts_rank`` of the OR query of the first parameter's words."""
    check_model_id(model_id)
    in_scope = " AND categories @> %s::varchar[]" if categories else ""
    return (
        f"SELECT product_pk, ts_rank({TSVECTOR}, {TSQUERY}) AS rank FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' "
        f"AND {TSVECTOR} @@ {tsquery}{in_scope} LIMIT {int(rows)}"
    )


#: each product row's lexemes with their own ``ts_rank`` in it (migration 0016, kept by triggers)
TERM_TABLE = "multimodal_search_keywordterm"


def best_matches(model_id: str, rows: int) -> str:
    """``product_pk, rank``: the ``rows`` best matches of an OR query by ``ts_rank``, read from
    ``TERM_TABLE`` alone: each query word's ``KEYWORD_MATCH_CAP`` best rows by that word's own rank,
    through a B-tree that stops there however many products have the word. ``ts_rank`` of an OR query
    (normalisation 0) is the sum of its distinct words' own ranks over their number, so that sum over
    the rows read is a product's rank: exact when every word's rows were all read (fewer matches than
    the cap), else at most what ``ts_rank`` gives (a word the product has, outside that word's best
    rows, is not counted). Parameter: the words."""
    check_model_id(model_id)
    words = (
        "(SELECT a, cardinality(a) AS n FROM tsvector_to_array(to_tsvector('english'::regconfig, %s)) AS a) w "
        "CROSS JOIN unnest(w.a) AS q(lexeme)"
    )
    per_word = (
        f"SELECT product_pk, impact FROM {TERM_TABLE} WHERE model_key = mmsearch_model_key('{model_id}') "
        f"AND lexeme = q.lexeme ORDER BY impact DESC, product_pk LIMIT {int(KEYWORD_MATCH_CAP)}"
    )
    return (
        f"SELECT t.product_pk, (sum(t.impact::float8) / max(w.n))::real AS rank "
        f"FROM {words} CROSS JOIN LATERAL ({per_word}) t GROUP BY t.product_pk ORDER BY 2 DESC, 1 LIMIT {int(rows)}"
    )


def closest_products(column: str) -> str:
    """For each product of the first list, the product of the second most like it by one column's cosine
    (itself left out). Parameters: model id, the first list, the second list."""
    check_column(column, PRODUCT_COLUMNS)
    return (
        f"SELECT DISTINCT ON (a.product_pk) a.product_pk, b.product_pk, 1 - (a.{column} <=> b.{column}) AS sim "
        f"FROM {PRODUCT_TABLE} a JOIN {PRODUCT_TABLE} b ON b.model_id = a.model_id AND b.product_pk <> a.product_pk "
        f"WHERE a.model_id = %s AND a.product_pk = ANY(%s) AND b.product_pk = ANY(%s) "
        f"AND a.{column} IS NOT NULL AND b.{column} IS NOT NULL "
        f'ORDER BY a.product_pk, sim DESC, b.product_pk COLLATE "C"'
    )


def siblings(filtered: bool) -> str:
    """The other products of each product's group (``fields["group"]``, case aside: its other colours), read
    through ``mmsearch_pe_group_idx``; in ``categories`` when ``filtered``. Parameters: model id, the
    products, (the categories)."""
    category_sql = " AND b.categories @> %s::varchar[]" if filtered else ""
    return (
        f"SELECT a.product_pk, b.product_pk FROM {PRODUCT_TABLE} a JOIN {PRODUCT_TABLE} b "
        f"ON b.model_id = a.model_id AND lower(b.fields ->> 'group') = lower(a.fields ->> 'group') "
        f"AND b.product_pk <> a.product_pk "
        f"WHERE a.model_id = %s AND a.product_pk = ANY(%s) AND a.fields ->> 'group' <> ''{category_sql}"
    )


def term_counts(model_id: str, cap: int) -> str:
    """Products using each term (a phrase query on the stored tsvector, through its GIN index), at most
    ``cap`` each. Parameter: the terms."""
    check_model_id(model_id)
    matches = (
        f"SELECT 1 FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' "
        f"AND {TSVECTOR} @@ phraseto_tsquery('english'::regconfig, t) LIMIT {int(cap)}"
    )
    return f"SELECT t, (SELECT count(*) FROM ({matches}) m) FROM unnest(%s::text[]) AS t"


def products_by_code(limit: int, filtered: bool, partial: bool = False) -> str:
    """The products of an encoder version (the parameter ``model_id``) whose identifier or
    ``fields["sku"]``, lower case, is a code (``code``, lower case) or starts with it and a separator
    ("mh07" -> "MH07-Gray"; ``prefix``: the code as a ``LIKE`` pattern), or whose ``fields["group"]``
    is it (a parent sku); in ``categories`` when ``filtered``. ``partial`` (autocomplete): an identifier
    or sku that merely starts with the code ("mh0" -> "MH07-Gray"), no group. The product of that
    identifier or sku first, then by sku (else identifier). Read from the indexes ``mmsearch_pe_code_idx``,
    ``mmsearch_pe_sku_idx`` and ``mmsearch_pe_group_idx``."""

    def starts(expression: str) -> str:
        if partial:
            return f"{expression} LIKE %(prefix)s"
        return (
            f"({expression} LIKE %(prefix)s AND ({expression} = %(code)s "
            f"OR substr({expression}, length(%(code)s) + 1, 1) IN ('-', '_', '.', '/')))"
        )

    pk, sku = "lower(product_pk)", "lower(fields ->> 'sku')"
    matches = [starts(pk), starts(sku)] + ([] if partial else ["lower(fields ->> 'group') = %(code)s"])
    category_sql = " AND categories @> %(categories)s::varchar[]" if filtered else ""
    return (
        f"SELECT product_pk FROM {PRODUCT_TABLE} WHERE model_id = %(model_id)s AND ({' OR '.join(matches)}){category_sql} "
        f"ORDER BY {pk} <> %(code)s AND {sku} IS DISTINCT FROM %(code)s, "
        f"lower(coalesce(fields ->> 'sku', product_pk)), product_pk LIMIT {int(limit)}"
    )


def having_every_word(model_id: str) -> str:
    """The products of a list (the first parameter) whose stored words have every word of one of a list
    of texts (the second: ``plainto_tsquery`` of each, an AND of its lexemes), read by their primary keys."""
    check_model_id(model_id)
    every_word = "plainto_tsquery('english'::regconfig, t)"
    return (
        f"SELECT product_pk FROM {PRODUCT_TABLE} p WHERE model_id = '{model_id}' AND product_pk = ANY(%s::varchar[]) "
        f"AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS t WHERE (p.{TSVECTOR} @@ {every_word}) IS TRUE)"
    )


def signal_selects(
    columns: Mapping[str, str], dims: int, literal: str, lexical_text: str | None, field_keys: Sequence[str]
) -> tuple[list[str], list[Param], list[str]]:
    """SELECT expressions of exact similarities (then ts_rank, then fields), their parameters and signal names."""
    selects: list[str] = []
    params: list[Param] = []
    for column in columns.values():
        check_column(column, PRODUCT_COLUMNS)
        selects.append(similarity(column, dims))
        params.append(literal)
    if lexical_text:
        selects.append(f"ts_rank({TSVECTOR}, {TSQUERY})")
        params.append(lexical_text)
    selects.append(fields_select(field_keys, params))
    return selects, params, list(columns) + (["lexical"] if lexical_text else [])


def neighbour_ctes(columns: list[str], matches_only: list[bool], top: int, dims: int, rrf_k: int) -> str:
    """CTEs ``leaders`` (top candidates by RRF over ``columns``, ties by pk as ``ranking.fusion.rank``),
    ``centre`` (their mean photo features) and ``near`` (each candidate's best photo against it).
    Parameters: model_id x2."""
    terms = []
    for column, only_matches in zip(columns, matches_only):
        value = f"(CASE WHEN {column} > 0 THEN {column} END)" if only_matches else column
        order = f'{value} DESC NULLS LAST, product_pk COLLATE "C"'
        terms.append(
            f"(CASE WHEN {value} IS NOT NULL THEN 1.0::float8 / ({int(rrf_k)} + row_number() OVER (ORDER BY {order})) "
            "ELSE 0 END)"
        )
    # halfvec throughout, as stored: casting each 2,455-d feature vector to vector for the cosine cost
    # about 2 ms for 463 candidates at 100,000 products (the mean in halfvec moves a similarity by about 2e-6)
    return (
        f", leaders AS (SELECT product_pk FROM (SELECT product_pk, {' + '.join(terms)} AS rrf FROM sig) r "
        f'ORDER BY rrf DESC, product_pk COLLATE "C" LIMIT {int(top)}), '
        f"centre AS (SELECT avg({cast('feature_vector', dims)}) AS v FROM {IMAGE_TABLE} "
        f"WHERE model_id = %s AND product_pk IN (SELECT product_pk FROM leaders)), "
        f"near AS (SELECT i.product_pk, max(1 - ({cast('feature_vector', dims, 'i.')} <=> centre.v)) AS sim "
        f"FROM {IMAGE_TABLE} i, centre WHERE centre.v IS NOT NULL AND i.model_id = %s "
        f"AND i.product_pk IN (SELECT product_pk FROM pool) GROUP BY i.product_pk) "
    )


#: the stored-fields key of a product's category leaf (``ranking.vocabulary.FIELD_CATEGORY_LEAF``)
CATEGORY_LEAF_KEY = "category_leaf"
#: the leaf of row ``p``'s deepest category path, lower case (as ``ranking.attributes.category_leaf``).
#: Indexing stores it in the fields, and the attribute step with the inferred facets; rows stored before
#: either did read it here (450 candidates: 2.7 ms at 100,000 products, against 0.1 ms from the fields)
CATEGORY_LEAF = (
    "(SELECT to_jsonb(nullif(lower(btrim(split_part(c.path, '>', -1))), '')) "
    "FROM unnest(p.categories) WITH ORDINALITY AS c(path, n) WHERE c.path <> '' "
    "ORDER BY length(c.path) DESC, c.n LIMIT 1)"
)


def fields_select(keys: Sequence[str], params: list[Param]) -> str:
    """The stored fields restricted to ``keys``, the inferred facets (``FACETS_TABLE`` as ``x``, see
    ``FACETS_JOIN``) first (their parameters are appended to ``params``); the category leaf from the
    category paths where neither has it."""
    if not keys:
        return "NULL"
    pairs = []
    for key in keys:
        leaf = f", {CATEGORY_LEAF}" if key == CATEGORY_LEAF_KEY else ""
        pairs.append(f"%s, coalesce(x.inferred -> %s, p.fields -> %s{leaf})")
        params += [key, key, key]
    return f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)}))"


#: each product row's inferred facets (migration 0020), one narrow row per product row
FACETS_TABLE = "multimodal_search_inferredfacets"
#: the join that gives :func:`fields_select` the facets (``x``) of product row ``p``
FACETS_JOIN = f"LEFT JOIN {FACETS_TABLE} x ON x.product_pk = p.product_pk AND x.model_id = p.model_id"


def true_attributes() -> str:
    """``product_pk, names``: the names of the stored ``attributes`` that are ``true``, of the products of
    one model (the first parameter) among the pks (the second) whose attributes are an object."""
    return (
        "SELECT p.product_pk, ARRAY(SELECT a.key FROM jsonb_each(p.fields->'attributes') a "
        f"WHERE a.value = 'true'::jsonb) FROM {PRODUCT_TABLE} p WHERE p.model_id = %s "
        "AND p.product_pk = ANY(%s::varchar[]) AND jsonb_typeof(p.fields->'attributes') = 'object'"
    )


def rows_with_facets(where: str) -> str:
    """``product_pk, fields, inferred, categories`` of the product rows ``p`` matching ``where``."""
    return f"SELECT p.product_pk, p.fields, x.inferred, p.categories FROM {PRODUCT_TABLE} p {FACETS_JOIN} WHERE {where}"


def upsert_inferred() -> str:
    """Replace the inferred facets of stored product rows of one model, skipping pks with no row.
    Parameters: the pks, their facets as JSON texts (in the same order), the model id."""
    return (
        f"INSERT INTO {FACETS_TABLE} (product_pk, model_id, inferred) SELECT p.product_pk, p.model_id, u.inferred "
        f"FROM unnest(%s::varchar[], %s::jsonb[]) AS u(product_pk, inferred) JOIN {PRODUCT_TABLE} p "
        "ON p.product_pk = u.product_pk AND p.model_id = %s "
        "ON CONFLICT (product_pk, model_id) DO UPDATE SET inferred = EXCLUDED.inferred"
    )


def delete_inferred() -> str:
    """Delete the inferred facets of products of one model. Parameters: the model id, the pks."""
    return f"DELETE FROM {FACETS_TABLE} WHERE model_id = %s AND product_pk = ANY(%s::varchar[])"


#: the title's words, unstemmed (``simple``): generated from ``fields->>'title'`` (migration 0009)
TITLE_WORDS = "title_words"
#: prefix matches ranked per keystroke: a two-letter prefix may match much of the catalogue
SUGGEST_MATCH_CAP = 500


def titled(model_id: str) -> str:
    """Whether a product's title has any of a group's words (a ``simple`` tsquery such as ``'mat' | 'mats'``),
    one row per query, each an ``EXISTS`` read through the GIN index of ``title_words``. Parameter: the
    queries."""
    check_model_id(model_id)
    match = f"SELECT 1 FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' AND {TITLE_WORDS} @@ to_tsquery('simple'::regconfig, q)"
    return f"SELECT q, EXISTS ({match}) FROM unnest(%s::text[]) AS q"


def titles_having(model_id: str) -> str:
    """The products of a list (the first parameter) whose ``title_words`` match a ``simple`` tsquery (the
    second: ``('v') & ('neck' | 'necks')``), read by their primary keys."""
    check_model_id(model_id)
    return (
        f"SELECT product_pk FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' AND product_pk = ANY(%s::varchar[]) "
        f"AND {TITLE_WORDS} @@ to_tsquery('simple'::regconfig, %s)"
    )


def prefix_tsquery(words: Sequence[str], *, prefix: bool = True) -> str:
    """``'chaz' & 'kang':*``: every word whole, the last as a prefix unless ``prefix`` is False (words:
    letters and digits only)."""
    quoted = [f"'{word}'" for word in words if word.isalnum()]
    if quoted and prefix:
        quoted[-1] += ":*"
    return " & ".join(quoted)


def words_match() -> str:
    """The ids of the vector rows whose stored words match a ``to_tsquery`` (the parameter, as
    :func:`prefix_tsquery` writes it), through the ``TSVECTOR`` GIN index."""
    return f"SELECT id FROM {PRODUCT_TABLE} WHERE {TSVECTOR} @@ to_tsquery('english'::regconfig, %s)"


def suggest_products(limit: int, stated: Sequence[bool] = ()) -> str:
    """Products whose title has the words (at most ``SUGGEST_MATCH_CAP``, read through the GIN index of
    ``title_words``), titles starting with the typed text first, then those with the last word whole, then
    shorter titles. Parameters: model id, prefix tsquery, then per ``stated`` condition a field's name and
    a regular expression its lower-case value must match (True: or the field is not stated), then the
    LIKE pattern and the whole-words tsquery."""
    conditions = "".join(
        " AND (coalesce(fields ->> %s, '') = '' OR lower(fields ->> %s) ~ %s)"
        if unstated
        else " AND lower(fields ->> %s) ~ %s"
        for unstated in stated
    )
    matches = (
        f"SELECT product_pk, fields ->> 'title' AS title, {TITLE_WORDS} AS words FROM {PRODUCT_TABLE} "
        f"WHERE model_id = %s AND {TITLE_WORDS} @@ to_tsquery('simple'::regconfig, %s){conditions} "
        f"LIMIT {int(SUGGEST_MATCH_CAP)}"
    )
    return (
        f"SELECT product_pk, title FROM ({matches}) m "
        "ORDER BY lower(title) LIKE %s DESC, words @@ to_tsquery('simple'::regconfig, %s) DESC, "
        f"length(title), title, product_pk LIMIT {int(limit)}"
    )


def category_counts() -> str:
    """Products of one encoder version per category path (ancestors included), a group's (a product's
    colours, ``fields["group"]``) counted once. Parameter: model id. The distinct (path, group) pairs are
    hashed first, the group as a 64-bit hash: on 1,000,000 rows (3 paths each, groups of 3) 3.5 s
    against 7 s for ``count(DISTINCT group)`` (0.3 s for ``count(*)``, which counts colours)."""
    group = "hashtextextended(coalesce(nullif(lower(fields ->> 'group'), ''), product_pk), 0)"
    return (
        f"SELECT c, count(*) FROM (SELECT DISTINCT c, {group} FROM {PRODUCT_TABLE}, unnest(categories) AS c "
        "WHERE model_id = %s) AS pairs GROUP BY c"
    )
