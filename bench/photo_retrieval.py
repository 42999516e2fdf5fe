"""Photo -> product and text -> photo retrieval on the Luma catalogue, without a database.

Usage: .venv/bin/python bench/photo_retrieval.py [--luma DIR] [--epochs 60] [--seed 0] [--json OUT]

Photo queries: every alternate/back photo (never a main photo) of the 463 Luma items (one
per parent x colour). Leave-one-out: the query photo is not in the gallery, its product
keeps its other photos, products are scored by their best photo (as
``store.pgvector.PgvectorStore.nearest`` on photos does). R@1/R@5 are shown with their ratio to raw
EfficientNet cosine measured in the same run.

Held-out: parents with sha1(parent sku) % 10 < 3 (30%). Trained variants are measured
twice: "held-out" trains on the other parents only and asks the held-out queries;
"all (cross-fit)" splits parents into 3 folds by the same hash (fold 0 = held-out),
trains on two and asks the third, so no query's product was ever trained on. "all
(trained on all)" is what a deployed catalogue sees for its own photos (optimistic).

Text -> photo (held-out products only, gallery = every product, best photo): R@10 of a
product's own text, and nDCG@10 of "<colour> <leaf category>" queries (relevant: same
leaf category and colour).

Backbone views and encoder outputs are cached under .data/bench/ (keyed by the photo
files and the encoder recipe), so reruns take seconds plus training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from django.utils.html import strip_tags  # noqa: E402

from multimodal_search.encoders.features import COLOUR_RECIPE  # noqa: E402
from multimodal_search.encoders.heads import project  # noqa: E402
from multimodal_search.encoders.packaged import BACKBONE_DIMENSIONS, PackagedEncoder  # noqa: E402
from multimodal_search.learning import heads, photos, projection  # noqa: E402
from shop.catalog.importers.luma import read_luma  # noqa: E402

DEFAULT_LUMA = ROOT.parent / "shared" / "datasets" / "magento-luma"


def n2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def bucket(parent: str) -> int:
    return int(hashlib.sha1(parent.encode()).hexdigest(), 16) % 10


def record_text(record) -> str:
    """The text ``shop.catalog.search.ProductAdapter.get_text`` builds for an imported record."""
    parts = [record.title]
    if record.color:
        parts.append(f"Colour: {record.color}.")
    if record.category:
        parts.append(f"Category: {record.category}.")
    for label, value in (("Gender", record.gender), ("Material", record.material)):
        if value:
            parts.append(f"{label}: {value}.")
    for key, value in sorted((record.attributes or {}).items()):
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if value not in ("", None):
            parts.append(f"{key.replace('_', ' ').capitalize()}: {value}.")
    description = " ".join(strip_tags(record.description).split())
    if description:
        parts.append(description)
    return " ".join(parts)


class Catalogue:
    def __init__(self, folder: Path) -> None:
        self.records = list(read_luma(folder))
        self.parents = [r.parent_sku or r.sku for r in self.records]
        self.paths, owners, kinds = [], [], []
        for index, record in enumerate(self.records):
            for path, kind in record.images:
                self.paths.append(str(path))
                owners.append(index)
                kinds.append(kind)
        self.photo_item = np.array(owners)
        self.kinds = kinds
        self.starts = np.searchsorted(self.photo_item, np.arange(len(self.records)))
        self.fold = np.array([0 if b < 3 else (1 if b < 6 else 2) for b in map(bucket, self.parents)])
        self.queries = np.array([i for i, kind in enumerate(kinds) if kind != "main"])

    def photo_mask(self, item_mask: np.ndarray) -> np.ndarray:
        return item_mask[self.photo_item]


def photo_recall(
    cat: Catalogue, feats: np.ndarray, query_items: np.ndarray | None = None, gallery: np.ndarray | None = None
) -> dict[str, float]:
    """Leave-one-out R@1/R@5 (fair ties) of alternate/back photos whose item is in ``query_items``.

    ``gallery`` (a photo mask) limits the photos products are matched by (default: all but the query).
    """
    feats = n2(feats.astype(np.float32))
    queries = cat.queries if query_items is None else cat.queries[query_items[cat.photo_item[cat.queries]]]
    scores = feats[queries] @ feats.T
    scores[np.arange(len(queries)), queries] = -np.inf
    if gallery is not None:
        scores[:, ~gallery] = -np.inf
    per_item = np.maximum.reduceat(scores, cat.starts, axis=1)
    truth = per_item[np.arange(len(queries)), cat.photo_item[queries]]
    greater = (per_item > truth[:, None]).sum(1)
    equal = (per_item == truth[:, None]).sum(1) - 1
    return {f"R@{k}": float(np.clip((k - greater) / (equal + 1), 0, 1).mean()) for k in (1, 5)} | {
        "queries": len(queries)
    }


def cross_fit(cat: Catalogue, make: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """All queries, each answered by features trained without its fold's parents."""
    totals = {"R@1": 0.0, "R@5": 0.0}
    for fold in range(3):
        feats = make(cat.fold != fold)
        result = photo_recall(cat, feats, cat.fold == fold)
        for key in totals:
            totals[key] += result[key] * result["queries"]
    return {key: value / len(cat.queries) for key, value in totals.items()} | {"queries": len(cat.queries)}


