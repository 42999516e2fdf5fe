"""Query analytics (services.analytics): storefront and API searches logged once with the visitor, result
clicks and add-to-cart recorded against their search, the admin's report and CSV against hand-computed
figures, the retention, and who may see the report."""

from __future__ import annotations

import csv
import io
import random
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import DatabaseError
from django.utils import timezone

from multimodal_search import services
from multimodal_search.models import SearchLog, ShopperEvent
from multimodal_search.services.analytics import visitor
from shop.catalog.models import Product

pytestmark = pytest.mark.django_db

CLICK_LINK = re.compile(r'<a class="title" href="(/search/click/(\d+)/(\d+)/)">([^<]*)</a>')
REPORT = "/admin/multimodal_search/searchlog/report/"


def test_a_storefront_search_writes_one_log_row_with_the_session_and_nothing_personal(
    client: Any, catalogue: list[Product]
) -> None:
    response = client.get("/search/", {"q": "desk lamp"}, REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Probe/1.0")
    assert response.status_code == 200
    page = response.context["response"]
    (row,) = SearchLog.objects.all()
    assert (row.query, row.kind, row.source, row.result_count) == ("desk lamp", "text", "storefront", page.total)
    assert row.results == [hit.product_pk for hit in page.hits] and row.first_position == 1
    assert row.latency_ms >= 0 and row.user_id is None
    session_key = client.session.session_key
    assert session_key and row.session == visitor(session_key) and session_key not in row.session
    stored = {field.attname: getattr(row, field.attname) for field in SearchLog._meta.concrete_fields}
    assert set(stored) == {
        "id",
        "created_at",
        "query",
        "corrected",
        "fallback",
        "match",
        "unsold",
        "kind",
        "source",
        "filters",
        "result_count",
        "latency_ms",
        "results",
        "first_position",
        "session",
        "user_id",
    }
    assert "203.0.113.9" not in str(stored) and "Probe" not in str(stored)
    # the same visitor's next search is tied to the same (hashed) session; a photo search is "photo"
    client.get("/search/", {"q": "mug", "sort": "price_asc"})
    assert SearchLog.objects.latest("id").session == row.session
    assert SearchLog.objects.latest("id").filters == {"sort": "price_asc"}


def test_voice_and_photo_searches_are_logged_with_their_kind(client: Any, catalogue: list[Product], photo) -> None:
    session = client.session
    session[services.VOICE_SESSION_KEY] = "coffee mug"
    session.save()
    client.get("/search/", {"q": "coffee mug"})
    client.post("/search/", {"image": photo("yellow")}, follow=True)
    assert list(SearchLog.objects.order_by("id").values_list("kind", "query")) == [
        ("voice", "coffee mug"),
        ("photo", ""),
    ]


def test_the_api_logs_its_searches_with_the_user(client: Any, catalogue: list[Product], django_user_model) -> None:
    user = django_user_model.objects.create_user("shopper", password="x")
    client.force_login(user)
    answer = client.get("/api/v1/search/", {"q": "tent"})
    assert answer.status_code == 200
    (row,) = SearchLog.objects.all()
    assert (row.source, row.user_id, row.query) == ("api", user.pk, "tent")
    assert row.match == (answer.json()["match"] or "")  # the answer's match summary


def test_a_search_none_of_whose_results_is_a_likely_match_counts_as_one_with_no_match() -> None:
    now = timezone.now()
    for query, count, match, fallback in [
        ("kapuzenpullover", 147, "none", ""),  # the API, no cut: every product ranked, none a match
        ("kapuzenpullover", 0, "none", ""),  # the storefront: nothing
        ("winter", 5, "none", "every_word"),  # the products having its words shown instead: a loose query
        ("hoodie", 116, "exact", ""),
        ("hoodie", 25, "", ""),  # logged before the match was
    ]:
        SearchLog.objects.create(
            created_at=now, query=query, kind="text", result_count=count, latency_ms=5.0, match=match, fallback=fallback
        )
    today = timezone.localdate()
    report = services.analytics_report(today, today)
    assert (report.totals.searches, report.totals.zero_results, report.totals.with_results) == (5, 2, 3)
    assert [(row.query, row.searches, row.zero_results) for row in report.zero_results] == [("kapuzenpullover", 2, 2)]
    assert [row.query for row in services.loose_queries(today, today)] == ["winter"]


def test_the_kinds_shoppers_named_that_nothing_here_is_called_are_counted_by_kind(admin_client: Any) -> None:
    now = timezone.now()
    for query, unsold in [
        ("red dress", "dress"),
        ("Red Dress", "dress"),
        ("black dress", "dress"),
        ("scarf", "scarf"),
        ("espresso machine", "espresso machine"),
        ("hoodie", ""),
    ]:
        SearchLog.objects.create(
            created_at=now, query=query, kind="text", result_count=3, latency_ms=5.0, unsold=unsold
        )
    ShopperEvent.objects.create(
        created_at=now, kind="click", product_pk="1", search=SearchLog.objects.get(query="black dress")
    )
    today = timezone.localdate()
    found = [
        (row.words, row.searches, row.clicked_searches, row.example) for row in services.unsold_queries(today, today)
    ]
    assert found == [
        ("dress", 3, 1, "red dress"),
        ("espresso machine", 1, 0, "espresso machine"),
        ("scarf", 1, 0, "scarf"),
    ]
    assert [row.words for row in services.unsold_queries(today, today, limit=1)] == ["dress"]
    page = admin_client.get(REPORT).content.decode()
    assert "What shoppers asked for that nothing here is called" in page
    assert "<tr><td>dress</td><td>3</td><td>1</td><td>red dress</td></tr>" in page


def test_searches_outside_a_face_are_not_logged_and_a_database_error_never_breaks_a_search(
    client: Any, catalogue: list[Product]
) -> None:
    services.search_products("lamp", k=3)  # commands, evaluation, the shell
    assert not SearchLog.objects.exists()
    with mock.patch.object(SearchLog.objects, "create", side_effect=DatabaseError("down")):
        response = client.get("/search/", {"q": "desk lamp"})
    assert response.status_code == 200 and response.context["response"].total > 0
    assert 'href="/products/LAMP-1/"' in response.content.decode()  # plain links when nothing was logged


def test_a_result_click_records_its_position_and_search_and_lands_on_the_product(
    client: Any, catalogue: list[Product]
) -> None:
    html = client.get("/search/", {"q": "desk lamp"}).content.decode()
    links = CLICK_LINK.findall(html)
    search = SearchLog.objects.get()
    assert [int(position) for _url, _id, position, _title in links] == list(range(1, len(search.results) + 1))
    url, search_id, _position, title = links[1]
    assert int(search_id) == search.pk
    response = client.get(url, follow=True)
    product = Product.objects.get(pk=search.results[1])
    assert response.redirect_chain[-1][0] == product.get_absolute_url() and response.status_code == 200
    assert response.context["product"] == product and title == product.title
    click = ShopperEvent.objects.get(kind="click")  # the product page it lands on records a view too
    assert (click.kind, click.search_id, click.position, click.product_pk) == ("click", search.pk, 2, str(product.pk))
    assert click.session == search.session

    # the product page's "Add to cart" is recorded against the same search and position
    cart = client.post("/search/cart/", {"product": product.pk}, follow=True)
    assert cart.redirect_chain[0][1] == 303 and "Added to your cart." in cart.content.decode()
    added = ShopperEvent.objects.get(kind="cart")
    assert (added.search_id, added.position, added.product_pk) == (search.pk, 2, str(product.pk))

    assert client.get(f"/search/click/{search.pk}/99/").status_code == 404
    assert client.get("/search/click/99999999999999999999999/1/").status_code == 404
    assert client.post("/search/cart/", {"product": "not-a-pk"}).status_code == 400
    assert ShopperEvent.objects.count() == 3  # the click, the product page's view, the cart


def seed() -> None:
    """9 searches in the last week (one 40 days ago), 3 clicks: the figures below are counted by hand."""
    now = timezone.now()

    def search(query: str, count: int, *clicks: int, ago: timedelta = timedelta(days=1)) -> None:
        row = SearchLog.objects.create(
            created_at=now - ago, query=query, kind="text", result_count=count, latency_ms=5.0, results=[]
        )
        for position in clicks:
            ShopperEvent.objects.create(
                kind="click", product_pk="1", search=row, position=position, created_at=now - ago
            )

    search("hoodie", 10, 1, 3)
    search("hoodie", 10, 2, ago=timedelta(days=2))
    search("hoodie", 10)
    search("Hoodie", 10)  # the same query, other case
    search("tent", 0)
    search("tent", 0)
    for _ in range(3):
        search("lamp", 5)
    search("hoodie", 10, 1, ago=timedelta(days=40))  # outside the period


def test_the_report_equals_hand_computed_figures(admin_client: Any) -> None:
    seed()
    today = timezone.localdate()
    period = {"start": str(today - timedelta(days=6)), "end": str(today)}
    response = admin_client.get(REPORT, period)
    assert response.status_code == 200
    report = response.context["report"]
    totals = report.totals
    assert (totals.searches, totals.zero_results, totals.with_results) == (9, 2, 7)
    assert (totals.clicked_searches, totals.clicks) == (2, 3)
    assert totals.ctr == pytest.approx(2 / 7) and totals.mean_click_position == pytest.approx(2.0)
    assert [(row.query, row.searches) for row in report.top] == [("hoodie", 4), ("lamp", 3), ("tent", 2)]
    hoodie = report.top[0]
    assert hoodie.ctr == pytest.approx(0.5) and hoodie.mean_click_position == pytest.approx(2.0)
    assert [(row.query, row.zero_results) for row in report.zero_results] == [("tent", 2)]
    assert [(row.query, row.ctr) for row in report.low_click] == [("lamp", 0.0), ("hoodie", 0.5)]
    assert sum(searches for _day, searches, _zero, _clicked in report.days) == 9 and len(report.days) == 7
    html = response.content.decode()
    assert '<td data-figure="ctr">29%</td>' in html and '<td data-figure="mean_click_position">2.00</td>' in html
    assert "<svg" in html and html.count('<rect class="searches"') == 7

    export = admin_client.get(REPORT.replace("report/", "report.csv"), period)
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert [(row["query"], row["searches"], row["zero_results"], row["ctr"]) for row in rows] == [
        ("hoodie", "4", "0", "0.5000"),
        ("lamp", "3", "0", "0.0000"),
        ("tent", "2", "2", ""),
    ]
    assert rows[0]["mean_click_position"] == "2.00" and rows[0]["clicks"] == "3"
    assert (
        admin_client.get(REPORT, {"start": str(today), "end": str(today - timedelta(days=1))}).context["report"] is None
    )


def test_the_reports_lists_and_totals_equal_each_list_ranked_over_every_query(settings: Any) -> None:
    """The report ranks the per-query figures three ways in one statement and keeps each list's first
    ``limit``; the same lists sorted in Python from every query's row, and totals aggregated in one go."""
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "ANALYTICS": {"LOW_CLICK_MIN_SEARCHES": 3}}
    now = timezone.now()
    rng = random.Random(7)
    for number in range(14):
        for _ in range(rng.randint(1, 7)):
            count = 0 if rng.random() < 0.3 else 10
            row = SearchLog.objects.create(
                created_at=now - timedelta(days=rng.randint(0, 5), hours=rng.randint(0, 20)),
                query=f"Query {number}",
                kind="text",
                result_count=count,
                latency_ms=5.0,
            )
            for _ in range(rng.choice([0, 0, 1, 2]) if count else 0):
                ShopperEvent.objects.create(
                    kind="click", product_pk="1", search=row, position=rng.randint(1, 9), created_at=row.created_at
                )
    today = timezone.localdate()
    start = today - timedelta(days=6)
    report = services.analytics_report(start, today, limit=4)
    rows = [services.analytics._figures(row, row["q"]) for row in services.query_figures(start, today)]  # every query's
    assert len(rows) == 14

    def first(keep: Any, key: Any) -> list[Any]:
        return sorted((row for row in rows if keep(row)), key=key)[:4]

    assert report.top == first(lambda row: True, lambda row: (-row.searches, row.query))
    assert report.zero_results == first(lambda row: row.zero_results > 0, lambda row: (-row.zero_results, row.query))
    assert report.low_click == first(
        lambda row: row.with_results >= 3, lambda row: (row.ctr is None, row.ctr or 0, -row.with_results, row.query)
    )
    assert report.low_click and report.zero_results  # the data exercises every list
    exact = services.analytics._figures(
        services.analytics.period_searches(start, today).aggregate(**services.analytics._FIGURES)
    )
    assert report.totals.mean_click_position == pytest.approx(exact.mean_click_position)
    assert replace(report.totals, mean_click_position=None) == replace(exact, mean_click_position=None)


