"""The encoding step of indexing: texts and photos in, vectors out, reusing kept backbone outputs.

An encoder that splits into a backbone and heads (``text_backbone_id`` / ``image_backbone_id``, see
``encoders.base``) has its backbone outputs kept in the store per text (sha256 of the words) and per
photo (sha1 of the file), keyed by the backbone's id, never by ``model_id``. A batch looks them up,
runs the backbone only on what it has not seen, and runs the heads (``project_text`` /
``project_images``) on every row. After ``mmsearch_train`` publishes a new head, reindexing therefore
costs the heads, not MiniLM and the CNN. The photos' colour palettes
(``ranking.colour.colour_distribution``) are kept the same way, so such a reindex decodes no photo.

Fresh backbone outputs are rounded to float16, as they are kept, before the heads see them: a product
gets the same vectors whether its photos were in the store or not.

Photos that must be decoded are opened on a few threads (``encoders.images.map_photos``: PIL releases
the GIL while it decodes), so decoding overlaps instead of adding up in front of the CNN.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from multimodal_search.adapters import ImageRef
from multimodal_search.encoders import BaseEncoder
from multimodal_search.encoders.images import map_photos
from multimodal_search.ranking import colour
from multimodal_search.services.phases import phase
from multimodal_search.store import get_store

logger = logging.getLogger(__name__)

#: ``ranking.colour.colour_distribution`` as kept per photo; bump when that function changes
PALETTE_ID = "palette-v1"
#: the digest ``services.indexing`` gives a photo whose file cannot be read (never kept)
MISSING = "missing"


def file_digest(path: str) -> str:
    """The key a photo's backbone output is kept under: the sha1 of its file (:data:`MISSING` if unreadable)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).hexdigest()
    except OSError:
        return MISSING


def text_digest(text: str) -> str:
    """The key a text's backbone output is kept under."""
    return hashlib.sha256(text.encode()).hexdigest()


def encode_texts(encoder: BaseEncoder, texts: Sequence[str]) -> np.ndarray:
    """Text vectors of ``texts`` in one batch call, the backbone run only on texts not kept yet.

    Returns:
        float32 (len(texts), dimensions), unit rows.
    """
    texts = [str(text) for text in texts]
    backbone_id = encoder.text_backbone_id
    if backbone_id is None:
        with phase("text model"):
            return encoder.encode_text(texts)
    if not texts:
        return np.zeros((0, encoder.dimensions), dtype=np.float32)
    keys = [text_digest(text) for text in texts]
    store = get_store()
    kept = store.backbone_vectors(backbone_id, keys)
    todo = {key: text for key, text in zip(keys, texts) if key not in kept}
    if todo:
        with phase("text model"):
            fresh = encoder.encode_text_backbone(list(todo.values()))
        new = {key: np.asarray(row, dtype=np.float16) for key, row in zip(todo, fresh)}
        store.save_backbone_vectors(backbone_id, new)
        kept.update(new)
    with phase("text model"):
        return encoder.project_text(np.stack([kept[key] for key in keys]).astype(np.float32))


@dataclass
class EncodedPhotos:
    """The readable photos of a batch: who owns each row, and its vectors and colour palette."""

    owners: list[tuple[int, ImageRef]]
    shared: np.ndarray
    features: np.ndarray
    palettes: list[np.ndarray]


@dataclass
class _Opened:
    image: Image.Image | None
    palette: np.ndarray | None
    error: str = ""
    #: the file's digest once decoded: a file replaced since its digest was taken is encoded, not kept
    digest: str = MISSING


def _open(ref: ImageRef, check: bool = False) -> _Opened:
    try:
        image = ref.open()
        return _Opened(image, colour.colour_distribution(image), digest=file_digest(ref.path) if check else MISSING)
    except Exception as exc:  # unreadable photo: the product is indexed without it
        return _Opened(None, None, str(exc))


def _open_checked(ref: ImageRef) -> _Opened:
    return _open(ref, check=True)


def _open_all(refs: list[ImageRef], check: bool = False) -> list[_Opened]:
    # the encoders' photo threads: the pool that then prepares the decoded photos for the CNN
    with phase("decode"):
        return map_photos(_open_checked if check else _open, refs)


def encode_photos(
    encoder: BaseEncoder, photos: Sequence[tuple[int, ImageRef, str]], failed: list[str]
) -> EncodedPhotos:
    """Vectors and palettes of photos given as ``(owner index, ref, file digest)``.

    Unreadable photos are left out and their paths appended to ``failed``.
    """
    if encoder.image_backbone_id is None:
        return _encode_all(encoder, photos, failed)
    backbone_id = encoder.image_backbone_id
    store = get_store()
    digests = {digest for _i, _ref, digest in photos if digest != MISSING}
    kept = store.backbone_vectors(backbone_id, sorted(digests))
    palettes = store.backbone_vectors(PALETTE_ID, sorted(digests))
    todo: dict[str, ImageRef] = {}
    for _index, ref, digest in photos:
        if digest == MISSING or digest not in kept or digest not in palettes:
            todo.setdefault(digest if digest != MISSING else f"{MISSING}:{ref.path}", ref)
    unreadable: set[str] = set()
    if todo:
        opened = _open_all(list(todo.values()), check=True)
        readable = []
        for (digest, ref), result in zip(todo.items(), opened):
            if result.image is None:
                logger.warning("cannot read photo %s: %s", ref.path, result.error)
                unreadable.add(digest)
            else:
                readable.append((digest, result))
        if readable:
            with phase("photo model"):
                fresh = encoder.encode_image_backbone([result.image for _d, result in readable if result.image])
            new = {d: np.asarray(row, dtype=np.float16) for (d, _r), row in zip(readable, fresh)}
            new_palettes = {d: np.asarray(r.palette, dtype=np.float16) for d, r in readable}
            # kept only under the digest of the bytes decoded: a file that appeared or changed since the
            # batch read its digest is encoded for this batch but not kept (the next run finds it changed)
            keep = {d for d, result in readable if d in digests and result.digest == d}
            store.save_backbone_vectors(backbone_id, {d: row for d, row in new.items() if d in keep})
            store.save_backbone_vectors(PALETTE_ID, {d: row for d, row in new_palettes.items() if d in keep})
            kept.update(new)
            palettes.update(new_palettes)
    owners, rows, colours = [], [], []
    for index, ref, digest in photos:
        key = digest if digest != MISSING else f"{MISSING}:{ref.path}"
        if key in unreadable:
            failed.append(ref.path)
            continue
        owners.append((index, ref))
        rows.append(kept[key])
        colours.append(palettes[key].astype(np.float32))
    with phase("photo model"):
        shared, features = encoder.project_images(
            np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)
        )
    return EncodedPhotos(owners, shared, features, colours)


def _encode_all(encoder: BaseEncoder, photos: Sequence[tuple[int, ImageRef, str]], failed: list[str]) -> EncodedPhotos:
    """An encoder that does not split: decode and encode every photo."""
    opened = _open_all([ref for _i, ref, _d in photos])
    owners, images, palettes = [], [], []
    for (index, ref, _digest), result in zip(photos, opened):
        if result.image is None or result.palette is None:
            logger.warning("cannot read photo %s of product #%d in the batch: %s", ref.path, index, result.error)
            failed.append(ref.path)
            continue
        owners.append((index, ref))
        images.append(result.image)
        palettes.append(result.palette)
    if images:
        with phase("photo model"):
            shared, features = encoder.encode_image_pair(images)
    else:
        shared = features = np.zeros((0, 1), dtype=np.float32)
    return EncodedPhotos(owners, shared, features, palettes)
