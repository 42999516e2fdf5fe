"""Trains the attribute classifiers (``ranking.attributes``) and writes what they infer to the index."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from multimodal_search import artefacts
from multimodal_search.adapters import get_adapter
from multimodal_search.encoders import get_encoder
from multimodal_search.learning.data import in_validation, is_held_out
from multimodal_search.learning.fitting import train_classifier, train_multi_classifier
from multimodal_search.learning.labels import Label
from multimodal_search.ranking import attributes
from multimodal_search.ranking import vocabulary as v
from multimodal_search.store import get_store

#: the classifiers are fitted on the stored rows of at most this many products: beyond it, a fixed sample
#: (by a hash of the pk). A photo's classifier row is 2,839 float64s (23 kB): fitting on all of a
#: 100,000-product catalogue's photos held over 10 GB, so a million products could not be retrained.
TRAIN_PRODUCTS = 20_000
#: products whose facets are inferred and written at a time (:func:`apply_to_index`)
APPLY_CHUNK = 1_000


def training_sample(model_id: str) -> list[str] | None:
    """The pks the classifiers are fitted on: None (every stored product) up to ``TRAIN_PRODUCTS``
    products, else ``TRAIN_PRODUCTS`` of them, the same ones each time."""
    pks = get_store().stored_pks(model_id)
    if len(pks) <= TRAIN_PRODUCTS:
        return None
    return sorted(pks, key=lambda pk: hashlib.sha1(pk.encode()).hexdigest())[:TRAIN_PRODUCTS]


def _photo_vectors(model_id: str, pks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """pk -> the classifier rows of the product's photos (``attributes.photo_matrix``), in photo order."""
    return {
        pk: attributes.photo_matrix(features, shared)
        for pk, (features, shared) in get_store().photo_vectors(model_id, pks).items()
    }


