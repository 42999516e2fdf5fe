"""Merchandising rules edited in the admin: synonyms and per-query pins, boosts, burials and hides."""

from __future__ import annotations

import pytest

from multimodal_search import services
from multimodal_search.models import QueryRule, SynonymRule
from multimodal_search.services import merchandising
from multimodal_search.services.merchandising import Rule
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

SEARCH = "/api/v1/search/"


@pytest.fixture(autouse=True)
def _fresh_rules():
    # a test's rows are rolled back without a signal: start and end with a new version
    services.rules_changed()
    yield
    services.rules_changed()


@pytest.fixture
def no_setting_synonyms(settings):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "SYNONYMS": []}


@pytest.fixture
def store(indexed):
    products = {
        "hoodie": ProductFactory(sku="HOOD-1", title="grey cotton hoodie"),
        "tent": ProductFactory(sku="TENT-1", title="two person camping tent"),
        "mug": ProductFactory(sku="MUG-1", title="ceramic coffee mug"),
        "lamp": ProductFactory(sku="LAMP-1", title="desk lamp"),
    }
    indexed(*products.values())
    return products


def skus(client, q, **params):
    response = client.get(SEARCH, {"q": q, **params})
    assert response.status_code == 200, response.content
    body = response.json()
    return [row["sku"] for row in body["results"]], body["query"]


@pytest.mark.parametrize("method", ["lexical", "text"])
def test_a_one_way_synonym_changes_keyword_and_vector_results(client, store, no_setting_synonyms, method):
    before, query = skus(client, "sweater", method=method, k=1)
    assert "expanded" not in query
    if method == "lexical":
        assert before == []  # no product says "sweater"
    SynonymRule.objects.create(kind=SynonymRule.ONEWAY, terms="sweater => hoodie")
    after, query = skus(client, "sweater", method=method, k=1)
    assert query["expanded"] == "sweater hoodie"
    assert after == ["HOOD-1"]
    # one way: "hoodie" is not rewritten to "sweater"
    assert "expanded" not in skus(client, "hoodie", method=method)[1]


def test_a_synonym_group_from_the_admin_is_added_to_the_settings_groups(client, store):
    SynonymRule.objects.create(kind=SynonymRule.GROUP, terms="mug, beaker")
    assert skus(client, "beaker", method="lexical", k=1)[0] == ["MUG-1"]
    assert "beaker" in skus(client, "mug", method="lexical")[1]["expanded"]
    assert skus(client, "hooded sweatshirt", method="lexical", k=1)[0] == ["HOOD-1"]  # the built-in groups stay


@pytest.mark.parametrize("method", ["lexical", "text", "feature"])
def test_a_pin_puts_its_product_first_for_its_query_only(client, store, method):
    mug = store["mug"]
    rule = QueryRule.objects.create(query="Hoodie", action=QueryRule.PIN, product_pk=str(mug.pk), similarity=1.0)
    found, query = skus(client, "hoodie", method=method, k=3)
    assert found[:2] == ["MUG-1", "HOOD-1"]
    assert query["rules"] == [
        {"id": rule.pk, "action": "pin", "product": str(mug.pk), "matched": "words", "similarity": 1.0}
    ]
    found, query = skus(client, "camping tent", method=method, k=3)
    assert found[0] == "TENT-1" and "rules" not in query


def test_rule_changes_take_effect_at_the_next_search(client, store):
    rule = QueryRule.objects.create(query="hoodie", action=QueryRule.PIN, product_pk=str(store["lamp"].pk))
    assert skus(client, "hoodie", k=3)[0][:2] == ["LAMP-1", "HOOD-1"]
    rule.position = 2
    rule.save()
    assert skus(client, "hoodie", k=3)[0][:2] == ["HOOD-1", "LAMP-1"]
    rule.active = False
    rule.save()
    found, query = skus(client, "hoodie", k=1)
    assert found == ["HOOD-1"] and "rules" not in query
    rule.active = True
    rule.save()
    rule.delete()
    assert skus(client, "hoodie", k=1)[0] == ["HOOD-1"]


