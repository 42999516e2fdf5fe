"""Why a result ranks where it does, in a shopper's words: every segment coloured and named, numbers for staff."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from multimodal_search.ranking.reasons import LEGEND, reasons
from tests.factories import ProductFactory


def test_reasons_name_what_matched_and_leave_out_signals_that_did_not_fire():
    found = reasons(
        {"lexical": 0.45, "colour": 0.3, "title": 0.15, "gender": 0.0, "neighbours": 0.1},
        query_text="black hoodies for men",
        title="Chaz Kangeroo Hoodie",
        colour="Black",
    )
    assert [r.signal for r in found] == ["lexical", "colour", "title", "neighbours"]  # largest share first
    assert found[0].sentence == "matches “hoodies” in the name" and found[0].label == "keywords"
    assert found[1].sentence == "colour: black"
    assert found[3].sentence == "looks like the best matches"
    assert reasons({"visual": 1.0})[0].sentence == "looks like your photo"
    assert reasons({"category": 1.0}, category="Men > Tops > Hoodies")[0].sentence == "category: hoodies"
    # every signal ranking can fire has a legend word (no developer name on the page)
    from multimodal_search.ranking import vocabulary as v

    signals = {v.TEXT, v.TITLE, v.IMAGE, v.VISUAL, v.FUSED, v.LEXICAL, v.NEIGHBOURS, v.COLOUR, v.GENDER}
    assert signals | {v.CATEGORY, v.MATERIAL} <= set(LEGEND)


@pytest.mark.django_db
def test_search_page_explains_in_shoppers_words_with_a_colour_for_every_segment(client, indexed):
    indexed(
        ProductFactory(sku="H-1", title="Black hoodie", color="Black", photos=["black"]),
        ProductFactory(sku="H-2", title="Red hoodie", color="Red", photos=["red"]),
        ProductFactory(sku="M-1", title="Coffee mug", photos=["white"]),
    )
    page = client.get("/search/", {"q": "black hoodie"}).content.decode()
    assert "matches “black”, “hoodie” in the name" in page or "matches “hoodie” in the name" in page
    segments = re.findall(r'<span class="mm-([a-z]+)" style="width:', page)
    assert segments
    styled = set(re.findall(r"\.mm-([a-z]+) \{ background", page))
    assert set(segments) <= styled  # no white-on-white segment
    legend = re.search(r'class="mm-legend">(.*?)</span></p>', page, re.S)
    assert legend is not None
    for developer_word in (">lexical<", ">i<", ">text<", ">photo vs words<"):
        assert developer_word not in page
    assert "% likely a match" not in page and "%)" not in page  # numbers are for staff

    staff = User.objects.create_user("merch", password="pw-123456789", is_staff=True)
    client.force_login(staff)
    page = client.get("/search/", {"q": "black hoodie"}).content.decode()
    assert re.search(r"\(\d+%\)", page)  # shares in the segments' titles
