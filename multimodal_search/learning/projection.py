"""Train the packaged encoder's heads on the catalogue's own photos and texts.

``mmsearch_train`` calls :func:`train_projection_head` -> :func:`train_heads`, which

1. reads every searchable product through the adapter (minus a hold-out list),
2. reads each photo as backbone views and colours (``learning.photos``),
3. trains the *cross-modal* head (backbone features -> text space; a product's photos against its
   own text) and, when it proves itself on a validation fifth of the products, the *visual*
   projection (photos and crops of one product against each other), both with a symmetric
   multi-positive InfoNCE loss (see ``learning.heads``),
4. saves both in one versioned head file (``learning.publishing``). The command first indexes the
   catalogue for the new version with a staging encoder, then publishes the file; running
   encoders pick it up within seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from multimodal_search.adapters import BaseProductAdapter, get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.encoders import get_encoder
from multimodal_search.encoders.heads import Progress, ProjectionHead, project
from multimodal_search.encoders.packaged import PackagedEncoder
from multimodal_search.learning.data import TrainingError, in_validation
from multimodal_search.learning.heads import (
    DEFAULT_EPOCHS,
    TEXT_TEMPERATURE,
    VISUAL_TEMPERATURE,
    kind_ndcg,
    leave_one_out_recall,
    text_to_image_recall,
    train_text_head,
    train_visual_projection,
)
from multimodal_search.learning.labels import Label
from multimodal_search.learning.photo_domain import fit_photo_domain
from multimodal_search.learning.photo_relevance import fit_photo_relevance
from multimodal_search.learning.photos import CROPS_PER_PHOTO, VIEW_RECIPE, build_training_set, collect_items
from multimodal_search.learning.publishing import default_head_path, head_version, publish, save_versioned

VISUAL_MODES = ("auto", "always", "never")
MIN_VALIDATION_QUERIES = 10
#: bump when choose_photo_features changes what it can choose (part of the head version)
PHOTO_CHOICE_RECIPE = "c2"


def stored_features(
    views: np.ndarray,
    colours: np.ndarray,
    colour_weight: float,
    projection: ProjectionHead | None = None,
    backbone_weight: float = 0.0,
) -> np.ndarray:
    """What the encoder stores per photo (``features``), from its backbone views and colours: the projected
    (or raw) features, with a projection the raw ones too at ``backbone_weight``, and the colour histogram
    at ``colour_weight``, each part a unit vector times its weight, the whole normalised once."""
    raw = _unit(views[0] + views[1])
    parts = [raw]
    if projection is not None:
        parts = [_unit(project(projection, views[0]) + project(projection, views[1]))]
        if backbone_weight > 0:
            parts.append(backbone_weight * raw)
    if colour_weight > 0:
        parts.append(colour_weight * colours)
    return _unit(np.concatenate(parts, axis=1)).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


#: colour histogram weights tried, as multiples of the encoder's ``colour_weight`` (0: the CNN alone)
COLOUR_STEPS = (0.0, 0.5, 1.0)
#: weights of the raw backbone features kept beside a visual projection (0: the projection alone). The
#: projection learns to tell one product from the next; the raw features keep what kind of thing it is
BACKBONE_STEPS = (0.0, 0.5, 1.0)

Recipe = tuple[bool, float, float]  # (projected, colour weight, backbone weight)


def _score(result: Mapping[str, float]) -> float:
    """R@1 + R@5 (the photo's own product), plus the kind nDCG@10 when the catalogue has kinds."""
    return result["r1"] + result["r5"] + result.get("kind_ndcg", 0.0)


def _recipe_name(recipe: Recipe) -> str:
    projected, colour_weight, backbone_weight = recipe
    if not projected:
        return f"backbone+colour {colour_weight:g}"
    backbone = f"+backbone {backbone_weight:g}" if backbone_weight > 0 else ""
    return f"projection{backbone}+colour {colour_weight:g}"


def choose_photo_features(
    views: np.ndarray,
    colours: np.ndarray,
    photo_item: np.ndarray,
    keys: list[str],
    *,
    colour_weight: float = 1.0,
    visual: str = "auto",
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    kinds: list[str] | None = None,
) -> dict[str, Any]:
    """Which photo-feature parts earn their place on this catalogue, by validation on its own photos.

    A fifth of the products (by a hash of their key) is set aside; every non-first photo of a set-aside
    product with several photos asks for its product (leave-one-out, gallery: every photo). Tried: the
    raw backbone (the floor), the backbone with the colour histogram at each of ``COLOUR_STEPS`` times
    ``colour_weight``, and the same with a visual projection trained on the other products (``visual``
    "auto"; "always"/"never" force it on or off), with the raw backbone beside the projection at each of
    ``BACKBONE_STEPS``. Scored by R@1 + R@5 of the photo's own product, plus, when ``kinds`` (each
    product's category leaf, "" when unknown) name the validation products' kinds, nDCG@10 with the other
    products of the same kind as partly relevant: what a shopper wants below the exact match. A part is
    kept only when the score is strictly higher with it; on a tie the simpler recipe wins. With too few
    second photos to validate on, the encoder's configured recipe is kept, without a projection (as
    before this choice existed).

    Returns:
        ``{"projection": bool, "colour_weight": float, "backbone_weight": float, "queries": n,
        "table": {recipe: {"r1": r, "r5": r[, "kind_ndcg": n]}}, "relevance": {...} | None, "reason": str}``;
        ``colour_weight`` and ``backbone_weight`` are what the encoder then uses in ``features``,
        ``relevance`` the photo-query calibration fitted on the same photos with the chosen recipe
        (``learning.photo_relevance``; None when there were too few to validate on).
    """
    aside = np.array([in_validation(key) for key in keys])[photo_item]
    first = np.zeros(len(photo_item), dtype=bool)
    first[np.unique(photo_item, return_index=True)[1]] = True
    queries = np.flatnonzero(aside & ~first)
    if len(queries) < MIN_VALIDATION_QUERIES:
        return {
            "projection": visual == "always",
            "colour_weight": colour_weight,
            "backbone_weight": 0.0,
            "queries": len(queries),
            "table": {},
            "relevance": None,
            "reason": f"only {len(queries)} second photos to validate on (< {MIN_VALIDATION_QUERIES})",
        }
    weights = sorted({step * colour_weight for step in COLOUR_STEPS}) if colour_weight > 0 else [0.0]
    # with colour or without (key: colour weight > 0): a projection learns with the colour it is used with
    projections: dict[bool, ProjectionHead] = {}
    if visual != "never":
        train = ~aside
        items = np.unique(photo_item[train], return_inverse=True)[1]
        for weight in sorted({0.0, colour_weight}):
            projections[weight > 0], _ = train_visual_projection(
                views[:, train], items, colours[train], colour_weight=weight, epochs=epochs, seed=seed
            )
    table: dict[Recipe, dict[str, float]] = {}
    for projected in [False] if visual == "never" else [True] if visual == "always" else [False, True]:
        for weight in weights:
            for backbone in BACKBONE_STEPS if projected else (0.0,):
                net = projections[weight > 0] if projected else None
                features = stored_features(views, colours, weight, net, backbone)
                recall = leave_one_out_recall(features, photo_item, queries)
                result = {"r1": recall[1], "r5": recall[5]}
                kind = kind_ndcg(features, photo_item, queries, kinds) if kinds else None
                if kind is not None:
                    result["kind_ndcg"] = kind
                table[(projected, weight, backbone)] = result
    best = max(table, key=lambda recipe: (_score(table[recipe]), -int(recipe[0]), -recipe[2], -recipe[1]))
    net = projections[best[1] > 0] if best[0] else None
    chosen = stored_features(views, colours, best[1], net, best[2])
    # shoppers' photos are framed worse than a studio's second photo: each query photo also asks as one of
    # its random crops (the close-up stand-ins the projection trained on), when the views have them
    crops = (
        [stored_features(np.stack([views[2], views[2]]), colours, best[1], net, best[2])[queries]]
        if len(views) > 2
        else []
    )
    return {
        "projection": best[0],
        "colour_weight": best[1],
        "backbone_weight": best[2],
        "queries": len(queries),
        "table": {_recipe_name(recipe): value for recipe, value in table.items()},
        "relevance": fit_photo_relevance(chosen, photo_item, queries, extra_queries=crops),
        "reason": (
            f"validation {_result_text(table[best])} with {_recipe_name(best)} ("
            + ", ".join(f"{_recipe_name(r)} {_result_text(table[r])}" for r in table if r != best)
            + f"; {len(queries)} photos)"
        ),
    }


def _result_text(result: Mapping[str, float]) -> str:
    kind = f", kind nDCG {result['kind_ndcg']:.2f}" if "kind_ndcg" in result else ""
    return f"R@1/R@5 {result['r1']:.2f}/{result['r5']:.2f}{kind}"


def _cuts_note(check: Mapping[str, Any]) -> str:
    relevance = check.get("relevance")
    if not relevance:
        return "; photo queries get no relevance (too few second photos to fit it on)"
    cuts = relevance["cuts"]
    domain = relevance.get("domain")
    sold = (
        f"; photos count as sold here at class support >= {domain['cut']:.2f} ({domain['report']['photos']} validation photos)"
        if domain
        else "; no photo-kind cut (too few validation photos)"
    )
    loss = relevance["report"].get("held_out_log_loss") or {}
    reads = (
        f" (held-out log-loss {loss['similarity']:.4f} with the cosine alone, {loss['margin']:.4f} with the margin"
        + ("): cosine and margin" if relevance["report"].get("margin") else "): the cosine alone")
        if loss
        else ""
    )
    return (
        f"; photo relevance fitted on {relevance['report']['queries']} searches{reads}: related >= "
        f"{cuts['related']:.3f}, exact >= {cuts['exact']:.3f}{sold}"
    )


@dataclass
class TrainingResult:
    version: str
    path: str
    archive: str
    products: int
    held_out: int
    photos: int
    pairs: int
    epochs: int
    text_loss: float
    visual_loss: float | None
    train_recall_at_10: float
    visual_note: str
    seconds: float
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        visual = f", visual loss {self.visual_loss:.3f}" if self.visual_loss is not None else ""
        return (
            f"head {self.version}: {self.pairs} (photo, text) pairs from {self.products} products "
            f"({self.held_out} held out), {self.epochs} epochs, final loss {self.text_loss:.3f}{visual}, "
            f"train text->image R@10 {self.train_recall_at_10:.3f}, {self.seconds:.1f} s -> {self.path}; "
            f"visual projection {self.visual_note}"
        )


def train_heads(
    encoder: Any,
    adapter: BaseProductAdapter,
    output: str | os.PathLike[str],
    *,
    holdout: Collection[str] = frozenset(),
    labels: Mapping[str, Label] | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    visual: str = "auto",
    crops: int = CROPS_PER_PHOTO,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str, int], Progress] | None = None,
    publish_now: bool = True,
) -> TrainingResult:
    """Train and save the cross-modal head (and the visual projection) on the catalogue.

    Args:
        encoder: the ``PackagedEncoder`` whose CNN and text model are used.
        adapter: reads the products.
        output: head file to write (older versions are kept beside it).
        holdout: skus or group ids (parent skus) to leave out.
        labels: training labels by sku (captions gain their facts).
        epochs: passes over the photos.
        seed: seed for crops order, initialisation and batches.
        visual: the visual projection for photo-to-photo search: "auto" keeps
            it when it beats the untrained features on a validation fifth
            of the products (see :func:`choose_photo_features`, which also
            chooses the colour histogram's weight),
            "always" or "never".
        crops: random crops per photo (augmentation, close-up stand-ins).
        cache_dir: where backbone views are cached (None: no cache).
        progress: ``progress(label, total)`` returns a callback taking increments.
        publish_now: put the new version at ``output`` at once; otherwise only
            ``<output stem>-<version>.pt`` is written (``result.archive``).

    Raises:
        TrainingError: no products, or none with a readable photo.
    """
    started = time.perf_counter()
    if epochs < 1:
        raise TrainingError("epochs must be at least 1")
    if visual not in VISUAL_MODES:
        raise TrainingError(f"visual must be one of {', '.join(VISUAL_MODES)}, not {visual!r}")
    items, held_out = collect_items(adapter, set(holdout), labels)
    if not items:
        extra = f" ({held_out} held out)" if held_out else ""
        raise TrainingError(f"no products to train on{extra}: the adapter's queryset is empty")
    n_photos = sum(len(item.images) for item in items)
    if not n_photos:
        raise TrainingError(f"none of the {len(items)} products has a photo")
    data = build_training_set(
        encoder,
        items,
        crops=crops,
        cache_dir=cache_dir,
        progress=progress("Photos", n_photos) if progress else None,
    )
    if not data.photo_item.size:
        raise TrainingError(f"none of the {n_photos} photos of {len(items)} products could be read")
    text_vectors = encoder.encode_text([item.text for item in items])
    settings = {
        "epochs": epochs, "seed": seed, "visual": visual, "crops": crops, "recipe": VIEW_RECIPE,
        "choice": PHOTO_CHOICE_RECIPE,
    }  # fmt: skip
    version = head_version(items, data.photo_digests, settings)
    check = choose_photo_features(
        data.views,
        data.colours,
        data.photo_item,
        [item.key for item in items],
        colour_weight=encoder.colour_weight,
        visual=visual,
        epochs=epochs,
        seed=seed,
        kinds=[item.kind for item in items],
    )
    if check["relevance"] is not None:  # what kinds of photo the catalogue sells (its "no match" for photos)
        check["relevance"]["domain"] = fit_photo_domain(data.classes, data.photo_item, [item.key for item in items])
    steps = epochs * (2 if check["projection"] else 1)
    tick = progress("Training", steps) if progress else None
    head, text_losses = train_text_head(
        data.views, data.photo_item, text_vectors, epochs=epochs, seed=seed, progress=tick
    )
    projection: ProjectionHead | None = None
    visual_losses: list[float] = []
    if check["projection"]:
        projection, visual_losses = train_visual_projection(
            data.views,
            data.photo_item,
            data.colours,
            colour_weight=check["colour_weight"],
            epochs=epochs,
            seed=seed,
            progress=tick,
        )
    recall = text_to_image_recall(text_vectors, project(head, data.views[0]), data.photo_item, k=10)
    config = {
        **settings,
        "preprocess": encoder.preprocess,
        "products": len(items),
        "held_out": held_out,
        "photos": int(data.photo_item.size),
        "train_recall_at_10": round(recall, 4),
        "text_temperature": TEXT_TEMPERATURE,
        "visual_temperature": VISUAL_TEMPERATURE,
        "colour_weight": encoder.colour_weight,
        # what the validation chose: the encoder weighs the colour histogram in ``features`` by this
        "photo_colour_weight": check["colour_weight"],
        "photo_backbone_weight": check["backbone_weight"],
        "photo_relevance": check["relevance"],
        "photo_validation": {
            name: {key: round(value, 4) for key, value in result.items()} for name, result in check["table"].items()
        },
        "visual_projection": ("kept: " if check["projection"] else "not used: ") + check["reason"] + _cuts_note(check),
    }
    archive = save_versioned(output, head, version, config, projection, publish_now=publish_now)
    return TrainingResult(
        version=version,
        path=str(output),
        archive=archive,
        products=len(items),
        held_out=held_out,
        photos=int(data.photo_item.size),
        pairs=int(data.photo_item.size),
        epochs=epochs,
        text_loss=text_losses[-1],
        visual_loss=visual_losses[-1] if visual_losses else None,
        train_recall_at_10=recall,
        visual_note=config["visual_projection"],
        seconds=time.perf_counter() - started,
        failed=data.failed,
    )


