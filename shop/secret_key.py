"""The demo's ``SECRET_KEY``: a random key kept in ``$MMSEARCH_DATA_DIR/secret_key``, never in the repository.

``python -m shop.secret_key`` creates the file when it is missing (``make demo`` runs it) and prints its
path. The settings read the file when ``DJANGO_SECRET_KEY`` is not set; a production deployment sets
``DJANGO_SECRET_KEY`` instead.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "secret_key"


def key_file(data: Path) -> Path:
    return data / FILE_NAME


def read_secret_key(data: Path) -> str:
    """The key stored in ``data``, or "" when there is none."""
    try:
        return key_file(data).read_text().strip()
    except OSError:
        return ""


def ensure_secret_key(data: Path) -> Path:
    """Create ``data/secret_key`` (mode 0600, 50 random URL-safe bytes) unless it holds a key; return its path."""
    path = key_file(data)
    if read_secret_key(data):
        return path
    data.mkdir(parents=True, exist_ok=True)
    # written aside, then linked into place: of several processes starting at once (web, worker, beat)
    # exactly one key wins and every process reads that one
    spare = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50) + "\n")
    try:
        os.link(spare, path)
    except FileExistsError:
        if not read_secret_key(data):  # an empty file left behind: replace it
            os.replace(spare, path)
    finally:
        spare.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    from shop.runtime import data_dir

    print(ensure_secret_key(data_dir()))
