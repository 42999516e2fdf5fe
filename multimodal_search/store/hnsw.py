"""The HNSW indexes of the pgvector store: what exists, what indexing creates, and rebuilds.

Every vector column of an encoder version has one partial HNSW index (``sql.index_statement``), built
with the ``HNSW_M`` / ``HNSW_EF_CONSTRUCTION`` settings. Indexing (:func:`ensure`, inside a worker's
task) only creates the indexes a version lacks: for a new version they are empty and cost nothing (a first
``mmsearch_reindex`` writes its rows without them instead and builds them at its end). An
index built with other parameters is kept there, and a missing one over a large table (a new
``INDEX_VERSION``, a dropped index) is not built there, because building a large one takes longer than a
task may run (about 10 minutes for the pool column at 1,000,000 products) and blocks writes meanwhile.
:func:`rebuild` (``manage.py mmsearch_indexes --build``) builds what is missing and applies changed
parameters with ``CREATE INDEX CONCURRENTLY`` (writes and searches go on), then drops the other definitions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connection, connections, transaction
from django.db.backends.utils import CursorWrapper

from multimodal_search.conf import search_settings
from multimodal_search.store import sql
from multimodal_search.store.base import BUILT, BuildProgress, IndexInfo

logger = logging.getLogger(__name__)

#: seconds between two reads of a concurrent build's progress
PROGRESS_SECONDS = 0.5
#: indexing builds a missing index in its own task only over at most this many rows of the version in a
#: table (writes to the table wait meanwhile). Measured here with the server's 64 MB
#: ``maintenance_work_mem``: all seven over 10,000 rows in 30 s, over 20,000 in 101 s (the photo-feature
#: graph outgrew the memory: 48 s of it). Larger builds are :func:`rebuild`'s (``mmsearch_indexes --build``).
TASK_BUILD_ROWS = 10_000


def build_settings() -> tuple[int, int]:
    """``(m, ef_construction)`` of new HNSW indexes: the ``HNSW_M`` and ``HNSW_EF_CONSTRUCTION`` settings."""
    return int(search_settings.HNSW_M), int(search_settings.HNSW_EF_CONSTRUCTION)


def indexes(model_id: str, cursor: CursorWrapper | None = None) -> list[IndexInfo]:
    """Every HNSW index of ``model_id`` in the database, whatever its definition."""
    current, earlier = set(sql.index_names(model_id, *build_settings())), set(sql.old_index_names(model_id))
    if cursor is None:
        with connection.cursor() as own:
            return indexes(model_id, own)
    cursor.execute(*sql.model_indexes(model_id))
    found = []
    for name, table, options, valid, size in cursor.fetchall():
        params = dict(str(option).split("=", 1) for option in options or [])
        found.append(
            IndexInfo(
                name=name,
                table=table,
                column=sql.column_of_index(table, name),
                m=int(params["m"]) if "m" in params else None,
                ef_construction=int(params["ef_construction"]) if "ef_construction" in params else None,
                valid=bool(valid),
                bytes=int(size),
                current=name in current,
                earlier=name in earlier,
            )
        )
    return _in_order(found)


def _in_order(found: list[IndexInfo]) -> list[IndexInfo]:
    return sorted(found, key=lambda info: (info.table, info.column, not info.current, info.name))


def ensure(model_id: str, dimensions: int, feature_dimensions: int, *, any_size: bool = False) -> list[str]:
    """Create the indexes ``model_id`` lacks (in one transaction); returns the names created.

    A column whose index was built with other parameters keeps it (logged: :func:`rebuild` applies
    them); a column without a usable index gets one with the configured parameters, unless the
    version has more than ``TASK_BUILD_ROWS`` rows in its table and not ``any_size``: that build is left
    to :func:`rebuild` and logged as an error (searches may read the column whole until then). Earlier
    definitions (``sql.INDEX_VERSION``) and invalid leftovers of a failed concurrent build are dropped
    after the builds (a drop locks the table against searches until the transaction ends, a build only
    against writes); an earlier definition stays while its column's build waits."""
    built = build_settings()
    with transaction.atomic(), connection.cursor() as cursor:
        # building an index over a large table is maintenance, not a request: no statement timeout
        cursor.execute("SET LOCAL statement_timeout = 0")
        present = indexes(model_id, cursor)
        invalid = {info.name for info in present if not info.valid}
        usable = _usable(present)
        missing = [
            (table, column, name, statement)
            for table, column, name, statement in _statements(model_id, dimensions, feature_dimensions, built)
            if (table, column) not in usable
        ]
        large = set() if any_size else _tables_over(cursor, model_id, {table for table, *_ in missing}, TASK_BUILD_ROWS)
        wanted = [(name, statement) for table, _column, name, statement in missing if table not in large]
        waiting = [(table, column) for table, column, *_ in missing if table in large]
        created = []
        for name, statement in wanted:
            if name not in invalid:
                cursor.execute(statement)
                created.append(name)
        for info in present:
            if info.earlier and info.valid and (info.table, info.column) not in waiting:
                cursor.execute(f"DROP INDEX IF EXISTS {info.name}")
        cursor.execute(sql.BUILDS_RUNNING)
        if invalid and not cursor.fetchone()[0]:
            # an index being built concurrently is invalid until it is done: never drop one then (the
            # drop would wait for the build, and every search would wait behind the drop)
            for name in sorted(invalid):
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
            for name, statement in wanted:
                if name in invalid:
                    cursor.execute(statement)
                    created.append(name)
    if waiting:
        logger.error(
            "HNSW indexes of %s are missing for %s, whose tables hold more than %s of its rows: until "
            "`manage.py mmsearch_indexes --build` builds them (concurrently, with progress; a build that large "
            "does not fit in an indexing task), searches may read those columns whole",
            model_id,
            ", ".join(f"{table.removeprefix('multimodal_search_')}.{column}" for table, column in waiting),
            f"{TASK_BUILD_ROWS:,}",
        )
    others = sorted({info.name for info in present if info.valid and not info.current and not info.earlier})
    if others:
        logger.warning(
            "HNSW indexes of %s were built with other parameters than HNSW_M=%d, HNSW_EF_CONSTRUCTION=%d "
            "(%s); they are kept: `manage.py mmsearch_indexes --build` rebuilds them",
            model_id,
            *built,
            ", ".join(others),
        )
    return created


