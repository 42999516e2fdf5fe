"""Trains the attribute classifiers (see attributes.py) and writes what they infer to the index."""
from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from typing import Any, Collection, Mapping

import numpy as np
from django.db import transaction

from multimodal_search import attributes
from multimodal_search.adapters import get_adapter
from multimodal_search.encoders import get_encoder
from multimodal_search.labels import Label
from multimodal_search.models import ImageEmbedding, ProductEmbedding


def _photo_vectors(model_id: str) -> dict[str, np.ndarray]:
    rows = ImageEmbedding.objects.filter(model_id=model_id).order_by("product_pk", "position")
    grouped: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for pk, feature, shared in rows.values_list("product_pk", "feature_vector", "shared_vector").iterator():
        grouped[pk].append((feature, shared))
    return {pk: attributes.photo_matrix([f for f, _ in pairs], [s for _, s in pairs]) for pk, pairs in grouped.items()}


def _text_vectors(model_id: str) -> dict[str, np.ndarray]:
    from multimodal_search.backends.pgvector import as_array

    rows = ProductEmbedding.objects.filter(model_id=model_id).values_list("product_pk", "text_vector")
    return {pk: as_array(vector).astype(np.float64) for pk, vector in rows.iterator() if vector is not None}


def _known_values(holdout: Collection[str], labels: Mapping[str, Label], model_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """pk -> facet -> value (materials: a set) for non-held-out products, and pk -> group (for the validation split)."""
    adapter = get_adapter()
    stored = ProductEmbedding.objects.filter(model_id=model_id).values_list("product_pk", "fields", "categories")
    fields_by_pk = {pk: (fields, categories) for pk, fields, categories in stored}
    known: dict[str, dict[str, Any]] = {}
    groups: dict[str, str] = {}
    held = set(holdout)
    for product in adapter.get_queryset().filter(pk__in=list(fields_by_pk)):
        pk = str(product.pk)
        fields = fields_by_pk[pk][0] or {}
        sku = str(adapter.to_result(product).get("sku", pk))
        group = str(fields.get("group") or sku)
        if {sku, group} & held:
            continue
        label = labels.get(sku)
        stated = {"colour": str(fields.get("color") or (label.color if label else "")),
                  "gender": str(fields.get("gender") or (label.gender if label else ""))}
        values: dict[str, Any] = {facet: v for facet, raw in stated.items() if (v := attributes.normal_value(facet, raw))}
        leaf = attributes.category_leaf(fields_by_pk[pk][1] or []) or attributes.normal_value(
            "category", label.category if label else "")
        if leaf:
            values["category"] = leaf
        materials = attributes.normal_materials(str(fields.get("material") or (label.material if label else "")))
        if materials:
            values["material"] = set(materials)
        if values:
            known[pk] = values
            groups[pk] = group
    return known, groups


def _in_validation(group: str) -> bool:
    return int(hashlib.sha1(group.encode()).hexdigest(), 16) % 5 == 0


def _inputs(facet: str, pk: str, vectors: Mapping[str, np.ndarray], texts: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """A product's classifier rows for a facet: one per photo, or one product row."""
    if facet in attributes.PRODUCT_FACETS:
        if pk not in texts:
            return None
        return attributes.product_row(texts[pk], vectors.get(pk, np.zeros((0, 0))), _photo_width(vectors))[None]
    return vectors.get(pk)


def _photo_width(vectors: Mapping[str, np.ndarray]) -> int:
    return next((matrix.shape[1] for matrix in vectors.values() if len(matrix)), 0)


def _fit(facet: str, pks: list[str], known: Mapping[str, Mapping[str, Any]], vectors: Mapping[str, np.ndarray],
         texts: Mapping[str, np.ndarray]):
    rows = [(x, known[pk][facet]) for pk in pks if facet in known[pk] and (x := _inputs(facet, pk, vectors, texts)) is not None]
    if not rows:
        return None
    x = np.concatenate([matrix for matrix, _ in rows])
    values = [value for matrix, value in rows for _ in range(len(matrix))]
    if facet in attributes.MULTI_VALUED:
        return attributes.train_multi_classifier(x, values)
    return attributes.train_classifier(x, values)


def _accuracy(facet: str, clf: attributes.Classifier, checked: list[tuple[str, Any]],
              vectors: Mapping[str, np.ndarray], texts: Mapping[str, np.ndarray]) -> float | None:
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
    vectors = _photo_vectors(model_id)
    texts = _text_vectors(model_id)
    known, groups = _known_values(holdout, labels or {}, model_id)
    pks = sorted(pk for pk in known if pk in vectors or pk in texts)
    train_pks = [pk for pk in pks if not _in_validation(groups[pk])]
    check_pks = [pk for pk in pks if _in_validation(groups[pk])]
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
        report[facet] = {"classes": final.classes, "products": sum(1 for pk in pks if facet in known[pk]),
                         "validation_accuracy": accuracy, "validation_products": len(checked)}
    model = attributes.AttributeModel(model_id=model_id, classifiers=classifiers, meta={"facets": report})
    path = attributes.save_model(model)
    enriched = apply_to_index(model)
    return {"facets": report, "enriched": enriched, "path": str(path),
            "seconds": round(time.perf_counter() - started, 1)}


def apply_to_index(model: attributes.AttributeModel) -> int:
    """Write the inferred facets of every indexed product of the model's encoder; returns the count."""
    vectors = _photo_vectors(model.model_id)
    rows = list(ProductEmbedding.objects.filter(model_id=model.model_id).only(
        "pk", "product_pk", "fields", "categories", "text_vector"))
    empty = np.zeros((0, _photo_width(vectors)))
    for row in rows:
        inferred = model.infer(vectors.get(row.product_pk, empty), row.text_vector)
        row.fields = attributes.enrich_fields(row.fields or {}, inferred, row.categories or [])
    with transaction.atomic():
        ProductEmbedding.objects.bulk_update(rows, ["fields"], batch_size=500)
    return len(rows)
