"""pgvector storage and nearest-neighbour queries.

Vector columns have no fixed dimension; each encoder gets partial HNSW
(cosine) expression indexes ``((col::halfvec(D)) halfvec_cosine_ops) WHERE
model_id = '<id>'``. Queries repeat that exact expression and predicate (as
literals, so the planner can match the partial index).
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Iterable, Mapping, Sequence

import numpy as np
from django.db import connection, transaction

PRODUCT_TABLE = "multimodal_search_productembedding"
IMAGE_TABLE = "multimodal_search_imageembedding"
PRODUCT_COLUMNS = ("text_vector", "title_vector", "image_vector", "fused_vector")
IMAGE_COLUMNS = ("feature_vector", "shared_vector")
_SAFE_MODEL_ID = re.compile(r"^[A-Za-z0-9:._/+@=-]{1,200}$")
_ensured: set[tuple[str, int, int]] = set()


def check_model_id(model_id: str) -> str:
    if not _SAFE_MODEL_ID.match(model_id):
        raise ValueError(f"encoder model_id {model_id!r} has characters outside [A-Za-z0-9:._/+@=-]")
    return model_id


def as_array(value) -> np.ndarray:
    """A stored vector (HalfVector, list or array) as float32 numpy."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def to_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"


def _index_name(table: str, column: str, model_id: str) -> str:
    digest = hashlib.sha1(f"{table}:{column}:{model_id}".encode()).hexdigest()[:12]
    return f"mmsearch_hnsw_{column[:10]}_{digest}"


def ensure_indexes(model_id: str, dimensions: int, feature_dimensions: int) -> None:
    """Create the HNSW indexes for one encoder if they do not exist yet."""
    key = (model_id, dimensions, feature_dimensions)
    if key in _ensured:
        return
    check_model_id(model_id)
    statements = []
    for table, columns in ((PRODUCT_TABLE, PRODUCT_COLUMNS), (IMAGE_TABLE, IMAGE_COLUMNS)):
        for column in columns:
            dims = feature_dimensions if column == "feature_vector" else dimensions
            name = _index_name(table, column, model_id)
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw "
                f"(({column}::halfvec({dims})) halfvec_cosine_ops) "
                f"WHERE model_id = '{model_id}' AND {column} IS NOT NULL"
            )
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    _ensured.add(key)


def drop_indexes(model_id: str) -> None:
    with connection.cursor() as cursor:
        for table, columns in ((PRODUCT_TABLE, PRODUCT_COLUMNS), (IMAGE_TABLE, IMAGE_COLUMNS)):
            for column in columns:
                cursor.execute(f"DROP INDEX IF EXISTS {_index_name(table, column, model_id)}")
    _ensured.difference_update({k for k in _ensured if k[0] == model_id})


def _session_settings(cursor, ef_search: int, filtered: bool) -> None:
    cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
    if filtered:
        # Without iterative scans a filtered HNSW query silently returns fewer rows.
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")


def nearest_products(
    column: str,
    query: np.ndarray,
    *,
    model_id: str,
    limit: int,
    categories: Sequence[str] = (),
    ef_search: int = 100,
) -> list[tuple[str, float]]:
    """Approximate nearest products by one product-level vector column.

    Returns:
        [(product_pk, cosine similarity)], best first.
    """
    if column not in PRODUCT_COLUMNS:
        raise ValueError(column)
    check_model_id(model_id)
    dims = int(np.asarray(query).size)
    expr = f"({column}::halfvec({dims}))"
    where = f"model_id = '{model_id}' AND {column} IS NOT NULL"
    params: list = [to_literal(query)]
    if categories:
        where += " AND categories @> %s::varchar[]"
        params.append(list(categories))
    sql = (
        f"SELECT product_pk, 1 - ({expr} <=> %s::halfvec({dims})) AS sim FROM {PRODUCT_TABLE} "
        f"WHERE {where} ORDER BY {expr} <=> %s::halfvec({dims}) LIMIT {int(limit)}"
    )
    params = [params[0]] + params[1:] + [params[0]]
    with transaction.atomic(), connection.cursor() as cursor:
        _session_settings(cursor, min(1000, max(ef_search, limit)), bool(categories))
        cursor.execute(sql, params)
        return [(pk, float(sim)) for pk, sim in cursor.fetchall()]


