"""The PostgreSQL + pgvector store: ``halfvec`` columns, partial HNSW cosine indexes per encoder version.

Rows are ``models.ProductEmbedding`` (one per product and encoder version) and
``models.ImageEmbedding`` (one per photo); the SQL text comes from ``store.sql``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connections, router, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from multimodal_search.models import BackboneVector, ImageEmbedding, ProductEmbedding
from multimodal_search.store import hnsw, sql
from multimodal_search.store.base import (
    IMAGE_COLUMNS,
    PRODUCT_COLUMNS,
    BaseVectorStore,
    BuildProgress,
    CandidateRequest,
    Candidates,
    IndexInfo,
    ProductVectors,
    Scope,
    StatedWords,
    pool_vector,
)


def as_array(value: Any) -> np.ndarray:
    """A stored vector (HalfVector, list or array) as float32 numpy."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


@dataclass(frozen=True)
class VectorQuery:
    """One read statement, its parameters and the HNSW settings it runs under."""

    statement: str
    params: list[sql.Param]
    ef_search: int
    filtered: bool
    #: the branches the statement runs through ``sql.NEAREST_FUNCTION`` at their own ``ef_search``, as
    #: statements of their own (for ``explain``: the statement's plan shows only a function scan)
    inner: tuple[VectorQuery, ...] = ()


#: what a product's row holds besides its key: replaced on every write (``save_products``)
_STORED_FIELDS = (
    "content_hash", "text_vector", "title_vector", "image_vector", "fused_vector", "pool_vector",
    "image_count", "categories", "fields", "search_text", "updated_at",
)  # fmt: skip


def _ef_search(configured: int, rows: int) -> int:
    # a scan returns at most ef_search rows; pgvector accepts 1..1000
    return max(1, min(1000, max(int(configured), rows)))


def _read_alias() -> str:
    # search reads: a read replica when a database router sends ProductEmbedding reads there (a second
    # of replication lag is fine for search); writes and the indexing path's reads use _primary_alias()
    return router.db_for_read(ProductEmbedding)


def _primary_alias() -> str:
    return router.db_for_write(ProductEmbedding)


#: how long a process keeps the full-text column's common words (``sql.common_lexemes``) per database
COMMON_WORDS_SECONDS = 300.0
_common_words: dict[str, tuple[float, dict[str, float]]] = {}


def common_words_in(typed: str | None) -> dict[str, float]:
    """The common words (:func:`common_words`) that may be among the lexemes of ``typed``: those whose first
    three letters are in its text (a stem starts as its word does). Sending the statement the few that may
    matter instead of every common word (hundreds at 1,000,000 products) saved about 3 ms a search;
    one left out only means the AND half reads the GIN index."""
    text = (typed or "").lower()
    if not text:
        return {}
    return {lexeme: rows for lexeme, rows in common_words(_read_alias()).items() if lexeme[:3] in text}


def common_words(alias: str) -> dict[str, float]:
    """The lexemes in more than ``sql.KEYWORD_COMMON_ROWS`` product rows (estimated) -> their rows, read
    from the column's statistics at most every ``COMMON_WORDS_SECONDS`` per process."""
    kept = _common_words.get(alias)
    if kept is not None and time.monotonic() - kept[0] < COMMON_WORDS_SECONDS:
        return kept[1]
    with connections[alias].cursor() as cursor:
        cursor.execute(sql.common_lexemes(sql.KEYWORD_COMMON_ROWS))
        found = {str(lexeme): float(rows) for lexeme, rows in cursor.fetchall()}
    _common_words[alias] = (time.monotonic(), found)
    return found


