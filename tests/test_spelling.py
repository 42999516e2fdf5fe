"""Spelling: a typed word no product uses is read as the catalogue's nearest word (``ranking.spelling``)."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from multimodal_search import artefacts, services
from multimodal_search.learning.reranker import train_reranker
from multimodal_search.models import SearchLog, SynonymRule
from multimodal_search.ranking.spelling import ARTEFACT, Speller, edit_distance, get_speller, understood_words
from multimodal_search.services import corrected_queries
from multimodal_search.services.warmup import warm_up
from shop.catalog.models import Category
from tests.factories import ProductFactory


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("hoodie", "hoodie", 0),
        ("hoddie", "hoodie", 1),  # a substitution
        ("jaket", "jacket", 1),  # a letter left out
        ("jcaket", "jacket", 1),  # two neighbours swapped
        ("jackett", "jacket", 1),  # one too many
        ("sweatshrt", "sweatshirt", 1),
        ("waterprooof", "waterproof", 1),
        ("compresoin", "compression", 2),
        ("hoody", "hoodie", 2),
        ("backpack", "hoodie", 3),  # over the limit: limit + 1
    ],
)
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b, 2) == distance
    assert edit_distance(b, a, 2) == distance


DICTIONARY = {
    **{"hoodie": 40, "hoodies": 5, "jacket": 30, "jackets": 30, "backpack": 8, "waterproof": 6, "shirt": 9},
    **{"black": 12, "luma": 20},
}


def test_a_word_the_dictionary_lacks_is_read_as_its_nearest_word():
    speller = Speller(DICTIONARY)
    assert speller.suggest("hoddie") == "hoodie"
    assert speller.suggest("jaket") == "jacket"
    assert speller.suggest("jackett") == "jackets"  # as near as "jacket", and as long as the typed word
    assert speller.suggest("jackts") == "jackets"
    assert speller.suggest("hoodei") == "hoodie"  # "hoodies" is as near, longer
    assert speller.suggest("backpak") == "backpack"
    assert speller.suggest("watreprooof") == "waterproof"  # two edits: long enough
    # four letters: only a word it is one letter short of
    assert speller.suggest("blak") == "black" and speller.suggest("shrt") == "shirt"
    assert speller.suggest("puma") is None  # "luma" is one letter away, not one letter more
    # too short, known (or its plural / singular), not a word, or too far: as typed
    for word in ("tee", "hoodie", "hoodies", "jacket", "shirts", "hoodie2", "trousers", "parka"):
        assert speller.suggest(word) is None, word
    assert speller.suggest("hoddiie") is None  # two edits, but under LONG letters: one at most


def test_a_double_letter_typed_once_costs_no_edit_of_its_own():
    speller = Speller({**DICTIONARY, "leggings": 10, "pullover": 4, "tights": 7})
    # "legins": the double "gg" typed once and the "g" of "-ings" left out, two edits in 6 letters
    assert speller.suggest("legins") == "leggings" and speller.suggest("leging") == "leggings"
    assert speller.suggest("pulovr") == "pullover"
    assert speller.suggest("legings") == "leggings"  # one edit, as before
    assert speller.suggest("tigts") == "tights"  # no double letter: as before
    # a second edit that is no double letter still needs LONG letters
    assert speller.suggest("hoddiie") is None and speller.suggest("jcakte") is None


def test_the_text_keeps_what_it_does_not_correct_and_what_the_catalogue_uses():
    speller = Speller(DICTIONARY)
    nothing_used = lambda words: set()  # noqa: E731
    fixed = speller.correct("Red HODDIE, size M", nothing_used)
    assert fixed is not None and fixed.text == "Red hoodie, size M" and fixed.fixes == (("hoddie", "hoodie"),)
    assert speller.correct("red hoodie", nothing_used) is None
    # a word the catalogue's full text uses (a description, a product newer than the dictionary): as typed
    asked: list[list[str]] = []
    assert speller.correct("jaket", lambda words: asked.append(words) or {"jaket"}) is None
    assert asked == [["jaket"]]  # only the words the dictionary lacks are looked up
    assert Speller.from_json(speller.to_json()).counts == speller.counts
    # a word of the language (the text model's vocabulary) or of an admin's synonym rule: as typed
    assert speller.correct("hoddie", nothing_used) is not None
    assert speller.correct("hoddie", nothing_used, known=(frozenset({"hoddie"}),)) is None
    # the words the search reads whatever the products state: colours, genders, synonyms ("trousers")
    understood = Speller.from_texts(["Alpha Pant"], understood_words())
    assert understood.suggest("purpel") == "purple" and understood.suggest("womems") == "womens"
    assert understood.suggest("trosers") == "trousers" and understood.counts["pant"] == 1


def test_a_hyphenated_word_typed_as_one_is_read_as_the_catalogue_writes_it():
    speller = Speller.from_texts(
        ["Lucia Cross-Fit Bra", "Classic Half-Zips Pack", "Vega V-Neck Tee", "Iris Re-Usable Bottle", "Ana A-B Top"],
        understood_words(),
    )
    assert speller.joined["crossfit"] == "cross-fit" and speller.counts["cross"] == 1
    assert speller.suggest("crossfit") == "cross-fit" and speller.suggest("crossfits") == "cross-fits"
    assert speller.suggest("halfzip") == "half-zip"  # the catalogue's plural, typed singular
    assert speller.suggest("halfzips") == "half-zips" and speller.suggest("vneck") == "v-neck"
    assert Speller.from_texts(["Classic T-Shirt"]).suggest("tshirt") == "t-shirt"  # not "shirt", one letter away
    assert "ab" not in speller.joined  # too short to be read as one word
    fixed = speller.correct("black crossfit bra", lambda words: set())
    assert fixed is not None and fixed.text == "black cross-fit bra"
    # a word the dictionary has as a word of its own is searched as typed; the file keeps the joined words
    assert Speller.from_texts(["Re-Usable Bottle", "Reusable Cup"]).suggest("reusable") is None
    assert Speller.from_json(speller.to_json()).joined == speller.joined
    assert Speller.from_json({"counts": {"bra": 1}}).joined == {}  # a dictionary saved before them


def test_two_words_run_together_are_read_apart_and_two_typed_apart_name_the_one_word():
    speller = Speller.from_texts(
        ["Nona Tank Top", "Bella Tank", "Zoe Top", "Rain Jacket", "Crown Backpack", "Grayson Sweatshirts", "Pack"],
        understood_words(),
    )
    assert speller.suggest("tanktop") == "tank top" and speller.suggest("rainjacket") == "rain jacket"
    assert speller.suggest("tanktops") == "tank tops"
    assert speller.suggest("raintop") == "rain top"
    assert speller.suggest("tankto") != "tank to"  # a part of two letters is too short
    # a word one edit away wins: a letter doubled in "sweatshirts" is no "sweat" + "tshirts"
    assert (
        Speller.from_texts(["Sweat Band", "Classic Tshirts", "Grayson Sweatshirts"]).suggest("sweattshirts")
        == "sweatshirts"
    )
    assert speller.suggest("tankstop") is None  # "tanks" is the dictionary's only as a plural: no first part
    fixed = speller.correct("black tanktop", lambda words: set())
    assert fixed is not None and fixed.text == "black tank top"
    assert speller.correct("black tanktop", lambda words: {"tanktop"}) is None  # a word the catalogue's text uses
    # two typed words the dictionary has as one: named, not corrected (each is a word the shop may use)
    assert speller.compounds("black back pack") == ["backpack"]
    assert speller.compounds("sweat shirts for men") == ["sweatshirts"] and speller.compounds("sweat shirt") == [
        "sweatshirt"
    ]
    assert speller.compounds("backpack") == [] and speller.compounds("tank top") == []  # "tanktop" is no word of it
    assert speller.correct("back pack", lambda words: set(), known=[{"back"}]) is None
    assert speller.joined_prefix("black back pa") == "black backpa" and speller.joined_prefix("sweat sh") == "sweatsh"
    assert speller.joined_prefix("back p") is None  # too short to tell
    assert speller.joined_prefix("tank to") is None and speller.joined_prefix("pack") is None


SPECS = [
    ("Alpha Hoodie", "Clothing > Hoodies", "red"),
    ("Beta Hoodie", "Clothing > Hoodies", "blue"),
    ("Gamma Jacket", "Clothing > Jackets", "green"),
    ("Delta Jacket", "Clothing > Jackets", "yellow"),
    ("Epsilon Backpack", "Gear > Bags", "black"),
    ("Zeta Backpack", "Gear > Bags", "white"),
    ("Eta Tent", "Outdoor > Tents", "green"),
    ("Theta Watch", "Gear > Watches", "black"),
]


def _titles(page: str) -> list[str]:
    return re.findall(r'<a class="title" href="[^"]+">([^<]+)</a>', page)


@pytest.mark.django_db
def test_a_misspelt_word_finds_what_the_word_would(client, admin_client, indexed, model_dir):
    products = [
        ProductFactory(title=title, category=Category.from_path(path), photos=[colour], description="For every day.")
        for title, path, colour in SPECS
    ]
    indexed(*products)
    assert services.search_products("hoddie", k=5).query.get("corrected") is None  # no dictionary yet
    summary = train_reranker(max_queries=40, calibration=20)
    speller = get_speller("hash-v1")
    assert speller is not None and {"hoodie", "jacket", "backpack"} <= set(speller.counts)
    assert summary["spelling_words"] == len(speller)
    artefacts._cache.clear()
    warm_up(force=True)  # a process builds the dictionary's index at start, not on its first search
    assert str(artefacts.artefact_path(ARTEFACT)) in artefacts._cache

    typo = services.search_products("hoddie", k=5)
    right = services.search_products("hoodie", k=5)
    assert typo.query["text"] == "hoddie" and typo.query["corrected"] == "hoodie"
    assert [hit.product_pk for hit in typo.hits] == [hit.product_pk for hit in right.hits]
    as_typed = services.search_products("hoddie", k=5, as_typed=True)
    assert "corrected" not in as_typed.query
    assert [hit.product_pk for hit in as_typed.hits] != [hit.product_pk for hit in right.hits]

    page = client.get("/search/", {"q": "backpak"}).content.decode()
    assert "Showing results for “<strong>backpack</strong>”" in page
    assert set(_titles(page)[:2]) == {"Epsilon Backpack", "Zeta Backpack"}
    link = re.search(r'<a href="([^"]+)" rel="nofollow">Search instead for “backpak”</a>', page)
    assert link and "as_typed=1" in link.group(1)
    assert "Showing results for" not in client.get(link.group(1).replace("&amp;", "&")).content.decode()
    cheap = client.get("/api/v1/search/", {"q": "cheap backpak"}).json()  # the price word kept in the reading
    assert cheap["query"]["corrected"] == "cheap backpack" and cheap["query"]["searched"] == "backpak"
    assert cheap["sort"] == "price_asc" and {item["title"] for item in cheap["results"][:2]} == {
        "Epsilon Backpack",
        "Zeta Backpack",
    }
    body = client.get("/api/v1/search/", {"q": "mens jaket"}).json()
    assert body["query"]["text"] == "mens jaket" and body["query"]["corrected"] == "mens jacket"
    assert "corrected" not in client.get("/api/v1/search/", {"q": "mens jaket", "as_typed": "true"}).json()["query"]
    typed = client.get("/api/v1/autocomplete/", {"q": "backpak"}).json()
    assert typed["corrected"] == "backpack"
    assert {item["title"] for item in typed["products"]} == {"Epsilon Backpack", "Zeta Backpack"}
    assert "corrected" not in client.get("/api/v1/autocomplete/", {"q": "backp"}).json()
    tried = admin_client.post("/admin/multimodal_search/productembedding/try/", {"q": "hoddie"}).content.decode()
    assert "read as <strong>“hoodie”</strong>" in tried

    # the log keeps the words typed and what they were read as; the analytics list the readings
    logged = SearchLog.objects.filter(query="backpak").first()
    assert logged is not None and logged.corrected == "backpack"
    today = timezone.localdate()
    readings = [(row.query, row.corrected, row.searches) for row in corrected_queries(today, today)]
    assert readings == [
        ("backpak", "backpack", 1),  # the storefront
        ("cheap backpak", "cheap backpack", 1),  # the API
        ("mens jaket", "mens jacket", 1),
    ]
    report = admin_client.get("/admin/multimodal_search/searchlog/report/").content.decode()
    assert "<td>backpak</td><td>backpack</td>" in report
    # a merchandiser stops a reading with a synonym rule naming the typed word
    SynonymRule.objects.create(terms="backpak, rucksack")
    assert "corrected" not in services.search_products("backpak", k=3).query

    # a product newer than the dictionary: its own word is searched as typed, though near "jacket"
    newer = ProductFactory(title="Omega Jackat", category=Category.from_path("Clothing > Jackets"), photos=["red"])
    indexed(newer)
    assert get_speller("hash-v1").suggest("jackat") == "jacket"
    found = services.search_products("jackat", k=3)
    assert "corrected" not in found.query and found.hits[0].product_pk == str(newer.pk)


@pytest.mark.django_db
def test_two_typed_words_the_catalogue_writes_as_one_find_it(indexed, model_dir, monkeypatch):
    from multimodal_search.ranking.reranker import get_reranker
    from multimodal_search.services.query import current_encoder

    # every word is in some product's text, so no query expansion reads "day pack" as missing
    specs = [("Alpha Daypack", "Gear > Bags"), ("Beta Daypack", "Gear > Bags"), ("Gamma Hoodie", "Clothing > Hoodies")]
    specs += [("Delta Jacket", "Clothing > Jackets"), ("Eta Watch", "Gear > Watches"), ("Zeta Tee", "Clothing > Tees")]
    indexed(
        *(
            ProductFactory(title=title, category=Category.from_path(path), description="Pack it for a long day.")
            for title, path in specs
        )
    )
    train_reranker(max_queries=40, calibration=20)
    apart = services.search_products("day pack", k=2)
    assert {hit.product.title for hit in apart.hits} == {"Alpha Daypack", "Beta Daypack"}
    assert apart.query["expanded"] == "day pack daypack" and "corrected" not in apart.query
    # autocomplete, the last word still being typed: the one word's products
    for typed, read in (("day pa", "daypa"), ("day pack", "daypack")):
        answer = services.suggest(typed)
        assert answer["corrected"] == read and {p["title"] for p in answer["products"]} == {
            "Alpha Daypack",
            "Beta Daypack",
        }
    assert (
        "corrected" not in services.suggest("zeta t") and services.suggest("zeta t")["products"]
    )  # it matches as typed
    # the storefront cut keeps the products whose titles the words name, as the one word they make
    reranker = get_reranker(current_encoder()[1])
    monkeypatch.setitem(reranker.cuts, "related", 1.01)  # no result passes "auto"
    named = services.search_products("day pack", k=10, min_relevance="auto")
    assert {hit.product.title for hit in named.hits} == {
        "Alpha Daypack",
        "Beta Daypack",
    } and "fallback" not in named.query
