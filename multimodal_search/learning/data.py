"""What every training stage shares: the hold-out rule, the validation split and the error users see."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection


class TrainingError(ValueError):
    """Nothing to train on, or a bad hold-out file (one line, shown to users)."""


def load_holdout(path: str | os.PathLike[str]) -> set[str]:
    """Identifiers (skus or parent skus) to leave out of training.

    The file is JSON: a list of identifiers, ``{"heldout": [...]}``, or a split
    file ``{"parents": {parent_sku: "heldout" | "train"}}``.

    Raises:
        TrainingError: the file is missing, not JSON, or of another shape.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise TrainingError(f"cannot read holdout file {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read holdout file {path}: not valid JSON ({exc})") from None
    if isinstance(data, dict):
        if isinstance(data.get("heldout"), list):
            data = data["heldout"]
        elif isinstance(data.get("parents"), dict):
            data = [key for key, split in data["parents"].items() if split == "heldout"]
    if not isinstance(data, list) or not all(isinstance(x, (str, int)) for x in data):
        raise TrainingError(
            f'holdout file {path}: expected a list of identifiers, {{"heldout": [...]}} '
            f'or {{"parents": {{sku: "heldout"|"train"}}}}'
        )
    return {str(x) for x in data}


def is_held_out(sku: str, group: str | None, holdout: Collection[str]) -> bool:
    """A product is held out when its sku or its group (parent sku) is listed."""
    return sku in holdout or (group not in (None, "") and str(group) in holdout)


def in_validation(key: str) -> bool:
    """Whether a product (or group) is in the validation fifth that learned parts are checked on."""
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 5 == 0