def test_csv_cells_are_not_formulas(admin_client: Any) -> None:
    SearchLog.objects.create(
        created_at=timezone.now(), query="=HYPERLINK(1)", kind="text", result_count=1, latency_ms=1.0
    )
    export = admin_client.get(REPORT.replace("report/", "report.csv")).content.decode()
    assert "'=hyperlink(1)" in export  # queries are grouped lower-cased


def test_csv_export_of_a_bad_period_says_what_is_wrong(admin_client: Any) -> None:
    csv_url = REPORT.replace("report/", "report.csv")
    bad_date = admin_client.get(csv_url, {"start": "2026-99-99"})
    assert bad_date.status_code == 400 and bad_date["Content-Type"].startswith("text/plain")
    assert bad_date.content.decode() == "No export: the period is not valid. Enter a valid date.\n"
    backwards = admin_client.get(csv_url, {"start": "2026-05-02", "end": "2026-05-01"}).content.decode()
    assert backwards == "No export: the period is not valid. The start must not be after the end.\n"


def test_retention_deletes_only_old_rows(settings: Any, django_user_model) -> None:
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "ANALYTICS": {"RETENTION_DAYS": 30}}
    now = timezone.now()
    for days in (31, 29):
        row = SearchLog.objects.create(
            created_at=now - timedelta(days=days), query=f"q{days}", kind="text", result_count=1, latency_ms=1.0
        )
        ShopperEvent.objects.create(kind="click", product_pk="1", search=row, position=1, created_at=row.created_at)
    from multimodal_search.models import ShopperProfile

    user = django_user_model.objects.create_user("keeps-hers")
    for shopper, owner in (("session:old", None), ("session:new", None), (f"user:{user.pk}", user)):
        ShopperProfile.objects.create(shopper=shopper, user=owner)
    ShopperProfile.objects.exclude(shopper="session:new").update(updated_at=now - timedelta(days=31))
    out = io.StringIO()
    call_command("mmsearch_prune_analytics", stdout=out)
    assert "Deleted 1 search(es) and 1 event(s)" in out.getvalue()
    assert list(SearchLog.objects.values_list("query", flat=True)) == ["q29"]
    assert ShopperEvent.objects.get().search.query == "q29"
    # an idle session's profile goes; a fresh one and a signed-in user's stay
    assert set(ShopperProfile.objects.values_list("shopper", flat=True)) == {"session:new", f"user:{user.pk}"}


def test_only_staff_with_the_view_permission_see_the_report(client: Any, django_user_model) -> None:
    for url in (REPORT, REPORT.replace("report/", "report.csv"), "/admin/multimodal_search/searchlog/"):
        assert client.get(url).status_code == 302 and "/admin/login/" in client.get(url)["Location"]
    shopper = django_user_model.objects.create_user("shopper", password="x")
    client.force_login(shopper)
    assert client.get(REPORT).status_code == 302  # not staff: the admin's login page
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(REPORT).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_searchlog"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))
    assert client.get(REPORT).status_code == 200
    assert client.get("/admin/multimodal_search/searchlog/").status_code == 200
