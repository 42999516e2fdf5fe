"""Start a real Celery worker process against the test database and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A worker (``pool`` "solo" by default; "prefork" runs one child); ``args``/``env`` add options, e.g. ``-B``."""

    def __init__(
        self,
        log_path: Path,
        encoder: str = "packaged",
        pool: str = "solo",
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        self.encoder = encoder
        self.pool = pool
        self.args = args
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> WorkerProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_TEST_DB_NAME": connection.settings_dict["NAME"],
            "MMSEARCH_TEST_ENCODER": self.encoder,
            "MMSEARCH_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            **self.env,
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 (open for the worker's whole life)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "shop",
                "worker",
                "-Q",
                "embeddings",
                "--pool",
                self.pool,
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *self.args,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a drill can kill the worker and its children
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if "ready." in self.log():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"worker did not become ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "_log", None):
            self._log.close()


def purge_broker() -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def wait_for(predicate, timeout: float = 120, interval: float = 0.5, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
