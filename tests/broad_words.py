"""What a search for a word of a broad query shows, for the department and quality tests."""

from __future__ import annotations

from collections.abc import Callable

from multimodal_search import services


def broad_word_search(word: str, signal: str, watch_calibrations: Callable[[], list[str]]) -> tuple[dict, set, list]:
    """Search ``word`` and, for comparison, "hoodie" (a kind of product). Returns ``signal``'s value per
    ranked product, the products the storefront's cut keeps for ``word``, and the relevance calibration
    each search used (``["rerank", "broad"]`` when ``word`` is routed as a broad query)."""
    ranked = services.search_products(word, k=10)
    values = {str(hit.product_pk): hit.signals.get(signal) for hit in ranked.hits}
    assert all(signal not in hit.explanation for hit in ranked.hits)  # no ranking reads it
    kinds = watch_calibrations()
    services.search_products("hoodie", k=10)
    shown = {str(hit.product_pk) for hit in services.search_products(word, k=10, min_relevance="auto").hits}
    return values, shown, kinds