def nearest_images(
    column: str,
    query: np.ndarray,
    *,
    model_id: str,
    limit: int,
    categories: Sequence[str] = (),
    ef_search: int = 100,
) -> list[tuple[str, float]]:
    """Nearest products by their best-matching photo (max over a product's photos)."""
    if column not in IMAGE_COLUMNS:
        raise ValueError(column)
    check_model_id(model_id)
    dims = int(np.asarray(query).size)
    expr = f"(i.{column}::halfvec({dims}))"
    where = f"i.model_id = '{model_id}'"
    literal = to_literal(query)
    params: list = [literal]
    join = ""
    if categories:
        join = (
            f" JOIN {PRODUCT_TABLE} p ON p.product_pk = i.product_pk AND p.model_id = i.model_id"
        )
        where += " AND p.categories @> %s::varchar[]"
        params.append(list(categories))
    fetch = int(limit) * 4
    sql = (
        f"SELECT product_pk, max(sim) AS sim FROM ("
        f"SELECT i.product_pk, 1 - ({expr} <=> %s::halfvec({dims})) AS sim FROM {IMAGE_TABLE} i{join} "
        f"WHERE {where} ORDER BY {expr} <=> %s::halfvec({dims}) LIMIT {fetch}"
        f") t GROUP BY product_pk ORDER BY sim DESC LIMIT {int(limit)}"
    )
    params = [literal] + params[1:] + [literal]
    with transaction.atomic(), connection.cursor() as cursor:
        _session_settings(cursor, min(1000, max(ef_search, fetch)), bool(categories))
        cursor.execute(sql, params)
        return [(pk, float(sim)) for pk, sim in cursor.fetchall()]


