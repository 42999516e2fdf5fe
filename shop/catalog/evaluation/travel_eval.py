"""Evaluation sets that do not look like Luma, made from the Luma data (``make_travel_eval``).

``write_travel_sets(records, out_dir, seed=...)`` writes four folders, each with a ``queries.jsonl``
for ``mmsearch_evaluate`` (and the same split as ``luma_eval``: parents held out by seed):

* ``luma/``: the standard Luma set (``luma_eval.write_eval_set``), the reference columns.
* ``merged/``: *merged colours*. Each parent product is ONE SKU (its parent SKU) whose photos are
  every colour variant's photos and whose colour field lists them all ("Black, Blue, Red"), as many
  shops sell one product in several colours. Queries: the photos of one colour that the Luma set
  withholds (every alternate photo it picked; for a parent none of whose colours has one, one
  colour's main photo by seed), of parents sold in two colours or more, withheld from this catalogue
  too. Grades: the product 2, other products of the same leaf category 1 (what a shopper wants
  next is the same kind of product). ``catalog_{full,minimal}.jsonl`` and ``labels_train.jsonl``
  as in ``luma_eval``; ``split.json`` is Luma's (a merged SKU is its parent SKU).
* ``shopper/``: *shopper photos*. Each photo query of the Luma set (withheld from the Luma
  catalogues) becomes ``variants`` phone photos (``shopper_photos.shopper_photo``: new backdrop
  from the product's own mask, re-lit, cropped off-centre, scaled down, re-compressed, sometimes
  EXIF-rotated), written under ``shopper/photos/``. Grades as the Luma photo queries (the item 2,
  its other colours 1); searched against the Luma catalogues.
* ``negative/``: things the catalogue does not sell: shopper phrases and nonsense words, and drawn
  photos (``shopper_photos.unsold_photo``). Each line has ``"negative": true`` and empty grades;
  ``mmsearch_evaluate`` reports the share that returns nothing and the top score. A phrase whose
  product noun appears in a catalogue title or category is dropped (so a catalogue that does sell
  it gets no false negative).
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from shop.catalog.evaluation import luma_eval
from shop.catalog.evaluation.luma_eval import HELDOUT, TRAIN, EvalSet, PhotoQuery
from shop.catalog.evaluation.shopper_photos import BACKDROPS, UNSOLD_OBJECTS, shopper_photo, unsold_photo
from shop.catalog.importers.records import CatalogRecord

NEGATIVE = "negative"
DEFAULT_VARIANTS = 2
UNSOLD_PHOTOS_PER_KIND = 2

#: (query, the noun that must not be sold) — homeware, kitchen, beauty, books, shoes, electronics, food
UNSOLD_PHRASES: tuple[tuple[str, str], ...] = (
    ("womens running shoes", "shoe"),
    ("leather ankle boots", "boot"),
    ("kids sandals", "sandal"),
    ("stainless steel saucepan", "saucepan"),
    ("non stick frying pan", "pan"),
    ("electric kettle", "kettle"),
    ("espresso machine", "espresso"),
    ("ceramic coffee mug", "mug"),
    ("dinner plates set of 4", "plate"),
    ("velvet throw pillow", "pillow"),
    ("linen sofa cushion", "cushion"),
    ("bedside table lamp", "lamp"),
    ("cotton bath towel", "towel"),
    ("matte red lipstick", "lipstick"),
    ("hydrating face serum", "serum"),
    ("paperback crime novel", "novel"),
    ("childrens picture book", "book"),
    ("wireless earbuds", "earbud"),
    ("usb c laptop charger", "charger"),
    ("dry dog food", "dog"),
    ("garden hose 50 ft", "hose"),
    ("potted houseplant", "houseplant"),
    ("wooden dining chair", "chair"),
    ("xyzzy", "xyzzy"),
    ("plugh frobozz", "frobozz"),
    ("qwxv zorblat", "zorblat"),
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def sold_words(records: Iterable[CatalogRecord]) -> set[str]:
    """Words of every title and category, with a trailing "s" also removed (a plural sells its singular)."""
    words: set[str] = set()
    for record in records:
        for word in _words(f"{record.title} {record.category or ''}"):
            words.update({word, word.rstrip("s")})
    return words


# --- (a) merged colours -------------------------------------------------------------------------------


def merged_records(records: list[CatalogRecord]) -> list[CatalogRecord]:
    """One record per parent: the first item's facts, every item's photos, every colour listed."""
    groups: dict[str, list[CatalogRecord]] = defaultdict(list)
    for record in records:
        groups[record.parent_sku or record.sku].append(record)
    merged = []
    for parent, items in groups.items():
        first = items[0]
        colours = list(dict.fromkeys(item.color for item in items if item.color))
        photos = list(dict.fromkeys(image for item in items for image in item.images))
        # one main photo (the first colour's); the other colours' main photos become alternates
        images = [(path, "alternate" if kind == "main" and n else kind) for n, (path, kind) in enumerate(photos)]
        merged.append(
            CatalogRecord(
                sku=parent,
                parent_sku=parent,
                title=first.title,
                description=first.description,
                category=first.category,
                color=", ".join(colours),
                gender=first.gender,
                material=first.material,
                sizes=first.sizes,
                price=first.price,
                attributes=first.attributes,
                images=images,
            )
        )
    return merged


def merged_photo_queries(eval_set: EvalSet) -> list[PhotoQuery]:
    """Photos of one colour of each parent sold in two colours or more (see the module docstring)."""
    by_parent: dict[str, list[CatalogRecord]] = defaultdict(list)
    for record in eval_set.records:
        by_parent[record.parent_sku or record.sku].append(record)
    luma_queries = defaultdict(list)
    for query in eval_set.photo_queries:
        luma_queries[query.parent_sku].append(query)
    queries: list[PhotoQuery] = []
    for parent, items in by_parent.items():
        if len({item.color for item in items}) < 2:
            continue
        if luma_queries[parent]:
            queries.extend(luma_queries[parent])
            continue
        rng = random.Random(luma_eval._hash_key(eval_set.seed, f"merged:{parent}"))
        item = rng.choice([item for item in items if item.images])
        queries.append(PhotoQuery(item.sku, parent, item.images[0][0], "main", eval_set.split[parent]))
    return queries


def merged_query_rows(eval_set: EvalSet, queries: list[PhotoQuery], out_dir: Path) -> list[dict[str, Any]]:
    """The merged product 2, other products of its leaf category 1."""
    leaf = {(r.parent_sku or r.sku): (r.category or "") for r in eval_set.records}
    by_leaf: dict[str, list[str]] = defaultdict(list)
    for parent, category in sorted(leaf.items()):
        by_leaf[category].append(parent)
    rows = []
    for query in queries:
        graded = {query.parent_sku: 2}
        graded.update({p: 1 for p in by_leaf[leaf[query.parent_sku]] if p != query.parent_sku})
        rows.append(
            {
                "qid": f"merged-{query.sku}-{query.path.stem}",
                "kind": "image",
                "query": luma_eval._relative(query.path, out_dir),
                "graded": graded,
                "split": query.split,
                "view": query.view,
            }
        )
    return rows


def write_merged(eval_set: EvalSet, out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    queries = merged_photo_queries(eval_set)
    withheld = {query.path for query in queries}
    records = merged_records(eval_set.records)
    for variant, minimal in (("full", False), ("minimal", True)):
        luma_eval._write_jsonl(
            out_dir / f"catalog_{variant}.jsonl",
            (luma_eval.catalogue_row(r, out_dir, withheld, minimal=minimal) for r in records),
        )
    merged_set = EvalSet(seed=eval_set.seed, records=records, split=eval_set.split, photo_queries=[])
    luma_eval._write_jsonl(out_dir / "labels_train.jsonl", luma_eval.label_rows(merged_set))
    split = {"seed": eval_set.seed, "parents": eval_set.split}
    (out_dir / "split.json").write_text(json.dumps(split, indent=1) + "\n", encoding="utf-8")
    rows = merged_query_rows(eval_set, queries, out_dir)
    luma_eval._write_jsonl(out_dir / "queries.jsonl", rows)
    colours = [r.color.count(",") + 1 for r in records if r.color]
    return {
        "products": len(records),
        "multi_colour_products": sum(1 for n in colours if n > 1),
        "queries": _count_splits(rows),
    }


# --- (b) shopper photos ---------------------------------------------------------------------------------


def write_shopper(eval_set: EvalSet, out_dir: Path, *, variants: int = DEFAULT_VARIANTS) -> dict[str, Any]:
    """``variants`` phone photos per held-out Luma photo query; backdrops taken in turn (cream, grey, busy).

    Only held-out queries get shopper photos (the evaluation reads no other; each costs a decode).
    """
    photos = out_dir / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    base_rows = luma_eval.photo_query_rows(eval_set, out_dir)
    rows = []
    turn = 0
    for query, base in zip(eval_set.photo_queries, base_rows):
        if query.split != HELDOUT:
            continue
        qid = base["qid"]
        with Image.open(query.path) as opened:
            studio = opened.convert("RGB")
        for variant in range(variants):
            backdrop = BACKDROPS[turn % len(BACKDROPS)]
            turn += 1
            data, recipe = shopper_photo(studio, seed=f"{eval_set.seed}:{qid}:{variant}", backdrop=backdrop)
            name = f"{query.path.stem}-{variant}.jpg"
            (photos / name).write_bytes(data)
            rows.append(
                {
                    **base,
                    "qid": f"shopper-{qid.removeprefix('photo-')}-{variant}",
                    "query": f"photos/{name}",
                    "source": base["query"],
                    "recipe": recipe.as_dict(),
                }
            )
    luma_eval._write_jsonl(out_dir / "queries.jsonl", rows)
    return {"queries": _count_splits(rows), "photos": len(rows)}


# --- (c) negatives ------------------------------------------------------------------------------------


def negative_rows(records: list[CatalogRecord], out_dir: Path, *, seed: int) -> list[dict[str, Any]]:
    """Text and photo queries for things the catalogue does not sell (photos written under ``photos/``)."""
    sold = sold_words(records)
    rows: list[dict[str, Any]] = []
    for index, (text, noun) in enumerate(UNSOLD_PHRASES, start=1):
        if noun in sold or noun.rstrip("s") in sold:
            continue
        rows.append({"qid": f"neg-text-{index:02d}", "kind": "text", "query": text, "negative": True})
    photos = out_dir / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for kind in UNSOLD_OBJECTS:
        for number in range(UNSOLD_PHOTOS_PER_KIND):
            name = f"{kind}-{number}.jpg"
            (photos / name).write_bytes(unsold_photo(kind, seed=f"{seed}:{kind}:{number}"))
            rows.append({"qid": f"neg-photo-{kind}-{number}", "kind": "image", "query": f"photos/{name}"})
            rows[-1]["negative"] = True
    for row in rows:
        row.update(graded={}, split=NEGATIVE)
    return rows


def write_negative(records: list[CatalogRecord], out_dir: Path, *, seed: int) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = negative_rows(records, out_dir, seed=seed)
    luma_eval._write_jsonl(out_dir / "queries.jsonl", rows)
    return {"text": sum(r["kind"] == "text" for r in rows), "image": sum(r["kind"] == "image" for r in rows)}


def _count_splits(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {split: sum(1 for r in rows if r["split"] == split) for split in (HELDOUT, TRAIN)}


def write_travel_sets(
    records: Iterable[CatalogRecord],
    out_dir: Path,
    *,
    seed: int = luma_eval.DEFAULT_SEED,
    variants: int = DEFAULT_VARIANTS,
) -> dict[str, Any]:
    """Write ``luma/``, ``merged/``, ``shopper/`` and ``negative/`` under ``out_dir``; return their counts.

    Args:
        records: the Luma catalogue (``read_luma``).
        out_dir: target folder (created); everything generated goes under it.
        seed: split, photo choice and photo-change seed; a seed always gives the same files.
        variants: shopper photos per Luma photo query.
    """
    out_dir = Path(out_dir)
    eval_set = luma_eval.build_eval_set(records, seed=seed)
    summary = {
        "seed": seed,
        "luma": luma_eval.write_eval_set(eval_set, out_dir / "luma")["queries"],
        "merged": write_merged(eval_set, out_dir / "merged"),
        "shopper": write_shopper(eval_set, out_dir / "shopper", variants=variants),
        "negative": write_negative(eval_set.records, out_dir / "negative", seed=seed),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
