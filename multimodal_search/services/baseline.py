"""The raw-backbone baseline of photo search: what the project starts from, for evaluations only.

Products are ranked by the cosine between the query photo's and each product photo's raw
EfficientNet-Lite0 features (the pooled CNN output, averaged with the mirrored photo's when the
encoder uses both views), best photo per product: no trained projection, no colour histogram, no
other signal. It is the floor a learned photo path must beat (``mmsearch_evaluate`` reports it as
the ``backbone`` row); it is not a storefront method.

The catalogue's photos are read from the kept backbone outputs (``services.encoding``), keyed by
file digest, so building the gallery runs the CNN only on photos indexing never kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from multimodal_search.adapters import get_adapter
from multimodal_search.encoders.base import BaseEncoder, l2_normalize
from multimodal_search.encoders.packaged import BACKBONE_DIMENSIONS, PackagedEncoder
from multimodal_search.services import encoding
from multimodal_search.services.query import SearchError, current_encoder
from multimodal_search.store import get_store


def raw_features(encoder: PackagedEncoder, backbone: np.ndarray) -> np.ndarray:
    """Unit raw CNN features from ``encode_image_backbone`` rows: each view normalised, then averaged."""
    rows = np.asarray(backbone, dtype=np.float32)
    views = 2 if encoder.flip else 1
    parts = [l2_normalize(rows[:, i * BACKBONE_DIMENSIONS : (i + 1) * BACKBONE_DIMENSIONS]) for i in range(views)]
    return l2_normalize(np.sum(parts, axis=0))


@dataclass
class BackboneGallery:
    """Every searchable product's photos as raw backbone features; :meth:`search` ranks by best photo."""

    encoder: PackagedEncoder
    products: list[Any]
    owners: np.ndarray  # photo row -> index into products
    features: np.ndarray  # (photos, 1280) unit rows

    def search(self, image: Image.Image, *, k: int) -> list[tuple[Any, float]]:
        """``[(product, cosine of its best photo)]``, best first, at most ``k``."""
        query = raw_features(self.encoder, self.encoder.encode_image_backbone([image.convert("RGB")]))[0]
        if not len(self.features):
            return []
        similarity = self.features @ query
        best = np.full(len(self.products), -np.inf, dtype=np.float32)
        np.maximum.at(best, self.owners, similarity)
        order = [int(i) for i in np.argsort(-best, kind="stable")[:k] if np.isfinite(best[i])]
        return [(self.products[i], float(best[i])) for i in order]


def _packaged(encoder: BaseEncoder) -> PackagedEncoder:
    if not isinstance(encoder, PackagedEncoder) or encoder.image_backbone_id is None:
        raise SearchError("The backbone baseline needs the packaged EfficientNet encoder.")
    return encoder


def backbone_gallery() -> BackboneGallery:
    """Load the raw backbone features of every searchable product's photos (kept ones first).

    Raises:
        SearchError: the configured encoder is not the packaged one (no raw backbone to compare).
    """
    encoder = _packaged(current_encoder()[0])
    adapter = get_adapter()
    products = list(adapter.get_queryset().order_by("pk"))
    photos = [(index, ref) for index, product in enumerate(products) for ref in adapter.get_images(product)]
    digests = [encoding.file_digest(ref.path) for _index, ref in photos]
    backbone_id = encoder.image_backbone_id
    kept = get_store().backbone_vectors(backbone_id, sorted({d for d in digests if d != encoding.MISSING}))
    owners, rows, fresh = [], [], []
    for (index, ref), digest in zip(photos, digests):
        if digest in kept:
            owners.append(index)
            rows.append(np.asarray(kept[digest], dtype=np.float32))
        else:
            fresh.append((index, ref))
    for index, ref in fresh:  # photos indexing never kept (a product indexed by another encoder)
        try:
            image = ref.open()
        except Exception:  # unreadable photo: the product is matched by its other photos
            continue
        owners.append(index)
        rows.append(encoder.encode_image_backbone([image])[0])
    features = raw_features(encoder, np.stack(rows)) if rows else np.zeros((0, BACKBONE_DIMENSIONS), np.float32)
    return BackboneGallery(encoder, products, np.asarray(owners, dtype=np.int64), features)
