"""The vector indexes of the encoder version searches read: what exists, and rebuilding them with the
configured build parameters (``manage.py mmsearch_indexes``). See ``store.hnsw`` for why indexing
itself never replaces an existing index."""

from __future__ import annotations

from collections.abc import Callable

from multimodal_search.encoders import BaseEncoder
from multimodal_search.services.query import current_encoder
from multimodal_search.store import get_store
from multimodal_search.store.base import BuildProgress, IndexInfo


def vector_indexes(model_id: str | None = None) -> tuple[str, list[IndexInfo]]:
    """The encoder version (default: the one searches read) and its indexes."""
    model_id = model_id or current_encoder()[1]
    return model_id, get_store().index_status(model_id)


def rebuild_vector_indexes(
    progress: Callable[[BuildProgress], None] | None = None,
    memory: str | None = None,
) -> tuple[str, list[str], list[str]]:
    """Build the indexes of the current encoder version that the configured parameters name and drop its
    others, without blocking searches or indexing; returns (model_id, built, dropped). ``memory``: what a
    build may use ("2GB"; None: the database's own setting)."""
    encoder, model_id = current_encoder()
    built, dropped = get_store().rebuild_indexes(
        model_id, encoder.dimensions, encoder.feature_dimensions, progress, memory
    )
    return model_id, built, dropped


def missing_vector_indexes(model_id: str) -> list[str]:
    """The indexes ``model_id`` lacks on columns that hold rows (searches read those columns whole)."""
    return [info.name for info in get_store().index_status(model_id) if not info.exists]


def ensure_vector_indexes(encoder: BaseEncoder | None = None) -> str:
    """Create the missing indexes of ``encoder``'s version (default: the current one) inside the caller's
    transaction, whatever their tables' size (``CREATE INDEX CONCURRENTLY``, which
    :func:`rebuild_vector_indexes` runs, cannot run in one; writes to those tables wait for the build).
    Returns the version."""
    encoder = encoder or current_encoder()[0]
    get_store().ensure_indexes(encoder.model_id, encoder.dimensions, encoder.feature_dimensions, any_size=True)
    return encoder.model_id
