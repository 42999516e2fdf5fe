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


def _candidate_branches(
    columns: Mapping[str, str], dims: int, literal: str, *, model_id: str, limit: int,
    categories: Sequence[str], lexical_text: str | None,
) -> tuple[list[str], list]:
    """``SELECT product_pk ... ORDER BY ... LIMIT`` per index, and their parameters in order."""
    check_model_id(model_id)
    category_sql = " AND categories @> %s::varchar[]" if categories else ""
    branches, params = [], []
    for column in columns.values():
        if column not in PRODUCT_COLUMNS:
            raise ValueError(column)
        expr = f"({column}::halfvec({dims}))"
        branches.append(
            f"SELECT product_pk FROM {PRODUCT_TABLE} WHERE model_id = '{model_id}' "
            f"AND {column} IS NOT NULL{category_sql} ORDER BY {expr} <=> %s::halfvec({dims}) LIMIT {int(limit)}"
        )
        params += ([list(categories)] if categories else []) + [literal]
    if lexical_text:
        branches.append(
            f"SELECT product_pk FROM {PRODUCT_TABLE}, (SELECT {_TSQUERY} AS query) q "
            f"WHERE model_id = '{model_id}' AND {_TSVECTOR} @@ q.query{category_sql} "
            f"ORDER BY ts_rank({_TSVECTOR}, q.query) DESC, product_pk LIMIT {int(limit)}"
        )
        params += [lexical_text] + ([list(categories)] if categories else [])
    return branches, params


def _signal_selects(
    columns: Mapping[str, str], dims: int, literal: str, lexical_text: str | None, with_fields: bool | Sequence[str]
) -> tuple[list[str], list, list[str]]:
    """SELECT expressions of exact similarities (then ts_rank, then fields), their parameters and signal names."""
    selects, params = [], []
    for column in columns.values():
        if column not in PRODUCT_COLUMNS:
            raise ValueError(column)
        selects.append(f"1 - (({column}::halfvec({dims})) <=> %s::halfvec({dims}))")
        params.append(literal)
    if lexical_text:
        selects.append(f"ts_rank({_TSVECTOR}, {_TSQUERY})")
        params.append(lexical_text)
    selects.append(_fields_select(with_fields, params))
    return selects, params, list(columns) + (["lexical"] if lexical_text else [])


def _read_signal_rows(rows, names: list[str], with_fields) -> tuple[list[str], dict[str, dict[str, float]], dict[str, dict]]:
    pks: list[str] = []
    signals: dict[str, dict[str, float]] = {name: {} for name in names}
    fields: dict[str, dict] = {}
    for row in rows:
        pk = row[0]
        pks.append(pk)
        for name, value in zip(names, row[1:-1]):
            if value is not None:
                signals[name][pk] = float(value)
        if with_fields:
            value = row[-1]
            fields[pk] = json.loads(value) if isinstance(value, str) else (value or {})
    return pks, signals, fields


