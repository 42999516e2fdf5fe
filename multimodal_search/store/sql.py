"""SQL text for the pgvector store: every vector expression is built here, once.

Vector columns have no fixed dimension; each encoder gets partial HNSW (cosine) expression indexes
``((col::halfvec(D)) halfvec_cosine_ops) WHERE model_id = '<id>'``. Queries must repeat that exact
expression (:func:`cast`) and predicate, with the model id as a literal, for the planner to match the
partial index; :func:`check_model_id` makes the literal safe.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np

from multimodal_search.store.base import IMAGE_COLUMNS, PRODUCT_COLUMNS

PRODUCT_TABLE = "multimodal_search_productembedding"
IMAGE_TABLE = "multimodal_search_imageembedding"
_SAFE_MODEL_ID = re.compile(r"^[A-Za-z0-9:._/+@=-]{1,200}$")
#: the query words as an OR of their lexemes ("black holdall" matches either word)
TSQUERY = "replace(plainto_tsquery('english'::regconfig, %s)::text, '&', '|')::tsquery"
TSVECTOR = "search_vector"  # stored, generated from search_text (migration 0004)
#: a query parameter: a text (vector literal, words, key, model id) or a list of texts (categories, pks)
Param: TypeAlias = str | list[str]


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


def cast(column: str, dims: int, alias: str = "", kind: str = "halfvec") -> str:
    """The indexed expression of a column: ``(alias.column::halfvec(dims))``."""
    return f"({alias}{column}::{kind}({int(dims)}))"


def distance(column: str, dims: int, alias: str = "") -> str:
    """Cosine distance of a column to the query parameter (``%s``): what HNSW indexes order by."""
    return f"{cast(column, dims, alias)} <=> %s::halfvec({int(dims)})"


def similarity(column: str, dims: int, alias: str = "") -> str:
    """Cosine similarity of a column to the query parameter (``%s``)."""
    return f"1 - ({distance(column, dims, alias)})"


def index_name(table: str, column: str, model_id: str) -> str:
    digest = hashlib.sha1(f"{table}:{column}:{model_id}".encode()).hexdigest()[:12]
    return f"mmsearch_hnsw_{column[:10]}_{digest}"


def index_statements(model_id: str, dimensions: int, feature_dimensions: int) -> list[str]:
    """``CREATE INDEX`` of every vector column of one encoder version (partial, cosine HNSW)."""
    check_model_id(model_id)
    statements = []
    for table, columns in ((PRODUCT_TABLE, PRODUCT_COLUMNS), (IMAGE_TABLE, IMAGE_COLUMNS)):
        for column in columns:
            dims = feature_dimensions if column == "feature_vector" else dimensions
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {index_name(table, column, model_id)} ON {table} USING hnsw "
                f"({cast(column, dims)} halfvec_cosine_ops) "
                f"WHERE model_id = '{model_id}' AND {column} IS NOT NULL"
            )
    return statements


def drop_index_statements(model_id: str) -> list[str]:
    return [
        f"DROP INDEX IF EXISTS {index_name(table, column, model_id)}"
        for table, columns in ((PRODUCT_TABLE, PRODUCT_COLUMNS), (IMAGE_TABLE, IMAGE_COLUMNS))
        for column in columns
    ]


def candidate_branches(
    columns: Mapping[str, str],
    dims: int,
    literal: str,
    *,
    model_id: str,
    limit: int,
    categories: Sequence[str],
    lexical_text: str | None,
) -> tuple[list[str], list[Param]]:
    """``SELECT product_pk ... ORDER BY ... LIMIT`` per index, and their parameters in order."""
    check_model_id(model_id)
    category_sql = " AND categories @> %s::varchar[]" if categories else ""
    branches: list[str] = []
    params: list[Param] = []
    for column in columns.values():
        check_column(column, PRODUCT_COLUMNS)
        branches.append(
            f"SELECT product_pk FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' "
            f"AND {column} IS NOT NULL{category_sql} ORDER BY {distance(column, dims)} LIMIT {int(limit)}"
        )
        params += ([list(categories)] if categories else []) + [literal]
    if lexical_text:
        branches.append(
            f"SELECT product_pk FROM {PRODUCT_TABLE}, (SELECT {TSQUERY} AS query) q "
            f"WHERE model_id = '{model_id}' AND {TSVECTOR} @@ q.query{category_sql} "
            f"ORDER BY ts_rank({TSVECTOR}, q.query) DESC, product_pk LIMIT {int(limit)}"
        )
        params += [lexical_text] + ([list(categories)] if categories else [])
    return branches, params


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
    features = cast("feature_vector", dims, kind="vector")
    return (
        f", leaders AS (SELECT product_pk FROM (SELECT product_pk, {' + '.join(terms)} AS rrf FROM sig) r "
        f'ORDER BY rrf DESC, product_pk COLLATE "C" LIMIT {int(top)}), '
        f"centre AS (SELECT avg({features}) AS v FROM {IMAGE_TABLE} "
        f"WHERE model_id = %s AND product_pk IN (SELECT product_pk FROM leaders)), "
        f"near AS (SELECT i.product_pk, max(1 - ({cast('feature_vector', dims, 'i.', 'vector')} <=> centre.v)) AS sim "
        f"FROM {IMAGE_TABLE} i, centre WHERE centre.v IS NOT NULL AND i.model_id = %s "
        f"AND i.product_pk IN (SELECT product_pk FROM pool) GROUP BY i.product_pk) "
    )


def fields_select(keys: Sequence[str], params: list[Param]) -> str:
    """The stored fields restricted to ``keys`` (their parameters are appended to ``params``)."""
    if not keys:
        return "NULL"
    pairs = []
    for key in keys:
        pairs.append("%s, fields -> %s")
        params += [key, key]
    return f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)}))"