def has_trainable_head(encoder: Any) -> TypeGuard[PackagedEncoder]:
    return isinstance(encoder, PackagedEncoder)


@dataclass
class HeadTarget:
    """Whether the configured encoder has heads to train, and where they go."""

    encoder: str
    trainable: bool
    path: str | None = None
    #: the encoder reads its head from ``path`` (else a trained head is written but not used)
    configured: bool = False


def head_target() -> HeadTarget:
    encoder = get_encoder()
    if not has_trainable_head(encoder):
        return HeadTarget(type(encoder).__name__, False)
    configured = bool(getattr(encoder, "head_path", None))
    return HeadTarget(type(encoder).__name__, True, default_head_path(encoder), configured)


def train_projection_head(
    *,
    holdout: Iterable[str] = (),
    labels: Mapping[str, Label] | None = None,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    visual: str = "auto",
    progress: Callable[[str, int], Progress] | None = None,
    reindex: Callable[[Any], None] | None = None,
) -> TrainingResult:
    """Train the configured encoder's heads on the configured adapter's catalogue and publish them.

    With ``reindex``, the new version is saved beside the head file first and
    ``reindex(staging_encoder)`` is called with an encoder that uses it (and
    shares the loaded models), so the catalogue can be indexed for the new
    version *before* running encoders switch to it; then the head file is
    replaced. The configured encoder reloads at once, so ``encoder.model_id``
    names the new version when this returns (other processes follow within
    seconds).

    Raises:
        TrainingError: the encoder has no trainable head, or nothing to train on.
    """
    encoder = get_encoder()
    if not has_trainable_head(encoder):
        raise TrainingError(f"encoder {type(encoder).__name__} has no trainable head")
    output = default_head_path(encoder)
    result = train_heads(
        encoder,
        get_adapter(),
        output,
        holdout=set(holdout),
        labels=labels,
        epochs=epochs,
        seed=seed,
        visual=visual,
        cache_dir=Path(search_settings.MODEL_DIR) / "cache" / "backbone",
        progress=progress,
        publish_now=reindex is None,
    )
    if reindex is not None:
        reindex(encoder.clone(head_path=result.archive, head_check_interval=3600))
        publish(result.archive, output)
    encoder.reload_heads()
    return result
