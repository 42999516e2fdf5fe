"""Catalogue-aware query expansion from WordNet: the shop's own word for what a shopper typed."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal_search import services
from multimodal_search.encoders import get_encoder
from multimodal_search.ranking import expansion, synonyms, wordnet
from multimodal_search.services import query
from multimodal_search.store import get_store
from tests.factories import ProductFactory


def counter(catalogue: dict[str, int]) -> expansion.CountTerms:
    return lambda terms, cap: {term: min(cap, catalogue.get(term, 0)) for term in terms}


def test_wordnet_ships_in_a_package_and_knows_phrases_plurals_and_relatives():
    assert wordnet.available()
    (sense,) = wordnet.senses("Throw Pillows")
    assert sense.lemmas == ("throw pillow",)
    assert [wordnet.synset(o).lemmas for o in sense.hypernyms] == [("cushion",)]
    assert "couch" in wordnet.senses("sofas")[0].lemmas
    assert wordnet.base_forms("mice") == ["mouse"]
    assert not wordnet.is_noun("xyzzy")


def test_phrases_are_the_longest_nouns_and_skip_colour_gender_and_stop_words():
    assert expansion.phrases("black throw pillows for the sofa") == ["throw pillows", "sofa"]
    assert expansion.phrases("womens red xyzzy") == []


def test_a_phrase_the_catalogue_lacks_gets_the_catalogue_word_weighted_by_support():
    found = expansion.plan("black throw pillow", counter({"cushion": 12, "black": 40}), lambda: 100)
    assert [(e.phrase, e.term, e.relation) for e in found] == [("throw pillow", "cushion", expansion.HYPERNYM)]
    assert found[0].weight == pytest.approx(0.8)  # hypernym 0.8 x first sense x full support
    once = expansion.plan("throw pillow", counter({"cushion": 1}), lambda: 100)
    assert once[0].weight < found[0].weight  # one product is weaker evidence than twelve
    everywhere = expansion.plan("throw pillow", counter({"cushion": 95}), lambda: 100)
    assert everywhere == [] or everywhere[0].weight < 0.1 + 1e-9  # a word on every product ranks nothing


def test_words_the_catalogue_uses_are_not_expanded():
    calls: list[list[str]] = []

    def count(terms, cap):
        calls.append(list(terms))
        assert cap == 1  # whether the query's words are used at all
        return {"cushion": 1, "pillow": 1, "throw": 1}

    assert expansion.plan("cushion", count, lambda: 100) == []
    assert expansion.plan("throw pillow", count, lambda: 100) == []  # every word is the shop's own
    assert len(calls) == 2  # one count per query: no candidate was looked up


def test_an_expansion_the_catalogue_does_not_support_is_not_added():
    assert expansion.plan("throw pillow", counter({"blanket": 4}), lambda: 10) == []


def test_a_phrase_whose_relatives_the_shop_never_uses_gets_a_broader_word():
    # "sportswear" is filed under "attire", which no sports shop says; "attire" is filed under "clothing"
    shop = {"clothing": 5, "wear": 31, "tee": 12}
    found = expansion.plan("activewear", counter(shop), lambda: 200)
    assert {(e.phrase, e.term, e.relation) for e in found} == {
        ("activewear", "clothing", expansion.HYPERNYM),
        ("activewear", "wear", expansion.HYPERNYM),
    }
    assert all(e.weight == pytest.approx(0.8) for e in found)  # a hypernym the word itself names
    # a relative the shop uses is taken, and nothing broader: "attire" itself, or "clothing" for outerwear
    assert [e.term for e in expansion.plan("activewear", counter({**shop, "attire": 3}), lambda: 200)] == ["attire"]
    outerwear = expansion.plan("outerwear", counter(shop), lambda: 200)
    assert {e.term for e in outerwear} == {"clothing", "wear"} and outerwear[0].weight == pytest.approx(0.8)
    # nothing the shop uses at either level: nothing added
    assert expansion.plan("activewear", counter({"tee": 12}), lambda: 200) == []
    # a hat is a headdress, a kind of clothing too, but "hat" does not end with "wear": a shop without hats
    # finds nothing for it, not its clothes
    assert expansion.plan("hat", counter(shop), lambda: 200) == []
    assert expansion.plan("gloves", counter(shop), lambda: 200) == []


def test_a_kind_the_shop_does_not_sell_is_not_read_as_all_its_clothes():
    shop = {"apparel": 30, "clothes": 12, "garment": 8, "clothing": 20, "wear": 9, "hoodie": 40}
    general = ["apparel", "clothes", "clothing", "garment", "wear"]
    # WordNet files "dress" (also) under clothing in general, and "jumpsuit" under garment
    assert {e.term for e in expansion.plan("red dress", counter(shop), lambda: 200)} & set(general)
    assert expansion.plan("red dress", counter(shop), lambda: 200, general=general) == []
    assert expansion.plan("jumpsuit", counter(shop), lambda: 200, general=general) == []
    # a word that ends with the general word still gets it: all of a sports shop's clothes are sportswear
    found = expansion.plan("sportswear", counter(shop), lambda: 200, general=general)
    assert {e.term for e in found} & {"clothing", "wear"}


def test_phrases_the_synonym_list_covers_are_left_to_it():
    count = counter({"pant": 5})
    assert [e.term for e in expansion.plan("trousers", count, lambda: 100)] == ["pant"]
    assert expansion.plan("trousers", count, lambda: 100, covered={"trousers"}) == []
    assert synonyms.named("blue quarter zip jacket") == ["quarter zip"]  # "quarter" is left to the list


def test_only_senses_that_name_goods_are_expanded():
    assert expansion.plan("quarter", counter({"part": 11, "fourth": 3}), lambda: 100) == []


def test_a_goods_sense_the_word_is_rarely_used_in_is_not_expanded():
    # "kid" is a child in all 53 of its uses in WordNet's tagged corpus, never the leather ("kidskin")
    assert wordnet.tag_counts("kids") == {9917593: 53}
    assert expansion.plan("kids", counter({"leather": 10}), lambda: 100) == []
    # a word whose commonest sense is goods keeps its other goods senses by rank: "mouse" is the animal
    # 14 times and the computer's never, and a shop that says "electronic device" still finds it
    mouse = expansion.plan("mouse", counter({"electronic device": 5}), lambda: 100)
    assert [e.term for e in mouse] == ["electronic device"] and mouse[0].weight == pytest.approx(0.64)
    # a word the corpus never tagged keeps its senses' weights by rank ("throw pillow": above)
    assert wordnet.tag_counts("throw pillow") == {}


def test_a_catalogue_synonym_wins_over_wider_relatives():
    found = expansion.plan("couch", counter({"sofa": 4, "seat": 20}), lambda: 100)
    assert [e.term for e in found] == ["sofa"]
    assert [e.term for e in expansion.plan("couch", counter({"seat": 20}), lambda: 100)] == ["seat"]


def test_a_synonym_is_read_in_its_own_commonest_goods_sense():
    # WordNet lists "lid" among the hat's lemmas, but a shop's "lid" is a cover ("hat" found a water bottle)
    assert "lid" in wordnet.senses("hat")[0].lemmas
    assert wordnet.first_goods_sense("lid") != wordnet.senses("hat")[0].offset
    assert expansion.plan("hat", counter({"lid": 3}), lambda: 100) == []
    assert [e.term for e in expansion.plan("hat", counter({"lid": 3, "chapeau": 3}), lambda: 100)] == ["chapeau"]
    # a synonym whose commonest goods sense this is stays one ("pant" is first a breath, then a trouser)
    assert [e.term for e in expansion.plan("trousers", counter({"pant": 5}), lambda: 100)] == ["pant"]


def test_variants_and_expanded_text():
    cushion = expansion.Expansion("throw pillows", "cushion", expansion.HYPERNYM, 0.8, 3)
    assert expansion.variant("Black Throw  Pillows", cushion) == "Black cushion"
    assert expansion.expanded_text("black throw pillows", [cushion]) == "black throw pillows cushion"


@pytest.mark.django_db
def test_the_store_counts_products_per_phrase_with_stemming_and_a_cap(indexed):
    indexed(
        ProductFactory(title="Linen cushion cover", photos=["white"]),
        ProductFactory(title="Velvet cushions, set of two", photos=["red"]),
        ProductFactory(title="Wool throw blanket", photos=["grey"]),
    )
    model_id = get_encoder().model_id
    counts = get_store().term_counts(model_id, ["cushion", "throw blanket", "blanket throw", "pillow", "the"], cap=10)
    assert counts == {"cushion": 2, "throw blanket": 1, "blanket throw": 0, "pillow": 0, "the": 0}
    assert get_store().term_counts(model_id, ["cushion"], cap=1) == {"cushion": 1}


@pytest.fixture
def homeware(indexed):
    cushion = ProductFactory(title="Linen cushion", description="Square scatter cushion, feather filled.")
    lamp = ProductFactory(title="Brass table lamp", description="Warm light for a side table.")
    rug = ProductFactory(title="Jute rug", description="Hand woven.")
    indexed(cushion, lamp, rug)
    return cushion


@pytest.mark.django_db
def test_throw_pillow_finds_the_cushion_and_expansion_can_be_turned_off(homeware, settings):
    response = services.search_products("throw pillow", k=3, method="lexical")
    assert [hit.product for hit in response.hits] == [homeware]
    assert response.query["expanded"] == "throw pillow cushion"
    assert services.search_products("throw pillow", k=3).hits[0].product == homeware  # the default method too
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "EXPANSION": {"ENABLED": False}}
    assert services.search_products("throw pillow", k=3, method="lexical").hits == []


@pytest.mark.django_db
def test_the_api_finds_the_cushion(homeware, client):
    body = client.get("/api/search/", {"q": "throw pillows", "k": 3}).json()
    assert body["results"][0]["sku"] == homeware.sku
    assert body["query"]["expanded"] == "throw pillows cushion"


@pytest.mark.django_db
def test_a_query_in_the_catalogues_words_is_searched_as_typed(homeware):
    assert "expanded" not in services.search_products("linen cushion", k=3).query
    assert "expanded" not in services.search_products("table lamps", k=3).query


@pytest.mark.django_db
def test_the_text_vector_leans_towards_the_catalogue_word(homeware):
    encoder = get_encoder()
    expanded = query.encode_query("throw pillow", None)
    plain, cushion = encoder.encode_text(["throw pillow", "cushion"])
    assert np.linalg.norm(expanded.text_vector) == pytest.approx(1.0, abs=1e-5)
    assert float(expanded.text_vector @ cushion) > float(plain @ cushion) + 0.2


@pytest.mark.django_db
def test_nothing_is_added_when_the_catalogue_has_no_relative(indexed):
    indexed(ProductFactory(title="Brass table lamp"), ProductFactory(title="Jute rug"))
    response = services.search_products("throw pillow", k=3, method="lexical")
    assert response.hits == [] and "expanded" not in response.query


@pytest.mark.django_db
def test_keyword_matches_are_taken_first_by_the_typed_words(homeware, monkeypatch):
    """The keyword branch takes first the products with every word typed, not every word searched: an
    expansion ("cushion") is one more word to match, not one more word to require."""
    expanded = query.encode_query("throw pillow", None)
    assert expanded.typed == "throw pillow" and "cushion" in (expanded.text or "")
    store_class = type(get_store())
    requests = []
    original = store_class.candidates
    monkeypatch.setattr(
        store_class,
        "candidates",
        lambda self, request, scope: requests.append(request) or original(self, request, scope),
    )
    services.search_products("throw pillow", k=3)
    assert requests[0].all_words == "throw pillow" and "cushion" in (requests[0].lexical_text or "")


def test_what_a_person_does_is_the_verb_their_noun_derives_from():
    from multimodal_search.ranking.wordnet import activity

    found = {word: activity(word) for word in ("runner", "runners", "hiker", "cyclist", "swimmer", "skier", "walker")}
    assert found == {
        "runner": "running",  # not "smuggling": a runner is also a smuggler, but the stem rule passes it over
        "runners": "running",
        "hiker": "hiking",
        "cyclist": "cycling",
        "swimmer": "swimming",
        "skier": "skiing",
        "walker": "walking",
    }
    assert activity("yogi") is None and activity("jacket") is None and activity("him") is None


def test_a_kind_of_goods_the_catalogue_has_no_word_for_is_unsold():
    kinds = ["hoodie", "pant", "tee", "bag"]
    nothing = lambda words: set()  # noqa: E731 (no product's text uses any of them)
    assert expansion.unsold("red dress", "red dress", kinds, nothing) == ["dress"]
    assert expansion.unsold("scarf", "scarf joint", kinds, nothing) == ["scarf"]  # its expansion is no kind either
    # a kind it sells, typed, by a synonym ("trousers": "pants") or by an expansion ("sweater" -> "hoodie")
    assert expansion.unsold("cashmere hoodie", "cashmere hoodie", kinds, nothing) == []
    assert expansion.unsold("trousers", "trousers pants", kinds, nothing) == []
    assert expansion.unsold("laptop bag", "laptop bag", kinds, nothing) == []
    # no goods named ("yoga", "winter", colours, genders), or a word some product's text uses ("mat")
    assert expansion.unsold("womens yoga", "womens yoga", kinds, nothing) == []
    assert expansion.unsold("red winter", "red winter", kinds, nothing) == []
    assert expansion.unsold("yoga mat", "yoga mat", kinds, lambda words: {"mat"} & set(words)) == []
    assert expansion.unsold("red dress", "red dress", [], nothing) == []  # nothing trained: no kinds known
    # a plural that is also a lemma of its own ("in her shoes") is read as the plural too
    assert expansion.unsold("shoes", "shoes", kinds, nothing) == ["shoes"]
    # a kind's word WordNet knows only as an abstraction ("fitness equipment"'s "fitness", added by the
    # synonym "fitness mat") names no kind
    assert expansion.unsold("yoga mat", "yoga mat fitness mat", [*kinds, "fitness"], nothing) == ["mat"]
    # a kind the shop sells is a kind of the word: a "tank top" is a shirt, a "pullover" a sweater
    assert expansion.unsold("shirt", "shirt", ["top"], nothing) == []
    assert expansion.unsold("sweater", "sweater", ["pullover"], nothing) == []
    assert expansion.unsold("cardigan", "cardigan", ["hoodie", "top"], nothing) == ["cardigan"]


def test_a_sense_named_by_a_compound_the_word_only_begins_is_not_the_word_s():
    # "scarf joint" (carpentry) is WordNet's second goods sense of "scarf": a shop without scarves whose
    # descriptions say "joint" found a resistance band for "scarf"
    assert "joint" not in expansion.candidates("scarf") and "scarf joint" not in expansion.candidates("scarf")
    assert expansion.plan("scarf", counter({"joint": 10}), lambda: 100) == []
    assert "kerchief" in expansion.candidates("scarf")  # its own sense's relatives stay
    assert "tank car" not in expansion.candidates("tanks") and "short circuit" not in expansion.candidates("shorts")
    # a compound ending with the word is a kind of it, and stays ("musket ball" is a ball)
    kept = [sense.lemmas[0] for sense in expansion.goods_senses("ball", wordnet.senses("ball"))]
    assert "musket ball" in kept
    assert [sense.lemmas[0] for sense in expansion.goods_senses("scarf", wordnet.senses("scarf"))] == ["scarf"]