def _text_vectors(model_id: str, pks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    return {pk: vector.astype(np.float64) for pk, vector in get_store().text_vectors(model_id, pks).items()}


def _known_values(
    holdout: Collection[str], labels: Mapping[str, Label], model_id: str, sample: Sequence[str] | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """pk -> facet -> value (materials: a set) for non-held-out products (of ``sample``; None: all), and
    pk -> group (for the validation split)."""
    adapter = get_adapter()
    fields_by_pk = get_store().product_rows(model_id, sample)
    known: dict[str, dict[str, Any]] = {}
    groups: dict[str, str] = {}
    held = set(holdout)
    for product in adapter.get_queryset().filter(pk__in=list(fields_by_pk)):
        pk = str(product.pk)
        fields = fields_by_pk[pk][0]
        sku = str(adapter.to_result(product).get("sku", pk))
        group = str(fields.get(v.FIELD_GROUP) or sku)
        if is_held_out(sku, group, held):
            continue
        label = labels.get(sku)
        stated = {
            v.COLOUR: str(fields.get(v.FIELD_COLOR) or (label.color if label else "")),
            v.GENDER: str(fields.get(v.FIELD_GENDER) or (label.gender if label else "")),
        }
        values: dict[str, Any] = {
            facet: value for facet, raw in stated.items() if (value := attributes.normal_value(facet, raw))
        }
        leaf = attributes.category_leaf(fields_by_pk[pk][1]) or attributes.normal_value(
            v.CATEGORY, label.category if label else ""
        )
        if leaf:
            values[v.CATEGORY] = leaf
        materials = attributes.normal_materials(str(fields.get(v.FIELD_MATERIAL) or (label.material if label else "")))
        if materials:
            values[v.MATERIAL] = set(materials)
        if values:
            known[pk] = values
            groups[pk] = group
    return known, groups


def _inputs(
    facet: str, pk: str, vectors: Mapping[str, np.ndarray], texts: Mapping[str, np.ndarray]
) -> np.ndarray | None:
    """A product's classifier rows for a facet: one per photo, or one product row."""
    if facet in attributes.PRODUCT_FACETS:
        if pk not in texts:
            return None
        return attributes.product_row(texts[pk], vectors.get(pk, np.zeros((0, 0))), _photo_width(vectors))[None]
    return vectors.get(pk)


def _photo_width(vectors: Mapping[str, np.ndarray]) -> int:
    return next((matrix.shape[1] for matrix in vectors.values() if len(matrix)), 0)


def _fit(
    facet: str,
    pks: list[str],
    known: Mapping[str, Mapping[str, Any]],
    vectors: Mapping[str, np.ndarray],
    texts: Mapping[str, np.ndarray],
):
    rows = [
        (x, known[pk][facet])
        for pk in pks
        if facet in known[pk] and (x := _inputs(facet, pk, vectors, texts)) is not None
    ]
    if not rows:
        return None
    x = np.concatenate([matrix for matrix, _ in rows])
    values = [value for matrix, value in rows for _ in range(len(matrix))]
    if facet in attributes.MULTI_VALUED:
        return train_multi_classifier(x, values)
    return train_classifier(x, values)


def _accuracy(
    facet: str,
    clf: attributes.Classifier,
    checked: list[tuple[str, Any]],
    vectors: Mapping[str, np.ndarray],
    texts: Mapping[str, np.ndarray],
) -> float | None:
    """Share of validation products whose top class is (one of) their value(s)."""
    hits = []
    for pk, value in checked:
        x = _inputs(facet, pk, vectors, texts)
        if x is None:
            continue
        top = clf.classes[int(clf.probabilities(x).mean(axis=0).argmax())]
        hits.append(top in value if isinstance(value, set) else top == value)
    return round(float(np.mean(hits)), 3) if hits else None


def train_attributes(*, holdout: Collection[str] = (), labels: Mapping[str, Label] | None = None) -> dict[str, Any]:
    """Fit the facet classifiers on products with known facets, save them, and infer every product's facets.

    Needs the catalogue indexed with the current encoder.

    Returns:
        summary: facets learned with their classes, validation accuracy (a fifth of the
        product groups held back for a first fit), products enriched, seconds, path.
    """
    started = time.perf_counter()
    model_id = get_encoder().model_id
    sample = training_sample(model_id)
    vectors = _photo_vectors(model_id, sample)
    texts = _text_vectors(model_id, sample)
    known, groups = _known_values(holdout, labels or {}, model_id, sample)
    pks = sorted(pk for pk in known if pk in vectors or pk in texts)
    train_pks = [pk for pk in pks if not in_validation(groups[pk])]
    check_pks = [pk for pk in pks if in_validation(groups[pk])]
    classifiers: dict[str, attributes.Classifier] = {}
    report: dict[str, Any] = {}
    for facet in attributes.FACETS:
        first = _fit(facet, train_pks, known, vectors, texts)
        final = _fit(facet, pks, known, vectors, texts)
        if final is None:
            report[facet] = "not learned: fewer than two values with enough photos"
            continue
        classifiers[facet] = final
        checked = [(pk, known[pk][facet]) for pk in check_pks if facet in known[pk]]
        accuracy = _accuracy(facet, first, checked, vectors, texts) if first is not None and checked else None
        report[facet] = {
            "classes": final.classes,
            "products": sum(1 for pk in pks if facet in known[pk]),
            "validation_accuracy": accuracy,
            "validation_products": len(checked),
        }
    model = attributes.AttributeModel(model_id=model_id, classifiers=classifiers, meta={"facets": report})
    path = artefacts.save(attributes.ARTEFACT, model_id, model.to_json())
    del vectors, texts  # the sample's rows: apply_to_index reads every product's, a chunk at a time
    enriched = apply_to_index(model)
    return {
        "facets": report,
        "fitted_on": len(pks),
        "sampled": sample is not None,
        "enriched": enriched,
        "path": str(path),
        "seconds": round(time.perf_counter() - started, 1),
    }


def apply_to_index(model: attributes.AttributeModel) -> int:
    """Write the inferred facets of every indexed product of the model's encoder, ``APPLY_CHUNK`` products
    at a time (what is read stays that small however large the catalogue); returns the count. Only the
    facets are written (``store.update_inferred``), not the products' rows."""
    store = get_store()
    pks = sorted(store.stored_pks(model.model_id))
    written = 0
    for start in range(0, len(pks), APPLY_CHUNK):
        chunk = pks[start : start + APPLY_CHUNK]
        vectors = _photo_vectors(model.model_id, chunk)
        texts = store.text_vectors(model.model_id, chunk)
        empty = np.zeros((0, _photo_width(vectors)))
        updated = {
            pk: attributes.enrichment(fields, model.infer(vectors.get(pk, empty), texts.get(pk)), categories)
            for pk, (fields, categories) in store.product_rows(model.model_id, chunk).items()
        }
        written += store.update_inferred(model.model_id, updated)
    return written
