"""What the evaluation commands share: writing their numbers as JSON (``--json``). Not a command (``_``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, OutputWrapper


def write_json(path: str, results: Any, stdout: OutputWrapper) -> Path:
    """Write ``results`` to ``path`` (folders made as needed) and say so; a readable CommandError when it cannot."""
    out = Path(path).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc}") from exc
    stdout.write(f"wrote {out}")
    return out
