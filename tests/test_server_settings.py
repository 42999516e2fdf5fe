"""The embedded PostgreSQL runs with ``shop.runtime.SERVER_SETTINGS`` (shared buffers sized for the HNSW indexes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connection

from shop import runtime

pytestmark = pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="a server of the shop's own")


@pytest.mark.django_db
def test_embedded_server_runs_with_the_settings() -> None:
    with connection.cursor() as cursor:
        for name, value in runtime.server_settings().items():
            cursor.execute(f"SHOW {name}")
            row = cursor.fetchone()
            assert row is not None and row[0] == value, name


def test_a_bad_override_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSEARCH_PG_WORK_MEM", "1GB'; DROP")
    with pytest.raises(RuntimeError, match="MMSEARCH_PG_WORK_MEM"):
        runtime.server_settings()


def test_settings_are_written_once_and_included(tmp_path: Path) -> None:
    pgdata = tmp_path
    assert runtime._write_settings(pgdata) is False  # no postgresql.conf yet: before the first start
    (pgdata / "postgresql.conf").write_text("max_connections = 100\n")
    assert runtime._write_settings(pgdata) is True
    assert runtime._write_settings(pgdata) is False
    conf = (pgdata / "postgresql.conf").read_text()
    assert conf.count(f"include_if_exists = '{runtime.SETTINGS_FILE}'") == 1
    assert "shared_buffers = '1GB'" in (pgdata / runtime.SETTINGS_FILE).read_text()
