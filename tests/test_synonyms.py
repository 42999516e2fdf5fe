"""Query expansion with shopper synonyms."""

from __future__ import annotations

import pytest

from multimodal_search import services
from multimodal_search.ranking import synonyms
from tests.factories import ProductFactory


def test_expansion_adds_the_other_members_of_named_groups():
    assert synonyms.expansions("black holdall")[:2] == ["duffle bag", "duffel bag"]
    assert "pants" in synonyms.expansions("Men's trousers")
    assert synonyms.expansions("t-shirt")[0] == "tee"
    assert synonyms.expand("red hoodie", groups=[]) == "red hoodie"
    assert synonyms.expansions("pantsuit") == []  # whole words only


def test_custom_groups_replace_the_built_in_list(settings):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "SYNONYMS": [["widget", "gizmo"]]}
    assert synonyms.expansions("blue widget") == ["gizmo"]
    assert synonyms.expansions("trousers") == []


@pytest.mark.django_db
def test_a_shopper_word_finds_the_catalogue_word(indexed, settings):
    pants = ProductFactory(title="Cronus Yoga Pant", photos=["black"])
    tee = ProductFactory(title="Layla Tee", photos=["black"])
    indexed(pants, tee)
    response = services.search_products("trousers", k=2, method="lexical")
    assert [hit.product for hit in response.hits] == [pants]
    assert response.query["text"] == "trousers" and "pants" in response.query["expanded"]
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "SYNONYMS": []}
    # without the list, WordNet still finds the catalogue's "pant" (ranking.expansion) ...
    assert [hit.product for hit in services.search_products("trousers", k=2, method="lexical").hits] == [pants]
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "EXPANSION": {"ENABLED": False}}
    assert services.search_products("trousers", k=2, method="lexical").hits == []  # ... and without both, nothing


@pytest.mark.django_db
def test_api_shows_the_expanded_query(indexed, client):
    indexed(ProductFactory(title="Cronus Yoga Pant", photos=["black"]))
    body = client.get("/api/search/", {"q": "trousers"}).json()
    assert body["query"]["text"] == "trousers"
    assert body["query"]["expanded"].startswith("trousers pants")


def test_variants_put_one_synonym_for_another():
    groups = synonyms.DEFAULT_GROUPS
    assert synonyms.variants("Quarter zip jacket", groups) == [
        "quarter zip jacket",
        "1/4 zip jacket",
        "half zip jacket",
        "quarter-zip jacket",
    ]
    assert synonyms.variants("winter", groups) == ["winter"]  # no group named: the words alone
    assert len(synonyms.variants("black holdall tee", groups, limit=3)) == 3


@pytest.mark.django_db
def test_a_shoppers_word_for_a_gender_also_searches_the_catalogues(indexed, settings):
    assert synonyms.configured_rewrites() == synonyms.DEFAULT_REWRITES
    women = ProductFactory(title="Layla Tee", description="A tee for Women.", photos=["black"])
    men = ProductFactory(title="Balboa Tee", description="A tee for Men.", photos=["black"])
    indexed(women, men)
    ladies = services.search_products("ladies", k=2, method="lexical")
    assert ladies.query["expanded"] == "ladies women" and [hit.product for hit in ladies.hits] == [women]
    assert services.search_products("guys", k=2, method="lexical").query["expanded"] == "guys men"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "SYNONYMS": []}  # the built-in vocabulary off
    assert synonyms.configured_rewrites() == ()
    assert services.search_products("ladies", k=2, method="lexical").hits == []
