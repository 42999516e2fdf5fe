"""What a search need not do every time: work kept in the process (``services.memo``: the catalogue's term
counts for query expansion, the query's vector), and a search page's photos and explanations made for the
page it shows, not for its whole result set."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from multimodal_search import services
from multimodal_search.services import memo, query
from tests.factories import ProductFactory


def test_a_memo_reads_each_key_once_until_it_is_older_than_its_seconds(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(memo.time, "monotonic", lambda: now[0])
    reads: list[list[str]] = []

    def read(keys):
        reads.append(list(keys))
        return {key: key.upper() for key in keys if key != "gone"}

    kept = memo.Memo()
    assert kept.get_many(["a", "b"], read, 60) == {"a": "A", "b": "B"}
    assert kept.get_many(["a", "b", "c", "gone"], read, 60) == {"a": "A", "b": "B", "c": "C", "gone": None}
    assert reads == [["a", "b"], ["c", "gone"]]  # only what it did not hold; a key read returns nothing for: None
    now[0] += 61
    assert kept.get("a", lambda: "fresh", 60) == "fresh"
    assert kept.get_many(["b"], read, 0) == {"b": "B"}  # 0 seconds: read every time
    assert reads[-1] == ["b"]


def test_a_full_memo_starts_again_rather_than_growing():
    kept = memo.Memo(max_entries=3)
    kept.get_many(["a", "b", "c"], lambda keys: dict.fromkeys(keys, 1), 60)
    kept.get_many(["d", "e"], lambda keys: dict.fromkeys(keys, 2), 60)
    assert len(kept._values) == 2


@pytest.fixture
def homeware(indexed):
    cushion = ProductFactory(title="Linen cushion", description="Square scatter cushion, feather filled.")
    indexed(cushion, ProductFactory(title="Brass table lamp"), ProductFactory(title="Jute rug"))
    return cushion


def _count_reads(text: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        services.search_products(text, k=3)
    return sum("phraseto_tsquery" in q["sql"] for q in queries.captured_queries)


@pytest.mark.django_db
def test_expansion_counts_the_catalogues_words_once_per_cache_time(homeware, settings):
    query._CATALOGUE_COUNTS.clear()
    assert _count_reads("throw pillow") == 2  # the tests' settings: every search counts (CACHE_SECONDS 0)
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "EXPANSION": {"CACHE_SECONDS": 300}}
    assert _count_reads("throw pillow") == 2  # is "throw pillow" used; how much is "cushion"
    response = services.search_products("throw pillow", k=3)
    assert _count_reads("throw pillow") == 0
    assert response.query["expanded"] == "throw pillow cushion"  # the same expansion from the kept counts
    assert response.hits[0].product == homeware
    query._CATALOGUE_COUNTS.clear()


@pytest.mark.django_db
def test_a_search_page_loads_photos_for_its_page_only(indexed, client):
    products = [ProductFactory(title=f"Black hoodie {n}", photos=["black"]) for n in range(6)]
    indexed(*products)
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/api/search/", {"q": "black hoodie", "k": 2}).json()
    assert body["total"] == 6 and len(body["results"]) == 2
    assert all(result["image"] for result in body["results"])  # the page's photos are there
    photo_reads = [q["sql"] for q in queries.captured_queries if "catalog_productimage" in q["sql"]]
    assert len(photo_reads) == 1, photo_reads
    ids = re.search(r"product_id\" IN \(([^)]*)\)", photo_reads[0])
    assert ids is not None, photo_reads[0]
    shown = sorted(p.pk for p in products if p.sku in {r["sku"] for r in body["results"]})
    assert sorted(int(pk) for pk in ids.group(1).split(",")) == shown  # two products, not six


@pytest.mark.django_db
def test_a_refinement_of_the_same_words_skips_the_text_encoder(homeware, settings, monkeypatch):
    from multimodal_search.encoders import get_encoder

    encoder = get_encoder()
    calls: list[list[str]] = []
    encode = encoder.encode_text
    monkeypatch.setattr(encoder, "encode_text", lambda texts: calls.append(list(texts)) or encode(texts))
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "QUERY_VECTORS": 100}
    query._QUERY_VECTORS.clear()
    first = services.search_products("linen cushion", k=3)
    again = services.browse_products("linen cushion", page_size=3, sort="price_asc")
    assert calls == [["linen cushion"]]  # encoded once
    assert first.hits[0].product == homeware
    assert {h.product_pk for h in again.hits} == {h.product_pk for h in first.hits}  # the same vector
    services.search_products("brass lamp", k=3)
    assert calls[-1] == ["brass lamp"]
    query._QUERY_VECTORS.clear()


@pytest.mark.django_db
def test_a_search_page_explains_its_page_only(indexed, client, monkeypatch):
    from multimodal_search.ranking import fusion

    indexed(*[ProductFactory(title=f"Black hoodie {n}", photos=["black"]) for n in range(6)])
    explained: list[str] = []
    contributions = fusion.contributions
    monkeypatch.setattr(
        fusion, "contributions", lambda pk, *a, **kw: explained.append(pk) or contributions(pk, *a, **kw)
    )
    body = client.get("/api/search/", {"q": "black hoodie", "k": 2}).json()
    assert body["total"] == 6
    assert len(explained) == 2 and all(
        sum(r["explanation"].values()) == pytest.approx(1, abs=1e-3) for r in body["results"]
    )
    explained.clear()
    assert len(services.search_products("black hoodie", k=3).hits[0].explanation) > 1  # search_products: as before
    assert len(explained) == 3
