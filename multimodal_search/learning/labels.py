"""Training labels: facts about some products that are used for training only, never indexed.

A shop often knows more about its older products than its new ones (a colour
field, a gender, a category), or has labelled a sample by hand. ``mmsearch_train
--labels FILE`` reads such facts from a JSON-lines file, one product per line::

    {"sku": "MH01-Black", "color": "Black", "gender": "Men", "category": "Men > Tops > Hoodies"}

Every key but ``sku`` is optional; ``text`` replaces the whole caption. The
labels become the photo captions the cross-modal head learns from (so photos
of unlabelled products are placed by what they show: colour, gender, kind of
product) and the facts the re-ranker's pseudo-queries are judged by. They are
not added to any product's searchable text, and held-out products are still
skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEYS = ("text", "title", "color", "gender", "category", "material")


class LabelError(ValueError):
    """A labels file that cannot be read (one line, shown to users)."""


@dataclass(frozen=True)
class Label:
    sku: str
    text: str = ""
    title: str = ""
    color: str = ""
    gender: str = ""
    category: str = ""
    material: str = ""

    @property
    def leaf(self) -> str:
        return self.category.split(">")[-1].strip()

    def caption(self, base: str) -> str:
        """The text a photo of this product is trained against: ``text``, or ``base`` plus the facts."""
        if self.text:
            return self.text
        facts = [
            f"{name}: {value}."
            for name, value in (
                ("Colour", self.color),
                ("Gender", self.gender),
                ("Category", self.category),
                ("Material", self.material),
            )
            if value and value.lower() not in base.lower()
        ]
        return " ".join([self.title or "", base, *facts]).strip()


def _label(row: Mapping[str, Any], line: int) -> Label:
    if not isinstance(row, dict):
        raise LabelError(f"line {line}: expected a JSON object")
    sku = row.get("sku")
    if not isinstance(sku, (str, int)) or str(sku).strip() == "":
        raise LabelError(f'line {line}: missing "sku"')
    values = {}
    for key in KEYS:
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if not isinstance(value, (str, int, float)):
            raise LabelError(f'line {line}: "{key}" must be text')
        values[key] = str(value).strip()
    return Label(sku=str(sku).strip(), **values)


def load_labels(path: str | os.PathLike[str]) -> dict[str, Label]:
    """sku -> label, from a JSON-lines file (blank lines are skipped).

    Raises:
        LabelError: the file is missing or a line is not a label.
    """
    labels: dict[str, Label] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LabelError(f"labels file {path}, line {number}: not valid JSON ({exc.msg})") from None
                try:
                    label = _label(row, number)
                except LabelError as exc:
                    raise LabelError(f"labels file {path}, {exc}") from None
                labels[label.sku] = label
    except FileNotFoundError:
        raise LabelError(f"cannot read labels file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"cannot read labels file {path}: {exc}") from None
    return labels