def _usable(present: list[IndexInfo]) -> set[tuple[str, str]]:
    """``(table, column)`` of the vector columns some valid index of the current definition covers."""
    return {(info.table, info.column) for info in present if info.valid and not info.earlier}


def _tables_over(cursor: CursorWrapper, model_id: str, tables: set[str], rows: int) -> set[str]:
    """Those of ``tables`` holding more than ``rows`` rows of ``model_id`` (counted up to ``rows + 1``)."""
    over = set()
    for table in sorted(tables):
        cursor.execute(sql.version_rows(table, rows), [model_id])
        if int(cursor.fetchone()[0]) > rows:
            over.add(table)
    return over


def status(model_id: str) -> list[IndexInfo]:
    """:func:`indexes`, and a ``missing`` entry for each vector column the version has rows for but no
    usable index of (what :func:`ensure` leaves to :func:`rebuild`)."""
    with connection.cursor() as cursor:
        found = indexes(model_id, cursor)
        usable = _usable(found)
        lacking = [(table, column) for table, column in sql.vector_columns() if (table, column) not in usable]
        with_rows = _tables_over(cursor, model_id, {table for table, _ in lacking}, 0)
    m, ef_construction = build_settings()
    missing = [
        IndexInfo(
            name=sql.index_name(table, column, model_id, m=m, ef_construction=ef_construction),
            table=table,
            column=column,
            m=None,
            ef_construction=None,
            valid=False,
            bytes=0,
            current=True,
            exists=False,
        )
        for table, column in lacking
        if table in with_rows
    ]
    return _in_order(found + missing)


