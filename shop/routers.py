"""Search reads from PostgreSQL read replicas (README "Scaling out").

``DATABASE_REPLICA_URLS`` (comma-separated) adds one alias per replica (``replica1``, ``replica2``, …,
see :func:`replica_databases`), lists them in ``DATABASE_REPLICAS`` and turns on :class:`ReplicaRouter`. Only the search tables are read from a replica: the vectors
(``ProductEmbedding``, ``ImageEmbedding``), which the store reads through ``router.db_for_read``.
A replica lags its primary by a little; a search that misses a product saved a second ago is fine,
but the indexing path is not: it reads the content hashes, the outbox and the products on the
primary (the store pins those reads to ``db_for_write``), and every write goes to the primary.
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

# models whose reads may lag the primary: only what a search request reads in bulk
REPLICA_MODELS = frozenset({"multimodal_search.productembedding", "multimodal_search.imageembedding"})


def replica_aliases() -> list[str]:
    """The database aliases that are read replicas (``settings.DATABASE_REPLICAS``)."""
    return list(getattr(settings, "DATABASE_REPLICAS", []) or [])


class ReplicaRouter:
    """Search-table reads from a random replica; everything else, and every write, on ``default``."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        replicas = replica_aliases()
        if replicas and model._meta.label_lower in REPLICA_MODELS:
            return random.choice(replicas)
        return None  # the next router, then default

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # replicas hold the primary's data: a row read from one may relate to a row from another
        return True

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        # a streaming replica is read-only and receives the schema from its primary
        return False if db in replica_aliases() else None


def replica_databases(urls: list[str]) -> dict[str, dict[str, Any]]:
    """``DATABASES`` entries for these replica URLs: ``replica1``, ``replica2``, … configured like ``default``.

    In tests each one mirrors ``default`` (Django's ``TEST["MIRROR"]``): no test database is created
    for it, and its connection opens the default test database.
    """
    from shop import runtime

    return {
        f"replica{number}": {**runtime.database_config(url), "TEST": {"MIRROR": DEFAULT_DB_ALIAS}}
        for number, url in enumerate(urls, start=1)
    }