def candidate_signals(
    rank_columns: Mapping[str, str],
    signal_columns: Mapping[str, str],
    query: np.ndarray,
    *,
    model_id: str,
    limit: int,
    categories: Sequence[str] = (),
    ef_search: int = 100,
    lexical_text: str | None = None,
    extra_pks: Sequence[str] = (),
    with_fields: bool | Sequence[str] = False,
    neighbours: tuple[Sequence[str], int, int] | None = None,
) -> tuple[list[str], dict[str, dict[str, float]], dict[str, dict]]:
    """The candidate pool (top ``limit`` of each index in ``rank_columns``, the full-text
    matches and ``extra_pks``) and the exact signals of every candidate, in one round trip.

    Args:
        neighbours: ``(signal names, top, feature dims)`` adds the "neighbours" signal:
            each candidate's best-photo similarity to the mean photo features of the
            ``top`` candidates by reciprocal rank fusion of those signals (ties by pk,
            as ``fusion.rank``; keyword ranks count only for actual matches).

    Returns:
        (pool, signal name -> {pk: value}, {pk: fields} when ``with_fields``)
    """
    dims = int(np.asarray(query).size)
    literal = to_literal(query)
    branches, pool_params = _candidate_branches(
        rank_columns, dims, literal, model_id=model_id, limit=limit, categories=categories, lexical_text=lexical_text,
    )
    parts = [f"SELECT product_pk FROM ({branch}) b{i}" for i, branch in enumerate(branches)]
    if extra_pks:
        parts.append("SELECT unnest(%s::varchar[])")
        pool_params.append(list(extra_pks))
    if not parts:
        return [], {}, {}
    selects, params, names = _signal_selects(signal_columns, dims, literal, lexical_text, with_fields)
    aliased = [f"{expr} AS s{i}" for i, expr in enumerate(selects[:-1])] + [f"{selects[-1]} AS f"]
    sql = (
        f"WITH pool AS MATERIALIZED ({' UNION '.join(parts)}), "
        f"sig AS MATERIALIZED (SELECT p.product_pk, {', '.join(aliased)} FROM {PRODUCT_TABLE} p "
        f"JOIN pool ON pool.product_pk = p.product_pk WHERE p.model_id = %s) "
    )
    params = pool_params + params + [model_id]
    columns = ", ".join(f"sig.s{i}" for i in range(len(names)))
    if neighbours and any(name in names for name in neighbours[0]):
        wanted, top, feature_dims = neighbours
        used = [name for name in wanted if name in names]
        sql += _neighbour_ctes([f"s{names.index(n)}" for n in used], [n == "lexical" for n in used],
                               int(top), int(feature_dims))
        params += [model_id, model_id]
        sql += f"SELECT sig.product_pk, {columns}, near.sim, sig.f FROM sig LEFT JOIN near ON near.product_pk = sig.product_pk"
        names = names + ["neighbours"]
    else:
        sql += f"SELECT sig.product_pk, {columns}, sig.f FROM sig"
    with transaction.atomic(), connection.cursor() as cursor:
        _session_settings(cursor, min(1000, max(ef_search, limit)), bool(categories))
        cursor.execute(sql + " ORDER BY 1", params)
        pool, signals, fields = _read_signal_rows(cursor.fetchall(), names, with_fields)
    if "neighbours" in signals and not signals["neighbours"]:
        del signals["neighbours"]  # the leaders have no photos
    return pool, signals, fields


def _neighbour_ctes(columns: list[str], matches_only: list[bool], top: int, dims: int) -> str:
    """CTEs ``leaders`` (top candidates by RRF, k=60, over ``columns``), ``centre`` (their mean
    photo features) and ``near`` (each candidate's best photo against it). Parameters: model_id x2."""
    terms = []
    for column, only_matches in zip(columns, matches_only):
        value = f"(CASE WHEN {column} > 0 THEN {column} END)" if only_matches else column
        order = f'{value} DESC NULLS LAST, product_pk COLLATE "C"'
        terms.append(f"(CASE WHEN {value} IS NOT NULL THEN 1.0::float8 / (60 + row_number() OVER (ORDER BY {order})) ELSE 0 END)")
    return (
        f", leaders AS (SELECT product_pk FROM (SELECT product_pk, {' + '.join(terms)} AS rrf FROM sig) r "
        f'ORDER BY rrf DESC, product_pk COLLATE "C" LIMIT {top}), '
        f"centre AS (SELECT avg(feature_vector::vector({dims})) AS v FROM {IMAGE_TABLE} "
        f"WHERE model_id = %s AND product_pk IN (SELECT product_pk FROM leaders)), "
        f"near AS (SELECT i.product_pk, max(1 - ((i.feature_vector::vector({dims})) <=> centre.v)) AS sim "
        f"FROM {IMAGE_TABLE} i, centre WHERE centre.v IS NOT NULL AND i.model_id = %s "
        f"AND i.product_pk IN (SELECT product_pk FROM pool) GROUP BY i.product_pk) "
    )


def _fields_select(keys: bool | Sequence[str], params: list) -> str:
    if keys is True:
        return "fields"
    if not keys:
        return "NULL"
    pairs = []
    for key in keys:
        pairs.append("%s, fields -> %s")
        params += [key, key]
    return f"jsonb_strip_nulls(jsonb_build_object({', '.join(pairs)}))"