def _statements(
    model_id: str, dims: int, feature_dims: int, built: tuple[int, int], concurrently: bool = False
) -> list[tuple[str, str, str, str]]:
    """``(table, column, index name, CREATE INDEX)`` of every vector column."""
    return [
        (
            table,
            column,
            sql.index_name(table, column, model_id, m=built[0], ef_construction=built[1]),
            sql.index_statement(
                table,
                column,
                model_id,
                feature_dims if column == "feature_vector" else dims,
                *built,
                concurrently=concurrently,
            ),
        )
        for table, column in sql.vector_columns()
    ]


def rebuild(
    model_id: str,
    dimensions: int,
    feature_dimensions: int,
    progress: Callable[[BuildProgress], None] | None = None,
    memory: str | None = None,
) -> tuple[list[str], list[str]]:
    """Build every index of ``model_id`` the configured parameters name that does not exist yet, with
    ``CREATE INDEX CONCURRENTLY`` (searches and writes go on), then drop its other indexes; returns
    (built, dropped). ``progress`` is called about every ``PROGRESS_SECONDS`` during each build, and
    with the phase ``BUILT`` when its index is ready;
    ``memory``: the builds' ``maintenance_work_mem`` ("2GB"; None: the server's). An HNSW build whose
    graph outgrows it goes on much more slowly on disk (pgvector says so in a notice).
    Must run outside a transaction. A build that fails leaves an invalid index, dropped by the next run."""
    if connection.in_atomic_block:
        raise RuntimeError("HNSW indexes are rebuilt concurrently, which cannot run inside a transaction")
    built_with = build_settings()
    built: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(sql.REBUILD_LOCK)
        if not cursor.fetchone()[0]:
            raise RuntimeError("another rebuild of the HNSW indexes is running; wait for it to finish")
        cursor.execute("SET statement_timeout = 0")
        try:
            if memory:
                cursor.execute("SELECT set_config('maintenance_work_mem', %s, false)", [memory])
            present = indexes(model_id, cursor)
            for info in present:
                if info.current and not info.valid:  # a failed build's leftover: IF NOT EXISTS would keep it
                    cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {info.name}")
            have = {info.name for info in present if info.valid}
            wanted = _statements(model_id, dimensions, feature_dimensions, built_with, concurrently=True)
            for _table, _column, name, statement in wanted:
                if name not in have:
                    _with_progress(cursor, name, statement, progress)
                    built.append(name)
            dropped = [info.name for info in indexes(model_id, cursor) if not info.current]
            for name in dropped:
                cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        finally:
            cursor.execute("RESET statement_timeout; RESET maintenance_work_mem")
            cursor.execute(sql.REBUILD_UNLOCK)
    return built, dropped


def _with_progress(
    cursor: CursorWrapper, name: str, statement: str, progress: Callable[[BuildProgress], None] | None
) -> None:
    if progress is None:
        cursor.execute(statement)
        return
    cursor.execute("SELECT pg_backend_pid()")
    pid = int(cursor.fetchone()[0])
    alias = connection.alias
    finished = threading.Event()

    def watch() -> None:
        # a thread has its own connection to the same database, closed when the build ends
        try:
            while not finished.wait(PROGRESS_SECONDS):
                with connections[alias].cursor() as watcher:
                    watcher.execute(sql.BUILD_PROGRESS, [pid])
                    row = watcher.fetchone()
                if row is not None:
                    phase, done, total, unit = row
                    progress(BuildProgress(name, str(phase), int(done or 0), int(total or 0), str(unit)))
        finally:
            connections[alias].close()

    thread = threading.Thread(target=watch, name=f"progress of {name}", daemon=True)
    thread.start()
    try:
        cursor.execute(statement)
    finally:
        finished.set()
        thread.join()
    progress(BuildProgress(name, BUILT, 1, 1, ""))


def drop(model_id: str) -> None:
    """Drop every index of ``model_id``, whatever its definition."""
    with connection.cursor() as cursor:
        for info in indexes(model_id, cursor):
            cursor.execute(f"DROP INDEX IF EXISTS {info.name}")
