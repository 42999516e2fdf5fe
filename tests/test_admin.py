"""Admin: index health, the query tester and the re-index action."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.html import escape

from multimodal_search.models import ProductEmbedding
from multimodal_search.ranking.departments import Departments, save_departments
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed_catalogue(indexed):
    products = [
        ProductFactory(sku="HAT-1", title="wool winter hat", photos=["red"]),
        ProductFactory(sku="CAP-1", title="baseball cap", photos=["blue"]),
    ]
    indexed(*products)
    return products


def test_index_health_on_the_vectors_changelist(admin_client, indexed_catalogue):
    html = admin_client.get("/admin/multimodal_search/productembedding/").content.decode()
    model_id = ProductEmbedding.objects.get(product_pk=str(indexed_catalogue[0].pk)).model_id
    # the encoder version column: the head's part on one line, the whole id on hover
    assert f'<span title="{model_id}" style="white-space:nowrap">{model_id.rsplit("/", 1)[-1]}</span>' in html
    assert "Index health" in html and "2 of 2 searchable products indexed" in html


def test_try_a_search_shows_signals_and_explanations(admin_client, indexed_catalogue, model_dir):
    response = admin_client.get(
        "/admin/multimodal_search/productembedding/try/", {"q": "winter hat", "method": "decision"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.index("HAT-1") < html.index("CAP-1")
    assert "lexical" in html and "Read from the words" not in html  # nothing asked beside their meaning
    bad = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "hat", "method": "nope"})
    assert "Unknown method" in bad.content.decode()

    # the words read as shoppers' are: what they leave out, a price, a product code
    read = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "cheapest hat -blue under 30"})
    html = read.content.decode()
    assert "Read from the words:" in html and "searched as <strong>“hat”</strong>" in html
    assert "leaving out <strong>“blue”</strong>" in html and "price: Under $30" in html
    assert "shown in relevance order, with no relevance cut" in html
    coded = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "cap-1"}).content.decode()
    assert "the product code <strong>“cap-1”</strong>" in coded and coded.index("CAP-1") < coded.index("HAT-1")
    assert re.search(r"code (\d\.\d{3}|–) <strong>100%</strong>", coded)  # the code alone placed it
    # kinds joined: each searched on its own (the kinds mmsearch_train keeps with the departments)
    save_departments(ProductEmbedding.objects.first().model_id, Departments(kinds=["cap", "hat"]))
    both = admin_client.get("/admin/multimodal_search/productembedding/try/", {"q": "hats and caps"}).content.decode()
    assert "each of <strong>“hats”</strong>, <strong>“caps”</strong> searched on its own" in both


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"q": "hoodie\x00", "method": "feature"}, "The request contains null characters."),
        ({"q": "a" * 501}, "Use at most 500 characters, as the storefront's search box does."),
        ({"q": "  "}, "Type some words or choose a photo."),
        (
            {"q": "", "photo": SimpleUploadedFile("t.jpg", b"plain text", "image/jpeg")},
            "We could not read that photo: the file is not an image we know (JPEG, PNG, WebP, GIF...).",
        ),
    ],
)
def test_the_playground_answers_bad_input_with_a_message(admin_client, indexed_catalogue, data, message):
    response = admin_client.post("/admin/multimodal_search/productembedding/try/", data)
    html = response.content.decode()
    assert response.status_code == 400 and f'<p class="errornote">{escape(message)}</p>' in html
    assert "InMemoryUploadedFile" not in html
    assert admin_client.get("/admin/multimodal_search/productembedding/try/").status_code == 200  # nothing asked


def test_reindex_action_enqueues_and_reports(admin_client, indexed_catalogue):
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as apply_async:
        response = admin_client.post(
            "/admin/catalog/product/",
            {"action": "reindex_selected", "_selected_action": [p.pk for p in indexed_catalogue]},
            follow=True,
        )
    assert apply_async.call_count == 1
    assert "Queued 2 product(s)" in response.content.decode()