def text_metrics(
    cat: Catalogue,
    shared: np.ndarray,
    text_vectors: np.ndarray,
    prompts: np.ndarray,
    prompt_relevant: list[np.ndarray],
    items: np.ndarray,
) -> dict[str, float]:
    """Own-text R@10 and category x colour nDCG@10 for held-out products (gallery: all)."""
    r10 = heads.text_to_image_recall(text_vectors, n2(shared), cat.photo_item, k=10, queries=np.flatnonzero(items))
    scores = prompts @ n2(shared).T
    per_item = np.maximum.reduceat(scores, cat.starts, axis=1)
    ndcg = []
    discounts = 1 / np.log2(np.arange(2, 12))
    for row, relevant in enumerate(prompt_relevant):
        top = np.argsort(-per_item[row])[:10]
        gain = np.isin(top, relevant).astype(float) @ discounts[: len(top)]
        ideal = discounts[: min(10, len(relevant))].sum()
        ndcg.append(gain / ideal)
    return {"text R@10": r10, "cat x colour nDCG@10": float(np.mean(ndcg))}


def cached(path: Path, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def progress_printer(label: str, total: int) -> Callable[[int], None]:
    state = {"done": 0, "last": 0.0}

    def tick(n: int) -> None:
        state["done"] += n
        if time.monotonic() - state["last"] > 10 or state["done"] >= total:
            state["last"] = time.monotonic()
            print(f"  {label}: {state['done']}/{total}", flush=True)

    return tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--luma", type=Path, default=Path(os.environ.get("DEMO_CATALOG", DEFAULT_LUMA)))
    parser.add_argument("--cache", type=Path, default=ROOT / ".data" / "bench")
    parser.add_argument("--epochs", type=int, default=heads.DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "photo_retrieval.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cat = Catalogue(args.luma)
    held_items = cat.fold == 0
    print(
        f"{len(cat.records)} items, {len(cat.paths)} photos, {len(cat.queries)} alternate/back queries "
        f"({int(held_items[cat.photo_item[cat.queries]].sum())} held out)"
    )

    encoder = PackagedEncoder(device="cpu")
    digests = [photos.file_digest(p) for p in cat.paths]
    recipe = f"{encoder.model_id}|{photos.VIEW_RECIPE}|{photos.CROPS_PER_PHOTO}|{COLOUR_RECIPE}"
    key = hashlib.sha1(("|".join(digests) + recipe).encode()).hexdigest()[:12]

    def encode_views() -> dict[str, np.ndarray]:
        views, colours, _classes, failed = photos.photo_views(
            encoder,
            cat.paths,
            digests,
            cache_dir=args.cache / "views",
            progress=progress_printer("backbone views", len(cat.paths)),
        )
        assert not failed, failed
        return {"views": views, "colours": colours}

    def encode_pair() -> dict[str, np.ndarray]:
        from multimodal_search.adapters import ImageRef

        shared, feats = [], []
        tick = progress_printer("encoder (encode_image_pair)", len(cat.paths))
        for start in range(0, len(cat.paths), 16):
            images = [ImageRef(key="", path=p).open() for p in cat.paths[start : start + 16]]
            s, f = encoder.encode_image_pair(images)
            shared.append(s)
            feats.append(f)
            tick(len(images))
        return {"shared": np.concatenate(shared), "features": np.concatenate(feats)}

    def encode_texts() -> dict[str, np.ndarray]:
        leaf = [(r.category or "").split(" > ")[-1] for r in cat.records]
        pairs = sorted({(r.color, leaf[i]) for i, r in enumerate(cat.records) if held_items[i] and r.color and leaf[i]})
        return {
            "texts": encoder.encode_text([record_text(r) for r in cat.records]),
            "prompts": encoder.encode_text([f"{c} {label}".lower() for c, label in pairs]),
            "prompt_keys": np.array([f"{c}|{label}" for c, label in pairs]),
        }

    t = time.perf_counter()
    view_data = cached(args.cache / f"views-{key}.npz", encode_views)
    views = view_data["views"]
    pair = cached(args.cache / f"pair-{key}.npz", encode_pair)
    texts = cached(args.cache / f"texts-{key}.npz", encode_texts)
    print(f"features ready in {time.perf_counter() - t:.0f} s")
    colour = n2(pair["features"][:, BACKBONE_DIMENSIONS:])  # colour_weight 1: the unit colour part
    colour_drift = float(np.abs(colour - view_data["colours"]).max())
    leaf = [(r.category or "").split(" > ")[-1] for r in cat.records]
    relevant = [
        np.array([i for i, r in enumerate(cat.records) if f"{r.color}|{leaf[i]}" == k]) for k in texts["prompt_keys"]
    ]

    rows: list[dict] = []

    def add(name: str, all_result: dict, held_result: dict, note: str = "") -> None:
        rows.append({"variant": name, "all": all_result, "held_out": held_result, "note": note})

    def static(name: str, feats: np.ndarray, note: str = "") -> None:
        add(name, photo_recall(cat, feats), photo_recall(cat, feats, held_items), note)

    v0, v1 = views[0], views[1]
    static("raw EfficientNet (baseline)", v0)
    static("(b) + flip TTA", n2(v0 + v1))
    static("(c) multi-crop mean (photo, mirror, 3 crops)", n2(views.sum(0)))
    static("colour histogram only", colour)
    static("(a) raw + colour", np.concatenate([n2(v0), colour], 1))
    static("(a)+(b) flip + colour = encoder features, no head", pair["features"], "stored by the encoder")
    # equal-weight concat of (flip-mean, colour) is what the encoder does; check it matches
    recipe = n2(np.concatenate([n2(v0 + v1), colour], 1))
    drift = float(np.abs(recipe - pair["features"]).max())

    timings: dict[str, float] = {}
    train_items = ~held_items

    def visual_features(train_items: np.ndarray, colour_weight: float = 1.0, flip: bool = True) -> np.ndarray:
        mask = cat.photo_mask(train_items)
        t0 = time.perf_counter()
        net, _ = heads.train_visual_projection(
            views[:, mask],
            np.unique(cat.photo_item[mask], return_inverse=True)[1],
            colour[mask],
            colour_weight=colour_weight,
            epochs=args.epochs,
            seed=args.seed,
        )
        timings.setdefault("visual projection (train split)", time.perf_counter() - t0)
        projected = n2(project(net, v0) + (project(net, v1) if flip else 0))
        return projected if colour_weight == 0 else np.concatenate([projected, colour_weight * colour], 1)

    decisions: list[str] = []

    def auto_features(photos: np.ndarray) -> np.ndarray:
        """What mmsearch_train --visual auto stores: projection only when it wins its own validation."""
        item_index = np.unique(cat.photo_item[photos], return_inverse=True)[1]
        keys = [cat.records[i].sku for i in np.unique(cat.photo_item[photos])]
        check = projection.validate_visual_projection(
            views[:, photos], colour[photos], item_index, keys, epochs=args.epochs, seed=args.seed
        )
        decisions.append(("kept" if check["keep"] else "not used") + ": " + check["reason"])
        if not check["keep"]:
            return pair["features"]
        net, _ = heads.train_visual_projection(
            views[:, photos], item_index, colour[photos], epochs=args.epochs, seed=args.seed
        )
        return projection.stored_features(views, colour, 1.0, net)

    for name, weight in (("(d) trained visual projection + colour", 1.0), ("(d) trained visual projection only", 0.0)):
        held = photo_recall(cat, visual_features(train_items, weight), held_items)
        fitted = cross_fit(cat, lambda items, w=weight: visual_features(items, w))
        add(name + " [all: cross-fit]", fitted, held, "no query's product trained on")
    held = photo_recall(cat, visual_features(train_items, flip=False), held_items)
    add(
        "(d) projection + colour, no flip TTA [all: cross-fit]",
        cross_fit(cat, lambda items: visual_features(items, flip=False)),
        held,
        "PackagedEncoder(flip=False)",
    )
    add(
        "(d) --visual auto [all: cross-fit]",
        cross_fit(cat, lambda items: auto_features(cat.photo_mask(items))),
        photo_recall(cat, auto_features(cat.photo_mask(train_items)), held_items),
        "projection kept only when it wins a validation fifth",
    )
    t0 = time.perf_counter()
    everything = visual_features(np.ones(len(cat.records), bool))
    timings["visual projection (all)"] = time.perf_counter() - t0
    add(
        "(d) visual projection + colour [all: trained on all]",
        photo_recall(cat, everything),
        photo_recall(cat, everything, held_items),
        "optimistic: queries' products trained on",
    )

    # Strict protocol (as bench/relevance.sh's judged set): every alternate/back photo is a
    # query and withheld, so products are matched by their main photo only and training
    # never sees a second view of a product (only the photo, its mirror image and crops).
    mains = np.array([kind == "main" for kind in cat.kinds])
    strict_rows: list[dict] = []
    for name, feats in (
        ("raw EfficientNet (baseline)", v0),
        ("flip + colour = encoder features, no head", pair["features"]),
    ):
        strict_rows.append({"variant": name, "held_out": photo_recall(cat, feats, held_items, mains)})
    main_train = cat.photo_mask(train_items) & mains
    net, _ = heads.train_visual_projection(
        views[:, main_train],
        np.unique(cat.photo_item[main_train], return_inverse=True)[1],
        colour[main_train],
        epochs=args.epochs,
        seed=args.seed,
    )
    strict = np.concatenate([n2(project(net, v0) + project(net, v1)), colour], 1)
    strict_rows.append(
        {
            "variant": "visual projection (main photos, train split) + colour",
            "held_out": photo_recall(cat, strict, held_items, mains),
        }
    )
    strict_rows.append(
        {
            "variant": "--visual auto (main photos, train split)",
            "held_out": photo_recall(cat, auto_features(main_train), held_items, mains),
        }
    )

    # text -> photo
    text_rows: list[dict] = []
    zero_shot = pair["shared"]
    text_rows.append(
        {
            "variant": "zero-shot (ImageNet labels)",
            **text_metrics(cat, zero_shot, texts["texts"], texts["prompts"], relevant, held_items),
        }
    )
    mask = cat.photo_mask(train_items)
    item_index = np.unique(cat.photo_item[mask], return_inverse=True)[1]
    for text_views in (2, views.shape[0]):
        t0 = time.perf_counter()
        head, _losses = heads.train_text_head(
            views[:, mask],
            item_index,
            texts["texts"][train_items],
            epochs=args.epochs,
            seed=args.seed,
            text_views=text_views,
        )
        timings[f"text head, {text_views} views (train split)"] = time.perf_counter() - t0
        head_shared = n2(project(head, v0) + project(head, v1))
        for blend in (1.0, 0.85, 0.7, 0.5):
            shared = n2(blend * head_shared + (1 - blend) * zero_shot)
            text_rows.append(
                {
                    "variant": f"head ({text_views} views) blend {blend}",
                    **text_metrics(cat, shared, texts["texts"], texts["prompts"], relevant, held_items),
                }
            )

    base = rows[0]
    print()
    print(
        f"Photo -> product, leave-one-out ({base['all']['queries']} queries; held-out "
        f"{base['held_out']['queries']}); ratio = R / raw EfficientNet in this run"
    )
    header = f"{'variant':58s} {'all R@1':>8s} {'R@5':>6s} {'x R@1':>6s} {'x R@5':>6s} | {'held R@1':>8s} {'R@5':>6s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        a, h = row["all"], row["held_out"]
        print(
            f"{row['variant']:58s} {a['R@1']:8.3f} {a['R@5']:6.3f} {a['R@1'] / base['all']['R@1']:6.2f} "
            f"{a['R@5'] / base['all']['R@5']:6.2f} | {h['R@1']:8.3f} {h['R@5']:6.3f}"
        )
    print(f"(encoder features vs bench recipe: max abs difference {drift:.1e}; colours {colour_drift:.1e})")
    print("--visual auto decisions: " + " | ".join(decisions))
    print()
    print("Strict: gallery = main photos only, training without second views (held-out queries)")
    for row in strict_rows:
        h = row["held_out"]
        print(f"{row['variant']:58s} R@1 {h['R@1']:.3f} R@5 {h['R@5']:.3f}")
    print()
    print(
        f"Text -> photo, held-out products ({int(held_items.sum())} texts, {len(relevant)} category x colour queries)"
    )
    for row in text_rows:
        print(
            f"{row['variant']:40s} text R@10 {row['text R@10']:.3f}   cat x colour nDCG@10 {row['cat x colour nDCG@10']:.3f}"
        )
    print()
    print("Training times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"Total {time.perf_counter() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "photo": rows,
                "photo_strict": strict_rows,
                "text": text_rows,
                "visual_auto_decisions": decisions,
                "timings_s": timings,
                "epochs": args.epochs,
                "seed": args.seed,
                "model_id": encoder.model_id,
                "recipe_drift": drift,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()