def _exact_similarities(table: str, column: str, query: np.ndarray, pks: list[str], model_id: str,
                        best_of_rows: bool) -> dict[str, float]:
    """Exact cosine similarity of ``query`` per product (the best of its rows when ``best_of_rows``)."""
    if not pks:
        return {}
    dims = int(np.asarray(query).size)
    similarity = f"1 - (({column}::halfvec({dims})) <=> %s::halfvec({dims}))"
    where = f"FROM {table} WHERE model_id = %s AND product_pk = ANY(%s) AND {column} IS NOT NULL"
    sql = (f"SELECT product_pk, max({similarity}) {where} GROUP BY product_pk" if best_of_rows
           else f"SELECT product_pk, {similarity} {where}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [to_literal(query), model_id, pks])
        return {pk: float(sim) for pk, sim in cursor.fetchall()}


def product_similarities(
    product_pks: Iterable[str], column: str, query: np.ndarray, *, model_id: str
) -> dict[str, float]:
    """Exact cosine similarity of ``query`` to one vector column for given products."""
    if column not in PRODUCT_COLUMNS:
        raise ValueError(column)
    return _exact_similarities(PRODUCT_TABLE, column, query, list(product_pks), model_id, best_of_rows=False)


def image_similarities(
    product_pks: Iterable[str], column: str, query: np.ndarray, *, model_id: str
) -> dict[str, float]:
    """Exact best-photo cosine similarity of ``query`` for given products."""
    if column not in IMAGE_COLUMNS:
        raise ValueError(column)
    return _exact_similarities(IMAGE_TABLE, column, query, list(product_pks), model_id, best_of_rows=True)


_TSQUERY = "replace(plainto_tsquery('english'::regconfig, %s)::text, '&', '|')::tsquery"
_TSVECTOR = "search_vector"  # stored, generated from search_text (migration 0004)


def product_fields(product_pks: Iterable[str], *, model_id: str) -> dict[str, dict]:
    """The stored ``fields`` (structured attributes, colour profile) of given products."""
    from multimodal_search.models import ProductEmbedding

    rows = ProductEmbedding.objects.filter(model_id=model_id, product_pk__in=list(product_pks))
    return dict(rows.values_list("product_pk", "fields"))


def nearest_products_multi(
    columns: Mapping[str, str],
    query: np.ndarray,
    *,
    model_id: str,
    limit: int,
    categories: Sequence[str] = (),
    ef_search: int = 100,
    lexical_text: str | None = None,
) -> dict[str, list[str]]:
    """Top products by several vector columns (and optionally full-text), in one round trip.

    Args:
        columns: ranking name -> product vector column.
        lexical_text: also rank by full-text match of this text (ranking "lexical").

    Returns:
        ranking name -> product pks, best first.
    """
    check_model_id(model_id)
    dims = int(np.asarray(query).size)
    literal = to_literal(query)
    category_sql = " AND categories @> %s::varchar[]" if categories else ""
    branches, params = [], []
    for name, column in columns.items():
        if column not in PRODUCT_COLUMNS:
            raise ValueError(column)
        expr = f"({column}::halfvec({dims}))"
        branches.append(
            f"(SELECT '{name}' AS ranking, product_pk FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' "
            f"AND {column} IS NOT NULL{category_sql} ORDER BY {expr} <=> %s::halfvec({dims}) LIMIT {int(limit)})"
        )
        params += ([list(categories)] if categories else []) + [literal]
    if lexical_text:
        branches.append(
            f"(SELECT 'lexical' AS ranking, product_pk FROM {PRODUCT_TABLE}, (SELECT {_TSQUERY} AS query) q "
            f"WHERE model_id = '{model_id}' AND {_TSVECTOR} @@ q.query{category_sql} "
            f"ORDER BY ts_rank({_TSVECTOR}, q.query) DESC, product_pk LIMIT {int(limit)})"
        )
        params += [lexical_text] + ([list(categories)] if categories else [])
    rankings: dict[str, list[str]] = {name: [] for name in columns}
    if lexical_text:
        rankings["lexical"] = []
    if not branches:
        return rankings
    with transaction.atomic(), connection.cursor() as cursor:
        _session_settings(cursor, min(1000, max(ef_search, limit)), bool(categories))
        cursor.execute(" UNION ALL ".join(branches), params)
        for name, pk in cursor.fetchall():
            rankings[name].append(pk)
    return rankings


def product_signals(
    product_pks: Iterable[str],
    columns: Mapping[str, str],
    query: np.ndarray,
    *,
    model_id: str,
    lexical_text: str | None = None,
    with_fields: bool = False,
) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Exact similarities of ``query`` to several columns (and ts_rank, fields) in one query.

    Returns:
        (signal name -> {pk: value}, {pk: fields} when ``with_fields``)
    """
    pks = list(product_pks)
    signals: dict[str, dict[str, float]] = {name: {} for name in columns}
    if lexical_text:
        signals["lexical"] = {}
    if not pks:
        return signals, {}
    dims = int(np.asarray(query).size)
    selects, params = [], []
    for name, column in columns.items():
        if column not in PRODUCT_COLUMNS:
            raise ValueError(column)
        selects.append(f"1 - (({column}::halfvec({dims})) <=> %s::halfvec({dims}))")
        params.append(to_literal(query))
    if lexical_text:
        selects.append(f"ts_rank({_TSVECTOR}, {_TSQUERY})")
        params.append(lexical_text)
    selects.append("fields" if with_fields else "NULL")
    sql = f"SELECT product_pk, {', '.join(selects)} FROM {PRODUCT_TABLE} WHERE model_id = %s AND product_pk = ANY(%s)"
    names = list(columns) + (["lexical"] if lexical_text else [])
    fields: dict[str, dict] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params + [model_id, pks])
        for row in cursor.fetchall():
            pk = row[0]
            for name, value in zip(names, row[1:-1]):
                if value is not None:
                    signals[name][pk] = float(value)
            if with_fields:
                value = row[-1]
                fields[pk] = json.loads(value) if isinstance(value, str) else (value or {})
    return signals, fields


def centroid_similarities(product_pks: Iterable[str], leaders: Iterable[str], *, dims: int, model_id: str) -> dict[str, float]:
    """Best-photo cosine similarity of each product to the mean visual features of the
    ``leaders``' photos, in one round trip ({} when the leaders have no photos)."""
    pks, leaders = list(product_pks), list(leaders)
    if not pks or not leaders:
        return {}
    sql = (
        f"WITH c AS (SELECT avg(feature_vector::vector({dims})) AS v FROM {IMAGE_TABLE} "
        f"WHERE model_id = %s AND product_pk = ANY(%s)) "
        f"SELECT product_pk, max(1 - ((feature_vector::vector({dims})) <=> c.v)) FROM {IMAGE_TABLE}, c "
        f"WHERE c.v IS NOT NULL AND model_id = %s AND product_pk = ANY(%s) GROUP BY product_pk"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [model_id, leaders, model_id, pks])
        return {pk: float(sim) for pk, sim in cursor.fetchall()}
