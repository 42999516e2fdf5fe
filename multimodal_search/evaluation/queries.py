"""Judged query files (JSON Lines): reading and checking them.

One object per line::

    {"qid": "q1", "kind": "text", "query": "black hoodie", "graded": {"MH01-Black": 2, "MH02-Black": 1}}
    {"qid": "q2", "kind": "image", "query": "photos/mh01-gray_back.jpg", "graded": {"MH01-Gray": 2}}

``graded`` maps a product's public id (``adapter.to_result(product)["sku"]``) to a
grade: 2 = exactly what was asked, 1 = acceptable; unlisted products are 0. A photo
path is relative to the query file. Optional ``split`` ("heldout", "train", ...)
lets a run report one part only; other keys are ignored.

A *negative* query asks for something the catalogue does not sell: ``"negative": true`` and
``graded`` empty (or absent). It is not scored by relevance; the runner reports the share of
negatives that return no result and their top scores::

    {"qid": "n1", "kind": "text", "query": "espresso machine", "negative": true, "graded": {}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from multimodal_search.evaluation.metrics import target_items

KINDS = ("text", "image")


class QueryFileError(ValueError):
    """A query file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class JudgedQuery:
    """One line of a query file."""

    qid: str
    kind: str
    query: str
    graded: dict[str, int]
    split: str | None = None
    line: int = 0
    negative: bool = False

    @property
    def photo_path(self) -> Path:
        return Path(self.query)


def load_queries(path: str | Path) -> list[JudgedQuery]:
    """Read and check a judged query file (see the module docstring).

    Args:
        path: a ``.jsonl`` file; photo paths inside are relative to its folder.

    Returns:
        the queries in file order; photo paths made absolute.

    Raises:
        QueryFileError: unreadable file, or a bad line (the message names the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise QueryFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryFileError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    base = path.resolve().parent
    queries: list[JudgedQuery] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            query = _parse_line(line, base, number)
        except ValueError as exc:
            raise QueryFileError(f"{path} line {number}: {exc}") from None
        if query.qid in seen:
            raise QueryFileError(f"{path} line {number}: qid {query.qid!r} already used on line {seen[query.qid]}")
        seen[query.qid] = number
        queries.append(query)
    if not queries:
        raise QueryFileError(f"{path}: no queries")
    return queries


def _parse_line(line: str, base: Path, number: int) -> JudgedQuery:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    qid, kind, query = data.get("qid"), data.get("kind"), data.get("query")
    if not isinstance(qid, str) or not qid.strip():
        raise ValueError("qid must be a non-empty string")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {json.dumps(kind)}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string")
    if kind == "image":
        photo = (base / query).resolve()
        if not photo.is_file():
            raise ValueError(f"photo not found: {query}")
        query = str(photo)
    negative = data.get("negative", False)
    if not isinstance(negative, bool):
        raise ValueError("negative must be true or false")
    graded = data.get("graded")
    if negative:
        if graded:
            raise ValueError("a negative query has no graded items")
        graded = {}
    elif not isinstance(graded, dict) or not graded:
        raise ValueError('graded must be a non-empty object like {"SKU": 2}')
    for item, grade in graded.items():
        if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= 3:
            raise ValueError(f"grade of {item!r} must be an integer 0-3, not {json.dumps(grade)}")
    if not negative and not target_items(graded):
        raise ValueError("graded has no item with grade 1 or more")
    split = data.get("split")
    if split is not None and not isinstance(split, str):
        raise ValueError("split must be a string")
    return JudgedQuery(
        qid=qid.strip(),
        kind=kind,
        query=query.strip() if kind == "text" else query,
        graded=dict(graded),
        split=split,
        line=number,
        negative=negative,
    )