def test_hide_removes_a_product(client, store):
    assert "HOOD-1" in skus(client, "grey hoodie", k=4)[0]
    QueryRule.objects.create(query="grey hoodie", action=QueryRule.HIDE, product_pk=str(store["hoodie"].pk))
    found, query = skus(client, "grey hoodie", k=4)
    assert "HOOD-1" not in found and len(found) == 3
    assert query["rules"][0]["action"] == "hide"


def test_a_pin_fires_on_a_paraphrase_above_its_similarity(client, store):
    # the built-in group ("hoodie", "hoody", "hooded sweatshirt") brings the two queries' vectors together
    QueryRule.objects.create(query="hoodie", action=QueryRule.PIN, product_pk=str(store["mug"].pk), similarity=0.5)
    found, query = skus(client, "hooded sweatshirt", k=2)
    assert found[0] == "MUG-1"
    assert query["rules"][0]["matched"] == "meaning" and query["rules"][0]["similarity"] >= 0.5
    assert "rules" not in skus(client, "desk lamp", k=2)[1]


def rule(action, pk, position=1, places=10):
    return Rule(1, "q", action, pk, position, places, 0.8)


def test_apply_rules_orders_hides_then_moves_then_pins():
    order = [str(n) for n in range(8)]
    assert merchandising.apply_rules(order, [rule("boost", "6", places=2)])[:5] == ["0", "1", "2", "3", "6"]
    assert merchandising.apply_rules(order, [rule("boost", "6", places=0)])[0] == "6"
    assert merchandising.apply_rules(order, [rule("bury", "0", places=2)])[:3] == ["1", "2", "0"]
    assert merchandising.apply_rules(order, [rule("bury", "0", places=0)])[-1] == "0"
    assert merchandising.apply_rules(order, [rule("pin", "x", position=2)])[:3] == ["0", "x", "1"]
    assert merchandising.apply_rules(order, [rule("pin", "x")], insert=False) == order
    assert merchandising.apply_rules(order, [rule("hide", "3"), rule("pin", "3")]) == [pk for pk in order if pk != "3"]


def test_the_admin_lists_and_edits_rules(admin_client, store):
    SynonymRule.objects.create(kind=SynonymRule.ONEWAY, terms="sweater => hoodie")
    QueryRule.objects.create(query="hoodie", product_pk=str(store["mug"].pk))
    for name in ("synonymrule", "queryrule"):
        response = admin_client.get(f"/admin/multimodal_search/{name}/", {"q": "hoodie"})
        assert response.status_code == 200 and b"hoodie" in response.content
    response = admin_client.post(
        "/admin/multimodal_search/synonymrule/add/", {"kind": "oneway", "terms": "sweater", "active": "on"}
    )
    assert response.status_code == 200 and b"one-way rewrite reads" in response.content
    # the playground previews which rules fire for a query
    page = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "hoodie"}).content.decode()
    assert "Merchandising rules that fired: <a" in page and "pin product" in page


@pytest.mark.slow
def test_a_pin_fires_on_a_paraphrase_by_meaning_alone(packaged_settings, settings, client, indexed):
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "SYNONYMS": []}  # no synonym links the words
    hoodie = ProductFactory(sku="HOOD-1", title="grey cotton hoodie")
    mug = ProductFactory(sku="MUG-1", title="ceramic coffee mug")
    indexed(hoodie, mug, ProductFactory(sku="LAMP-1", title="desk lamp"))
    QueryRule.objects.create(query="hoodie", action=QueryRule.PIN, product_pk=str(mug.pk), similarity=0.7)
    found, query = skus(client, "hooded sweatshirt", k=2)  # MiniLM: cosine about 0.74 to "hoodie"
    assert found[0] == "MUG-1"
    assert query["rules"][0]["matched"] == "meaning"
    assert "rules" not in skus(client, "desk lamp", k=2)[1]


def test_a_search_reads_the_rules_stamp_once(client, store):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    QueryRule.objects.create(query="hoodie", action=QueryRule.PIN, product_pk=str(store["mug"].pk))
    with CaptureQueriesContext(connection) as queries:
        assert skus(client, "hoodie", k=3)[0][0] == "MUG-1"
    stamps = [q["sql"] for q in queries.captured_queries if "COUNT" in q["sql"] and "queryrule" in q["sql"]]
    assert len(stamps) == 1, stamps  # synonyms, catalogue expansions and query rules share one read
