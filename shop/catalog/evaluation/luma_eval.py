"""Judged evaluation set for the Luma catalogue: split, two catalogues, text and photo queries.

``build_eval_set(records)`` decides everything in memory; ``write_eval_set(...)``
writes the folder that ``mmsearch_evaluate`` and ``import_catalog`` read:

* ``split.json``: parent SKU -> "heldout" | "train" (about 30 % held out within
  each leaf category, chosen by sha1 of seed and parent SKU), plus the held-out
  and train item SKUs (for ``mmsearch_train``-style exclusion).
* ``catalog_full.jsonl``: every item with category, colour, gender, material and
  attributes. ``catalog_minimal.jsonl``: the same items with title (the parent's
  name, no size or colour suffix) and description only. Photo paths are relative
  to the folder. Query photos are withheld from both catalogues.
* ``labels_train.jsonl``: colour, gender, category and material of the train
  items only (``mmsearch_train --labels``), so the minimal variant can train on
  what a shop knows about its older products while indexing title + description.
* ``queries.jsonl``: text queries (see ``shopper_queries``) and photo queries
  (one alternate or back photo per item that has one, never a main photo; the
  item itself is graded 2, its other colours 1). Every line has ``qid, kind, query, graded, split``.

Split of a query: a photo query has its item's split. A text query is "heldout"
when at least one of its grade-2 items belongs to a held-out parent (the same as
tagging it with the split of the first held-out seed item that generates it).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shop.catalog.evaluation.shopper_queries import generate_text_queries, item_facts
from shop.catalog.importers.records import CatalogRecord

HELDOUT = "heldout"
TRAIN = "train"
HELDOUT_FRACTION = 0.3
DEFAULT_SEED = 13
MAX_EXACT = 30


@dataclass(frozen=True)
class PhotoQuery:
    sku: str
    parent_sku: str
    path: Path
    view: str
    split: str


@dataclass
class EvalSet:
    """Everything one generator run decided (nothing written yet)."""

    seed: int
    records: list[CatalogRecord]
    split: dict[str, str]
    photo_queries: list[PhotoQuery]
    text_queries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def withheld(self) -> set[Path]:
        return {q.path for q in self.photo_queries}

    def item_split(self, record: CatalogRecord) -> str:
        return self.split[record.parent_sku or record.sku]


def _hash_key(seed: int, value: str) -> str:
    return hashlib.sha1(f"{seed}:{value}".encode()).hexdigest()


def _leaf(record: CatalogRecord) -> str:
    return record.category or ""


def split_parents(
    records: Iterable[CatalogRecord], *, seed: int = DEFAULT_SEED, fraction: float = HELDOUT_FRACTION
) -> dict[str, str]:
    """Assign every parent SKU to "heldout" or "train", stratified by leaf category.

    Within each category the parents are ordered by ``sha1(f"{seed}:{parent}")`` and the
    first ``round(fraction * n)`` (at least one) are held out, so the split does not
    depend on file order or on Python's string hashing.

    Returns:
        parent SKU -> split name.
    """
    by_category: dict[str, set[str]] = defaultdict(set)
    seen: set[str] = set()
    for record in records:
        parent = record.parent_sku or record.sku
        if parent not in seen:  # a parent belongs to its first item's category
            seen.add(parent)
            by_category[_leaf(record)].add(parent)
    split: dict[str, str] = {}
    for category in sorted(by_category):
        parents = sorted(by_category[category], key=lambda p: _hash_key(seed, p))
        held = max(1, round(fraction * len(parents)))
        for index, parent in enumerate(parents):
            split[parent] = HELDOUT if index < held else TRAIN
    return dict(sorted(split.items()))


def choose_photo_queries(
    records: list[CatalogRecord], split: dict[str, str], *, seed: int = DEFAULT_SEED
) -> list[PhotoQuery]:
    """Alternate and back photos used as queries: one per item that has any (picked by seed).

    The query photo is withheld from the catalogues; the item keeps its main
    photo and its other alternates, so a query is searched against the full
    catalogue minus itself (leave-one-out). A photo that is any item's main
    photo is never used.
    """
    mains = {record.images[0][0] for record in records if record.images}
    queries: list[PhotoQuery] = []
    for record in records:
        parent = record.parent_sku or record.sku
        alternates = [(p, kind) for p, kind in record.images[1:] if kind != "main" and p not in mains]
        if not alternates:
            continue
        rng = random.Random(_hash_key(seed, record.sku))
        alternates = [rng.choice(alternates)]
        queries.extend(PhotoQuery(record.sku, parent, path, kind, split[parent]) for path, kind in alternates)
    return queries


def build_eval_set(records: Iterable[CatalogRecord], *, seed: int = DEFAULT_SEED) -> EvalSet:
    """Decide the split, the withheld photos and all judged queries."""
    records = list(records)
    split = split_parents(records, seed=seed)
    eval_set = EvalSet(
        seed=seed, records=records, split=split, photo_queries=choose_photo_queries(records, split, seed=seed)
    )
    held_skus = {r.sku for r in records if eval_set.item_split(r) == HELDOUT}
    facts = [item_facts(record) for record in records]
    for index, query in enumerate(generate_text_queries(facts, seed=seed, max_exact=MAX_EXACT), start=1):
        exact = [sku for sku, grade in query.graded.items() if grade == 2]
        held = sum(1 for sku in exact if sku in held_skus)
        eval_set.text_queries.append(
            {
                "qid": f"text-{index:04d}",
                "kind": "text",
                "query": query.text,
                "graded": query.graded,
                "split": HELDOUT if held else TRAIN,
                "facets": query.spec.facets,
                "exact": len(exact),
                "exact_heldout": held,
            }
        )
    return eval_set


# --- writing --------------------------------------------------------------------------


def _relative(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()


def catalogue_row(record: CatalogRecord, out_dir: Path, withheld: set[Path], *, minimal: bool) -> dict[str, Any]:
    """One line of the generic jsonl catalogue (see ``shop.catalog.importers.jsonl``)."""
    images = [{"path": _relative(path, out_dir), "kind": kind} for path, kind in record.images if path not in withheld]
    row: dict[str, Any] = {
        "sku": record.sku,
        "parent_sku": record.parent_sku or record.sku,
        "title": record.title,
        "description": record.description,
        "category": None if minimal else record.category,
        "color": None if minimal else (record.color or None),
        "price": float(record.price) if record.price is not None else None,
        "images": images,
    }
    if not minimal:
        row.update(
            gender=record.gender or None,
            material=record.material or None,
            sizes=record.sizes or None,
            attributes=record.attributes,
        )
    return row


def label_rows(eval_set: EvalSet) -> Iterable[dict[str, Any]]:
    """Training labels (``mmsearch_train --labels``) of the *train* items only: what a shop
    knows about its older products. Held-out items never appear."""
    for record in eval_set.records:
        if eval_set.item_split(record) == TRAIN:
            yield {
                "sku": record.sku,
                "color": record.color or None,
                "gender": record.gender or None,
                "category": record.category or None,
                "material": record.material or None,
            }


def photo_query_rows(eval_set: EvalSet, out_dir: Path) -> list[dict[str, Any]]:
    """Lines of the photo queries: the item graded 2, its other colours 1."""
    siblings: dict[str, list[str]] = defaultdict(list)
    for record in eval_set.records:
        siblings[record.parent_sku or record.sku].append(record.sku)
    rows = []
    for query in eval_set.photo_queries:
        graded = {sku: 1 for sku in sorted(siblings[query.parent_sku]) if sku != query.sku}
        graded = {query.sku: 2, **graded}
        rows.append(
            {
                "qid": f"photo-{query.sku}-{query.path.stem}",
                "kind": "image",
                "query": _relative(query.path, out_dir),
                "graded": graded,
                "split": query.split,
                "view": query.view,
            }
        )
    return rows


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_eval_set(eval_set: EvalSet, out_dir: Path) -> dict[str, Any]:
    """Write split.json, both catalogues and queries.jsonl; return the counts.

    Args:
        eval_set: what ``build_eval_set`` decided.
        out_dir: target folder (created); photo paths are written relative to it.

    Returns:
        counts per file, kind and split (also written to ``summary.json``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    withheld = eval_set.withheld
    items_by_split: dict[str, list[str]] = {HELDOUT: [], TRAIN: []}
    for record in eval_set.records:
        items_by_split[eval_set.item_split(record)].append(record.sku)
    split_doc = {
        "seed": eval_set.seed,
        "fraction_heldout": HELDOUT_FRACTION,
        "parents": eval_set.split,
        "heldout_skus": sorted(items_by_split[HELDOUT]),
        "train_skus": sorted(items_by_split[TRAIN]),
    }
    (out_dir / "split.json").write_text(json.dumps(split_doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for variant, minimal in (("full", False), ("minimal", True)):
        _write_jsonl(
            out_dir / f"catalog_{variant}.jsonl",
            (catalogue_row(r, out_dir, withheld, minimal=minimal) for r in eval_set.records),
        )
    _write_jsonl(out_dir / "labels_train.jsonl", label_rows(eval_set))
    queries = eval_set.text_queries + photo_query_rows(eval_set, out_dir)
    _write_jsonl(out_dir / "queries.jsonl", queries)
    summary = summarise(eval_set, queries)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def summarise(eval_set: EvalSet, queries: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of items, parents, photos and queries per kind and split."""
    parents = Counter(eval_set.split.values())
    items = Counter(eval_set.item_split(r) for r in eval_set.records)
    by_kind = Counter(f"{q['kind']}/{q['split']}" for q in queries)
    categories = Counter(
        (record.category or "-").split(" > ")[0]
        for record in eval_set.records
        if eval_set.item_split(record) == HELDOUT
    )
    views = Counter(f"{q.view}/{q.split}" for q in eval_set.photo_queries)
    return {
        "seed": eval_set.seed,
        "items": len(eval_set.records),
        "parents": dict(sorted(parents.items())),
        "items_by_split": dict(sorted(items.items())),
        "heldout_items_by_top_category": dict(sorted(categories.items())),
        "withheld_photos": len(eval_set.withheld),
        "photo_views": dict(sorted(views.items())),
        "queries": dict(sorted(by_kind.items())),
    }


def summary_text(summary: dict[str, Any], out_dir: Path) -> str:
    """A short README-style report of one generator run."""
    q = summary["queries"]
    lines = [
        f"# Luma evaluation set (seed {summary['seed']}) in {out_dir}",
        "",
        f"- items: {summary['items']} ({summary['items_by_split']}); parents: {summary['parents']}",
        f"- held-out items per top category: {summary['heldout_items_by_top_category']}",
        "- text queries: heldout {} / train {}".format(q.get("text/heldout", 0), q.get("text/train", 0)),
        "- photo queries: heldout {} / train {} (views: {})".format(
            q.get("image/heldout", 0), q.get("image/train", 0), summary["photo_views"]
        ),
        f"- query photos withheld from both catalogues: {summary['withheld_photos']}",
        "- files: split.json, catalog_full.jsonl, catalog_minimal.jsonl, labels_train.jsonl (train items'"
        " facts, for mmsearch_train --labels), queries.jsonl, summary.json",
    ]
    return "\n".join(lines)
