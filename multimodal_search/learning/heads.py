"""Fitting the photo heads (``encoders.heads.ProjectionHead``) on arrays of backbone features.

``train_text_head`` learns the cross-modal head (photos -> text space), ``train_visual_projection``
the photo-to-photo projection; both minimise a symmetric multi-positive InfoNCE loss. They work on
arrays, so ``mmsearch_train`` and ``bench/photo_retrieval.py`` train exactly the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from multimodal_search.encoders.heads import Progress, ProjectionHead

DEFAULT_EPOCHS = 60
TEXT_TEMPERATURE = 0.05
VISUAL_TEMPERATURE = 0.05
VISUAL_DIMENSIONS = 256
VISUAL_HIDDEN = 1024
TEXT_HIDDEN = 512
BATCH_SIZE = 256
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4


def _multi_positive_loss(logits: torch.Tensor, labels: torch.Tensor, column_labels: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every same-label pair is a positive."""
    same = (labels[:, None] == column_labels[None]).float()
    rows = -(same / same.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    cols = -(same.T / same.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (rows + cols) / 2


def _item_starts(photo_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(photo_item, kind="stable")
    counts = np.bincount(photo_item)
    return order, counts


def _fit(
    net: torch.nn.Module,
    n_photos: int,
    step: Callable[[np.ndarray, np.random.RandomState], torch.Tensor],
    *,
    epochs: int,
    seed: int,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> list[float]:
    optimizer = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    per_epoch = max(1, int(np.ceil(n_photos / batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=epochs * per_epoch)
    rng = np.random.RandomState(seed)
    losses = []
    net.train()
    for _ in range(epochs):
        order = rng.permutation(n_photos)
        total = 0.0
        for start in range(0, n_photos, batch_size):
            loss = step(order[start : start + batch_size], rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        losses.append(total / per_epoch)
        if progress:
            progress(1)
    net.eval()
    return losses


def train_visual_projection(
    views: np.ndarray,
    photo_item: np.ndarray,
    colours: np.ndarray | None = None,
    *,
    colour_weight: float = 1.0,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    out_dim: int = VISUAL_DIMENSIONS,
    hidden_dim: int = VISUAL_HIDDEN,
    temperature: float = VISUAL_TEMPERATURE,
    progress: Progress | None = None,
) -> tuple[ProjectionHead, list[float]]:
    """Learn a projection in which views of one product are close.

    Each step pairs a random view of a photo with a random view of a random
    photo of the same product (possibly itself); all same-product pairs in the
    batch are positives, other products (colour variants included) negatives.

    With ``colours``, the loss scores pairs the way search will, by the cosine
    of ``[projection, colour_weight * colour]``: the projection learns what the
    colour histogram does not already tell apart. (A crop is given its photo's
    colours.)

    Args:
        views: (V, P, D) unit backbone features.
        photo_item: (P,) product index per photo.
        colours: (P, C) unit colour descriptors, or None.
        colour_weight: the encoder's ``colour_weight``.

    Returns:
        ``(projection in eval mode, mean loss per epoch)``.
    """
    torch.manual_seed(seed)
    n_views, n_photos, dim = views.shape
    net = ProjectionHead(in_dim=dim, hidden_dim=hidden_dim, out_dim=out_dim)
    tensor = torch.from_numpy(np.ascontiguousarray(views, dtype=np.float32))
    order, counts = _item_starts(photo_item)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    labels_all = torch.from_numpy(photo_item.astype(np.int64))
    colour = None
    if colours is not None and colour_weight > 0:
        colour = torch.from_numpy(np.ascontiguousarray(colours, dtype=np.float32)) * float(colour_weight)

    def embed(views_index: np.ndarray, photos: np.ndarray) -> torch.Tensor:
        out = net(tensor[views_index, photos])
        if colour is None:
            return out
        return torch.nn.functional.normalize(torch.cat([out, colour[photos]], dim=1), dim=-1)

    def step(batch: np.ndarray, rng: np.random.RandomState) -> torch.Tensor:
        items = photo_item[batch]
        partners = order[starts[items] + (rng.random_sample(len(batch)) * counts[items]).astype(int)]
        first = embed(rng.randint(n_views, size=len(batch)), batch)
        second = embed(rng.randint(n_views, size=len(batch)), partners)
        labels = labels_all[batch]
        return _multi_positive_loss(first @ second.T / temperature, labels, labels)

    return net, _fit(net, n_photos, step, epochs=epochs, seed=seed, progress=progress)


def train_text_head(
    views: np.ndarray,
    photo_item: np.ndarray,
    text_vectors: np.ndarray,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    hidden_dim: int = TEXT_HIDDEN,
    temperature: float = TEXT_TEMPERATURE,
    text_views: int = 2,
    progress: Progress | None = None,
) -> tuple[ProjectionHead, list[float]]:
    """Learn the cross-modal head: a product's photos against its own text.

    Args:
        views: (V, P, D) unit backbone features; the first ``text_views`` views
            (photo and mirror image) are used.
        photo_item: (P,) product index per photo.
        text_vectors: (items, text dims) unit text vectors.

    Returns:
        ``(head in eval mode, mean loss per epoch)``.
    """
    torch.manual_seed(seed)
    n_views, n_photos, dim = views.shape
    use = max(1, min(text_views, n_views))
    net = ProjectionHead(in_dim=dim, hidden_dim=hidden_dim, out_dim=text_vectors.shape[1])
    tensor = torch.from_numpy(np.ascontiguousarray(views[:use], dtype=np.float32))
    texts = torch.from_numpy(np.ascontiguousarray(text_vectors, dtype=np.float32))
    labels_all = torch.from_numpy(photo_item.astype(np.int64))

    def step(batch: np.ndarray, rng: np.random.RandomState) -> torch.Tensor:
        labels = labels_all[batch]
        columns = torch.unique(labels)
        images = net(tensor[rng.randint(use, size=len(batch)), batch])
        return _multi_positive_loss(images @ texts[columns].T / temperature, labels, columns)

    return net, _fit(net, n_photos, step, epochs=epochs, seed=seed, progress=progress)


def text_to_image_recall(
    text_vectors: np.ndarray,
    photo_vectors: np.ndarray,
    photo_item: np.ndarray,
    k: int = 10,
    queries: Iterable[int] | None = None,
) -> float:
    """Share of products whose own text ranks them in the top ``k`` (max over a product's photos).

    Ties are broken fairly (expected value over random orders).
    """
    n_items = len(text_vectors)
    scores = text_vectors @ photo_vectors.T
    per_item = np.full((n_items, n_items), -np.inf, dtype=np.float32)
    for item in np.unique(photo_item):
        per_item[:, item] = scores[:, photo_item == item].max(axis=1)
    rows = np.array(sorted(set(queries) if queries is not None else set(np.unique(photo_item))), dtype=int)
    if rows.size == 0:
        return 0.0
    truth = per_item[rows, rows]
    greater = (per_item[rows] > truth[:, None]).sum(1)
    equal = (per_item[rows] == truth[:, None]).sum(1) - 1
    return float(np.clip((k - greater) / (equal + 1), 0, 1).mean())


def best_photo_scores(
    features: np.ndarray, photo_item: np.ndarray, queries: np.ndarray, query_features: np.ndarray | None = None
) -> np.ndarray:
    """(queries, items): each product's best photo cosine to each query photo, the query photo left out.

    ``query_features`` (one row per query) ask instead of the query photos' own rows (e.g. a crop of
    each); the photo they were made from is still left out of the gallery.
    """
    scores = (features[queries] if query_features is None else query_features) @ features.T
    scores[np.arange(len(queries)), queries] = -np.inf
    n_items = int(photo_item.max()) + 1
    per_item = np.full((len(queries), n_items), -np.inf, dtype=np.float32)
    for item in range(n_items):
        columns = photo_item == item
        if columns.any():
            per_item[:, item] = scores[:, columns].max(axis=1)
    return per_item


def leave_one_out_recall(
    features: np.ndarray, photo_item: np.ndarray, queries: np.ndarray, ks: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """Photo -> product R@k: each query photo against every *other* photo, products by their best photo.

    Ties are broken fairly (expected value over random orders).

    Args:
        features: (P, D) unit photo vectors.
        photo_item: (P,) product index per photo.
        queries: indices of the query photos.
    """
    if len(queries) == 0:
        return {k: 0.0 for k in ks}
    per_item = best_photo_scores(features, photo_item, queries)
    truth = per_item[np.arange(len(queries)), photo_item[queries]]
    greater = (per_item > truth[:, None]).sum(1)
    equal = (per_item == truth[:, None]).sum(1) - 1
    return {k: float(np.clip((k - greater) / (equal + 1), 0, 1).mean()) for k in ks}


def kind_ndcg(
    features: np.ndarray, photo_item: np.ndarray, queries: np.ndarray, item_kind: Sequence[str], k: int = 10
) -> float | None:
    """Photo -> products nDCG@k where the photo's own product has gain 3 and every other product of the same
    kind (category) gain 1: whether results below the exact match are of the kind asked for. Queries whose
    product has no known kind are skipped; None when none is left. Ties keep product order."""
    kinds = np.asarray(item_kind, dtype=object)
    asked = np.array([bool(kinds[photo_item[q]]) for q in queries], dtype=bool)
    if not asked.any():
        return None
    queries = queries[asked]
    per_item = best_photo_scores(features, photo_item, queries)
    discount = 1 / np.log2(np.arange(2, k + 2))
    values = []
    for row, query in enumerate(queries):
        own = photo_item[query]
        gains = np.where(kinds == kinds[own], 1.0, 0.0)
        gains[own] = 3.0
        top = np.argsort(-per_item[row], kind="stable")[:k]
        ideal = np.sort(gains)[::-1][:k]
        values.append(float(gains[top] @ discount[: len(top)]) / float(ideal @ discount[: len(ideal)]))
    return float(np.mean(values))