class PgvectorStore(BaseVectorStore):
    """Vectors in the app's own tables, searched with pgvector's HNSW indexes."""

    def __init__(self) -> None:
        self._ensured: set[tuple[str, int, int, int, int]] = set()

    # --- writes ------------------------------------------------------------------------------

    def ensure_indexes(
        self, model_id: str, dimensions: int, feature_dimensions: int, *, any_size: bool = False
    ) -> None:
        """See :func:`store.hnsw.ensure` (once per process and build parameters, ``any_size`` always)."""
        key = (model_id, dimensions, feature_dimensions, *hnsw.build_settings())
        if key in self._ensured and not any_size:
            return
        hnsw.ensure(model_id, dimensions, feature_dimensions, any_size=any_size)
        self._ensured.add(key)

    def rows_with_words(self, words: Sequence[str]) -> Q:
        query = sql.prefix_tsquery(words)
        return Q(id__in=RawSQL(sql.words_match(), [query])) if query else Q(pk__in=[])

    def index_status(self, model_id: str) -> list[IndexInfo]:
        return hnsw.status(model_id)

    def rebuild_indexes(
        self,
        model_id: str,
        dimensions: int,
        feature_dimensions: int,
        progress: Callable[[BuildProgress], None] | None = None,
        memory: str | None = None,
    ) -> tuple[list[str], list[str]]:
        built, dropped = hnsw.rebuild(model_id, dimensions, feature_dimensions, progress, memory)
        self._ensured = {key for key in self._ensured if key[0] != model_id}
        return built, dropped

    def refresh_statistics(self) -> None:
        """``ANALYZE`` of the vector and word tables (seconds at 1,000,000 products: it reads a sample).
        Autovacuum would, but only once a tenth of a table changed and its next round came: until then a
        bulk-loaded catalogue has no common words (``common_words``) and the planner's row estimates are
        the empty table's. This process's common words are read again at its next search."""
        with connections[_primary_alias()].cursor() as cursor:
            cursor.execute(f"ANALYZE {sql.PRODUCT_TABLE}, {sql.IMAGE_TABLE}, {sql.TERM_TABLE}")
        _common_words.clear()

    def save_products(self, model_id: str, products: Sequence[ProductVectors]) -> None:
        if not products:
            return
        rows = [
            ProductEmbedding(
                product_pk=item.product_pk,
                model_id=model_id,
                content_hash=item.content_hash,
                text_vector=item.text_vector,
                title_vector=item.title_vector,
                image_vector=item.image_vector,
                fused_vector=item.fused_vector,
                pool_vector=pool_vector(item.text_vector, item.title_vector, item.image_vector),
                image_count=len(item.photos),
                categories=item.categories,
                fields=item.fields,
                search_text=item.search_text,
            )
            for item in products
        ]
        photos = [
            ImageEmbedding(
                product_pk=item.product_pk,
                model_id=model_id,
                image_key=photo.key[:500],
                position=position,
                feature_vector=photo.features,
                shared_vector=photo.shared,
            )
            for item in products
            for position, photo in enumerate(item.photos)
        ]
        # a few statements per batch, not several per product: a reindex for a new head is mostly writes
        with transaction.atomic():
            ProductEmbedding.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["product_pk", "model_id"],
                update_fields=list(_STORED_FIELDS),
                batch_size=500,
            )
            pks = [item.product_pk for item in products]
            ImageEmbedding.objects.filter(model_id=model_id, product_pk__in=pks).delete()
            ImageEmbedding.objects.bulk_create(photos, batch_size=500)
            self._write_inferred(model_id, {item.product_pk: item.inferred for item in products})

    def update_inferred(self, model_id: str, inferred: Mapping[str, Mapping[str, Any]]) -> int:
        with transaction.atomic(using=_primary_alias()):
            return self._write_inferred(model_id, inferred)

    def _write_inferred(self, model_id: str, inferred: Mapping[str, Mapping[str, Any]]) -> int:
        """Upsert the facets of the products that have some, delete those of the ones that have none."""
        kept = {pk: facets for pk, facets in inferred.items() if facets}
        none = [pk for pk, facets in inferred.items() if not facets]
        written = 0
        with connections[_primary_alias()].cursor() as cursor:
            if none:
                cursor.execute(sql.delete_inferred(), [model_id, none])
            if kept:
                cursor.execute(
                    sql.upsert_inferred(), [list(kept), [json.dumps(facets) for facets in kept.values()], model_id]
                )
                written = cursor.rowcount
        return written

    def delete_products(self, pks: Sequence[str]) -> int:
        keys = [str(pk) for pk in pks]
        with transaction.atomic():
            ImageEmbedding.objects.filter(product_pk__in=keys).delete()
            removed, _ = ProductEmbedding.objects.filter(product_pk__in=keys).delete()
        return removed

    def drop_model(self, model_id: str) -> int:
        with transaction.atomic():
            ImageEmbedding.objects.filter(model_id=model_id).delete()
            removed, _ = ProductEmbedding.objects.filter(model_id=model_id).delete()
        hnsw.drop(model_id)
        self._ensured = {key for key in self._ensured if key[0] != model_id}
        return removed

    # --- backbone outputs kept across head versions ------------------------------------------

    def backbone_vectors(self, backbone_id: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        keys = sorted(set(digests))
        if not keys:
            return {}
        rows = BackboneVector.objects.filter(backbone_id=backbone_id, digest__in=keys).values_list("digest", "vector")
        return {digest: np.frombuffer(bytes(vector), dtype=np.float16) for digest, vector in rows}

    def save_backbone_vectors(self, backbone_id: str, vectors: Mapping[str, np.ndarray]) -> None:
        rows = [
            BackboneVector(
                backbone_id=backbone_id,
                digest=digest,
                vector=np.ascontiguousarray(vector, dtype=np.float16).tobytes(),
            )
            for digest, vector in vectors.items()
        ]
        # a concurrent worker may keep the same photo first: same bytes, so its row is as good as ours
        BackboneVector.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)

    def drop_backbones(self, keep: Sequence[str]) -> int:
        removed, _ = BackboneVector.objects.exclude(backbone_id__in=list(keep)).delete()
        return removed

    # --- bookkeeping -------------------------------------------------------------------------

    def content_hashes(self, model_id: str, pks: Sequence[str]) -> dict[str, str]:
        # the indexing path: a lagging replica could make changed content look unchanged
        rows = ProductEmbedding.objects.using(_primary_alias()).filter(model_id=model_id, product_pk__in=list(pks))
        return dict(rows.values_list("product_pk", "content_hash"))

    def stored_pks(self, model_id: str | None = None, among: Sequence[str] | None = None) -> set[str]:
        stored = ProductEmbedding.objects.using(_primary_alias())
        rows = stored.all() if model_id is None else stored.filter(model_id=model_id)
        if among is not None:
            rows = rows.filter(product_pk__in=list(among))
        return set(rows.values_list("product_pk", flat=True).distinct())

    def stored_pks_after(self, after: str | None, limit: int) -> list[str]:
        # text order: the unique (product_pk, model_id) index's, so a page reads only its own rows
        rows = ProductEmbedding.objects.using(_primary_alias()).order_by("product_pk")
        if after is not None:
            rows = rows.filter(product_pk__gt=after)
        return list(rows.values_list("product_pk", flat=True).distinct()[: int(limit)])

    def model_ids(self) -> list[str]:
        products = ProductEmbedding.objects.values_list("model_id", flat=True).distinct()
        photos = ImageEmbedding.objects.values_list("model_id", flat=True).distinct()
        return sorted(set(products) | set(photos))

    def count(self, model_id: str, pks: Sequence[str] | None = None) -> int:
        rows = ProductEmbedding.objects.filter(model_id=model_id)
        return (rows if pks is None else rows.filter(product_pk__in=list(pks))).count()

    def count_photos(self, model_id: str) -> int:
        return ImageEmbedding.objects.filter(model_id=model_id).count()

    # --- reads for ranking -------------------------------------------------------------------

    def nearest(self, column: str, vector: np.ndarray, scope: Scope) -> list[tuple[str, float]]:
        alias = _read_alias()
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            found = self._run(cursor, self.nearest_query(column, vector, scope))
            return [(pk, float(sim)) for pk, sim in found]

    def nearest_query(self, column: str, vector: np.ndarray, scope: Scope) -> VectorQuery:
        """The statement :meth:`nearest` runs (for ``EXPLAIN`` in tests and the bench)."""
        model_id, limit, categories = scope.model_id, scope.limit, scope.categories
        photos = column in IMAGE_COLUMNS
        sql.check_column(column, PRODUCT_COLUMNS + IMAGE_COLUMNS)
        sql.check_model_id(model_id)
        dims = int(np.asarray(vector).size)
        literal = sql.to_literal(vector)
        alias, table = ("i.", f"{sql.IMAGE_TABLE} i") if photos else ("", sql.PRODUCT_TABLE)
        where = f"i.model_id = '{model_id}'" if photos else f"model_id = '{model_id}' AND {column} IS NOT NULL"
        params: list[sql.Param] = [literal]
        if categories and photos:
            table += f" JOIN {sql.PRODUCT_TABLE} p ON p.product_pk = i.product_pk AND p.model_id = i.model_id"
            where += " AND p.categories @> %s::varchar[]"
        elif categories:
            where += " AND categories @> %s::varchar[]"
        params += [list(categories)] if categories else []
        params.append(literal)
        # a product's several photos may all be near: fetch more photo rows than products, keep each one's best
        rows = int(limit) * 4 if photos else int(limit)
        statement = (
            f"SELECT {alias}product_pk, {sql.similarity(column, dims, alias)} AS sim FROM {table} "
            f"WHERE {where} ORDER BY {sql.distance(column, dims, alias)} LIMIT {rows}"
        )
        if photos:
            statement = (
                f"SELECT product_pk, max(sim) AS sim FROM ({statement}) t "
                f"GROUP BY product_pk ORDER BY sim DESC LIMIT {int(limit)}"
            )
        else:  # a relaxed iterative scan returns its rows nearly, not exactly, in order
            statement = f"SELECT product_pk, sim FROM ({statement}) t ORDER BY sim DESC"
        return VectorQuery(statement, params, _ef_search(scope.ef_search, rows), bool(categories))

    def explain(self, query: VectorQuery, *, analyze: bool = False) -> str:
        """PostgreSQL's plan of one vector statement, under the settings it runs with."""
        alias = _read_alias()
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
            found = self._run(
                cursor, VectorQuery(prefix + query.statement, query.params, query.ef_search, query.filtered)
            )
        plan = "\n".join(str(row[0]) for row in found)
        for branch in query.inner:  # each at its own setting, as the function runs it
            plan += f"\n\n-- {sql.NEAREST_FUNCTION} at hnsw.ef_search = {branch.ef_search}:\n"
            plan += self.explain(branch, analyze=analyze)
        return plan

    @staticmethod
    def _run(cursor: CursorWrapper, query: VectorQuery) -> list[tuple[Any, ...]]:
        cursor.execute("; ".join(sql.session_settings(query.ef_search, query.filtered)))  # one round trip
        cursor.execute(query.statement, query.params)
        return list(cursor.fetchall())

    def similarities(self, pks: Sequence[str], column: str, vector: np.ndarray, *, model_id: str) -> dict[str, float]:
        photos = column in IMAGE_COLUMNS
        sql.check_column(column, PRODUCT_COLUMNS + IMAGE_COLUMNS)
        if not pks:
            return {}
        dims = int(np.asarray(vector).size)
        table = sql.IMAGE_TABLE if photos else sql.PRODUCT_TABLE
        where = f"FROM {table} WHERE model_id = %s AND product_pk = ANY(%s) AND {column} IS NOT NULL"
        similarity = sql.similarity(column, dims)
        statement = (
            f"SELECT product_pk, max({similarity}) {where} GROUP BY product_pk"
            if photos
            else f"SELECT product_pk, {similarity} {where}"
        )
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(statement, [sql.to_literal(vector), model_id, list(pks)])
            return {pk: float(sim) for pk, sim in cursor.fetchall()}

    def product_fields(self, pks: Sequence[str], *, model_id: str) -> dict[str, dict[str, Any]]:
        return {pk: fields for pk, (fields, _) in self.product_rows(model_id, pks).items()}

    def product_flags(self, pks: Sequence[str], *, model_id: str) -> dict[str, list[str]]:
        # only the names, worked out in the database: a search's 350 candidates' whole fields and inferred
        # facets took 22 ms to read and decode on the demo, their true attributes' names 4 ms
        alias = router.db_for_read(ProductEmbedding)
        with connections[alias].cursor() as cursor:
            cursor.execute(sql.true_attributes(), [model_id, [str(pk) for pk in pks]])
            return {pk: list(names) for pk, names in cursor.fetchall() if names}

    def product_vector(self, pk: str, column: str, *, model_id: str) -> np.ndarray | None:
        sql.check_column(column, PRODUCT_COLUMNS)
        row = ProductEmbedding.objects.filter(product_pk=str(pk), model_id=model_id).values_list(column, flat=True)
        value = row.first()
        return None if value is None else as_array(value)

    def product_vectors(self, pks: Sequence[str], column: str, *, model_id: str) -> dict[str, np.ndarray]:
        sql.check_column(column, PRODUCT_COLUMNS)
        rows = ProductEmbedding.objects.filter(product_pk__in=[str(pk) for pk in pks], model_id=model_id)
        return {pk: as_array(value) for pk, value in rows.values_list("product_pk", column) if value is not None}

    def closest_products(
        self, pks: Sequence[str], among: Sequence[str], column: str, *, model_id: str
    ) -> dict[str, tuple[str, float]]:
        if not pks or not among:
            return {}
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(sql.closest_products(column), [model_id, [str(pk) for pk in pks], [str(pk) for pk in among]])
            return {pk: (other, float(sim)) for pk, other, sim in cursor.fetchall()}

    def siblings(self, pks: Sequence[str], *, model_id: str, categories: Sequence[str] = ()) -> dict[str, list[str]]:
        if not pks:
            return {}
        params: list[Any] = [model_id, [str(pk) for pk in pks]] + ([list(categories)] if categories else [])
        found: dict[str, list[str]] = {}
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(sql.siblings(bool(categories)), params)
            for pk, other in cursor.fetchall():
                found.setdefault(pk, []).append(other)
        return found

    def term_counts(self, model_id: str, terms: Sequence[str], *, cap: int) -> dict[str, int]:
        if not terms:
            return {}
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(sql.term_counts(model_id, cap), [list(terms)])
            return {term: int(count) for term, count in cursor.fetchall()}

    def titled(self, model_id: str, words: Sequence[Sequence[str]]) -> list[bool]:
        queries = [" | ".join(f"'{form}'" for form in forms if form.isalnum()) for forms in words]
        asked = sorted({query for query in queries if query})
        found: dict[str, bool] = {}
        if asked:
            with connections[_read_alias()].cursor() as cursor:
                cursor.execute(sql.titled(model_id), [asked])
                found = dict(cursor.fetchall())
        return [bool(found.get(query)) for query in queries]

    def titles_having(self, model_id: str, pks: Sequence[str], words: Sequence[Sequence[str]]) -> set[str]:
        groups = [" | ".join(f"'{form}'" for form in forms if form.isalnum()) for forms in words]
        if not pks or not groups or not all(groups):
            return set()
        every = " & ".join(f"({group})" for group in groups)
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(sql.titles_having(model_id), [[str(pk) for pk in pks], every])
            return {str(pk) for (pk,) in cursor.fetchall()}

    def products_by_code(
        self, model_id: str, code: str, *, categories: Sequence[str] = (), limit: int = 100, partial: bool = False
    ) -> list[str]:
        query = self.code_query(model_id, code, categories=categories, limit=limit, partial=partial)
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(*query)
            return [str(pk) for (pk,) in cursor.fetchall()]

    def code_query(
        self, model_id: str, code: str, *, categories: Sequence[str] = (), limit: int = 100, partial: bool = False
    ) -> tuple[str, dict[str, sql.Param]]:
        """The statement :meth:`products_by_code` runs (for ``EXPLAIN``) and its parameters."""
        code = code.lower()
        params: dict[str, sql.Param] = {
            "model_id": model_id,
            "code": code,
            "prefix": code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
        }
        if categories:
            params["categories"] = list(categories)
        return sql.products_by_code(limit, bool(categories), partial), params

    def having_every_word(self, model_id: str, pks: Sequence[str], texts: Sequence[str]) -> set[str]:
        texts = [text for text in texts if text.strip()]
        if not pks or not texts:
            return set()
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(sql.having_every_word(model_id), [[str(pk) for pk in pks], list(texts)])
            return {str(pk) for (pk,) in cursor.fetchall()}

    def candidates(self, request: CandidateRequest, scope: Scope) -> Candidates:
        query, names = self.candidates_query(request, scope)
        if query is None:
            return Candidates([], {}, {})
        alias = _read_alias()
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            found = _read_signal_rows(self._run(cursor, query), names, bool(request.field_keys))
        if "neighbours" in found.signals and not found.signals["neighbours"]:
            del found.signals["neighbours"]  # the leaders have no photos
        return found

    def candidates_query(self, request: CandidateRequest, scope: Scope) -> tuple[VectorQuery | None, list[str]]:
        """The one statement :meth:`candidates` runs (None: nothing to search) and its signal names."""
        model_id, limit, categories = scope.model_id, scope.limit, scope.categories
        dims = int(np.asarray(request.vector).size)
        literal = sql.to_literal(request.vector)
        rows = {column: sql.branch_rows(column, limit) for column in request.rank_columns.values()}
        deepest = max(rows.values(), default=limit)
        depths = {column: sql.branch_ef_search(n, deepest, scope.ef_search) for column, n in rows.items()}
        ef_search = sql.branch_ef_search(deepest, deepest, scope.ef_search)  # the deepest branch's
        # the shallower branches search only as deep as their rows need, each at its own setting
        shallower = {column: ef for column, ef in depths.items() if ef < ef_search}
        branches, pool_params = sql.candidate_branches(
            request.rank_columns,
            dims,
            literal,
            model_id=model_id,
            limit=limit,
            categories=categories,
            lexical_text=request.lexical_text,
            all_words=request.all_words,
            ef_search=shallower,
            common=common_words_in(request.all_words or request.lexical_text)
            if request.lexical_text and not categories
            else None,
        )
        inner = tuple(
            VectorQuery(
                sql.nearest_branch(column, dims, model_id, rows[column], bool(categories)),
                [*([list(categories)] if categories else []), literal],
                ef,
                bool(categories),
            )
            for column, ef in shallower.items()
        )
        parts = [f"SELECT product_pk FROM ({branch}) b{i}" for i, branch in enumerate(branches)]
        if request.extra_pks:
            parts.append("SELECT unnest(%s::varchar[]) AS product_pk")  # named: it may be the only part
            pool_params.append(list(request.extra_pks))
        if not parts:
            return None, []
        selects, params, names = sql.signal_selects(
            request.signal_columns, dims, literal, request.lexical_text, request.field_keys
        )
        aliased = [f"{expr} AS s{i}" for i, expr in enumerate(selects[:-1])] + [f"{selects[-1]} AS f"]
        statement = (
            f"WITH pool AS MATERIALIZED ({' UNION '.join(parts)}), "
            f"sig AS MATERIALIZED (SELECT p.product_pk, {', '.join(aliased)} FROM {sql.PRODUCT_TABLE} p "
            f"JOIN pool ON pool.product_pk = p.product_pk {sql.FACETS_JOIN + ' ' if request.field_keys else ''}"
            "WHERE p.model_id = %s) "
        )
        params = pool_params + params + [model_id]
        columns = "".join(f"sig.s{i}, " for i in range(len(names)))
        neighbours = request.neighbours
        if neighbours and any(name in names for name in neighbours.signals):
            used = [name for name in neighbours.signals if name in names]
            statement += sql.neighbour_ctes(
                [f"s{names.index(n)}" for n in used],
                [n == "lexical" for n in used],
                neighbours.top,
                neighbours.feature_dimensions,
                neighbours.rrf_k,
            )
            params += [model_id, model_id]
            statement += (
                f"SELECT sig.product_pk, {columns}near.sim, sig.f FROM sig "
                "LEFT JOIN near ON near.product_pk = sig.product_pk"
            )
            names = names + ["neighbours"]
        else:
            statement += f"SELECT sig.product_pk, {columns}sig.f FROM sig"
        return VectorQuery(statement + " ORDER BY 1", params, ef_search, bool(categories), inner), names

    # --- reads for autocomplete --------------------------------------------------------------

    def suggest_products(
        self,
        model_id: str,
        words: Sequence[str],
        *,
        typed: str,
        limit: int,
        stated: Sequence[StatedWords] = (),
    ) -> list[tuple[str, str]]:
        query = self.suggest_query(model_id, words, typed=typed, limit=limit, stated=stated)
        if query is None:
            return []
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(*query)
            return [(pk, title or "") for pk, title in cursor.fetchall()]

    def suggest_query(
        self, model_id: str, words: Sequence[str], *, typed: str, limit: int, stated: Sequence[StatedWords] = ()
    ) -> tuple[str, list[sql.Param]] | None:
        """The statement :meth:`suggest_products` runs (for ``EXPLAIN``); None: no word to match."""
        tsquery = sql.prefix_tsquery(words)
        if not tsquery:
            return None
        pattern = typed.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions: list[sql.Param] = []
        for condition in stated:
            named = "|".join(re.escape(word.lower()) for word in condition.words)
            unstated: list[sql.Param] = [condition.field] if condition.or_unstated else []
            conditions += [*unstated, condition.field, rf"\m(?:{named})\M"]
        return sql.suggest_products(limit, [condition.or_unstated for condition in stated]), [
            model_id,
            tsquery,
            *conditions,
            pattern,
            sql.prefix_tsquery(words, prefix=False),
        ]

    def category_counts(self, model_id: str) -> dict[str, int]:
        with connections[_read_alias()].cursor() as cursor:
            cursor.execute(sql.category_counts(), [model_id])
            return {path: int(count) for path, count in cursor.fetchall()}

    # --- reads for training ------------------------------------------------------------------

    def product_rows(
        self, model_id: str, pks: Sequence[str] | None = None
    ) -> dict[str, tuple[dict[str, Any], list[str]]]:
        where, params = "p.model_id = %s", [model_id]  # type: tuple[str, list[Any]]
        if pks is not None:
            where, params = f"{where} AND p.product_pk = ANY(%s::varchar[])", [model_id, [str(pk) for pk in pks]]
        alias = router.db_for_read(ProductEmbedding)
        # a server-side cursor (Django's for .iterator()): every product's row at 1,000,000 products
        with transaction.atomic(using=alias), connections[alias].chunked_cursor() as cursor:
            cursor.execute(sql.rows_with_facets(where), params)
            return {
                pk: (merged_fields(fields, inferred), list(categories or []))
                for pk, fields, inferred, categories in cursor
            }

    def text_vectors(self, model_id: str, pks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        rows = _of(ProductEmbedding.objects.filter(model_id=model_id), pks).values_list("product_pk", "text_vector")
        return {pk: as_array(vector) for pk, vector in rows.iterator() if vector is not None}

    def photo_vectors(
        self, model_id: str, pks: Sequence[str] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        rows = _of(ImageEmbedding.objects.filter(model_id=model_id), pks).order_by("product_pk", "position")
        grouped: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for pk, features, shared in rows.values_list("product_pk", "feature_vector", "shared_vector").iterator():
            grouped.setdefault(pk, []).append((as_array(features), as_array(shared)))
        return {pk: (np.stack([f for f, _ in pairs]), np.stack([s for _, s in pairs])) for pk, pairs in grouped.items()}


def merged_fields(fields: Any, inferred: Any) -> dict[str, Any]:
    """A row's fields with its inferred facets over them (``InferredFacets``): a facet of value None
    removes the key."""
    merged = dict(_as_json(fields) or {})
    for key, value in (_as_json(inferred) or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _as_json(value: Any) -> Any:
    # a raw cursor returns jsonb as text unless psycopg was told to parse it (Django's JSONField does that)
    return json.loads(value) if isinstance(value, str) else value


def _of(rows: QuerySet[Any], pks: Sequence[str] | None) -> QuerySet[Any]:
    """``rows`` of these products only (None: of all)."""
    return rows if pks is None else rows.filter(product_pk__in=list(pks))


def _read_signal_rows(rows: Iterable[Sequence[Any]], names: list[str], with_fields: bool) -> Candidates:
    found = Candidates(pool=[], signals={name: {} for name in names}, fields={})
    stored: list[Any] = []
    for row in rows:
        pk = row[0]
        found.pool.append(pk)
        for name, value in zip(names, row[1:-1]):
            if value is not None:
                found.signals[name][pk] = float(value)
        if with_fields:
            stored.append(row[-1])
    if with_fields:
        found.fields = dict(zip(found.pool, _json_values(stored)))
    return found


def _json_values(values: list[Any]) -> list[Any]:
    """Each JSON text parsed ({} for None; other values as they are), the texts in one ``json.loads``:
    464 candidates' fields took 2.3 ms one by one, 1.3 ms as one array."""
    texts = [value for value in values if isinstance(value, str)]
    parsed = iter(json.loads(f"[{','.join(texts)}]"))
    return [next(parsed) if isinstance(value, str) else (value or {}) for value in values]
