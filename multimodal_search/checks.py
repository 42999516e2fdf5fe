"""System checks for the MULTIMODAL_SEARCH setting."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, register
from django.utils.module_loading import import_string


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from multimodal_search.conf import search_settings

    errors: list[Error] = []
    model = search_settings.PRODUCT_MODEL
    if not model:
        errors.append(Error("MULTIMODAL_SEARCH['PRODUCT_MODEL'] is not set.", id="multimodal_search.E001"))
    else:
        try:
            apps.get_model(model)
        except (LookupError, ValueError) as exc:
            errors.append(Error(f"MULTIMODAL_SEARCH['PRODUCT_MODEL'] = {model!r}: {exc}", id="multimodal_search.E002"))
    if not search_settings.user_settings.get("ADAPTER"):
        errors.append(Error("MULTIMODAL_SEARCH['ADAPTER'] is not set.", id="multimodal_search.E003"))
    encoders = search_settings.ENCODERS
    alias = search_settings.ENCODER
    if alias not in encoders:
        errors.append(
            Error(f"MULTIMODAL_SEARCH['ENCODER'] = {alias!r} is not in ENCODERS.", id="multimodal_search.E004")
        )
    for name, config in encoders.items():
        try:
            import_string(config["BACKEND"])
        except (ImportError, KeyError) as exc:
            errors.append(Error(f"MULTIMODAL_SEARCH['ENCODERS'][{name!r}]: {exc}", id="multimodal_search.E005"))
    photo_cache = search_settings.QUERY_PHOTOS.get("CACHE")
    if photo_cache not in settings.CACHES:
        errors.append(
            Error(
                f"MULTIMODAL_SEARCH['QUERY_PHOTOS']['CACHE'] = {photo_cache!r} is not in CACHES.",
                id="multimodal_search.E006",
            )
        )
    errors.extend(
        _hnsw_errors(search_settings.HNSW_M, search_settings.HNSW_EF_CONSTRUCTION, search_settings.HNSW_EF_SEARCH)
    )
    return errors


def _hnsw_errors(m: Any, ef_construction: Any, ef_search: Any) -> list[Error]:
    # pgvector's own limits, checked at start rather than when a worker first builds an index or a search reads one
    def bad(value: Any, low: int, high: int) -> bool:
        return isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high

    limits = {
        "HNSW_M": (m, 2, 100),
        "HNSW_EF_CONSTRUCTION": (ef_construction, 4, 1000),
        "HNSW_EF_SEARCH": (ef_search, 1, 1000),
    }
    errors = [
        Error(
            f"MULTIMODAL_SEARCH[{name!r}] = {value!r}: pgvector accepts a whole number from {low} to {high:,}.",
            id="multimodal_search.E007",
        )
        for name, (value, low, high) in limits.items()
        if bad(value, low, high)
    ]
    if not bad(*limits["HNSW_M"]) and not bad(*limits["HNSW_EF_CONSTRUCTION"]) and ef_construction < 2 * m:
        errors.append(
            Error(
                f"MULTIMODAL_SEARCH['HNSW_EF_CONSTRUCTION'] = {ef_construction} is below 2 x HNSW_M ({2 * m}); "
                "pgvector refuses such an index.",
                id="multimodal_search.E007",
            )
        )
    return errors
