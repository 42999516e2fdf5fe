"""Safe defaults: DEBUG and SECRET_KEY, the deploy checks, API authentication, throttling and permissions."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import call_command

from multimodal_search.models import REINDEX_PERMISSION
from shop.secret_key import ensure_secret_key, read_secret_key
from tests.factories import ProductFactory

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "a-production-secret-that-is-long-and-random-enough-3f9c1e7a5b2d4c6e8f0a",
    "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://shop.example.com",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_SECURE_HSTS_PRELOAD": "1",
    "DJANGO_SECURE_COOKIES": "1",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
}


def manage(args: list[str], data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py ARGS`` with the demo settings, a data folder of its own and only the given Django variables."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DEMO_")) and key not in ("DATABASE_URL", "MMSEARCH_KEEP_DB")
    }
    base.update({"DJANGO_SETTINGS_MODULE": "shop.settings", "MMSEARCH_DATA_DIR": str(data), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


# --- DEBUG and SECRET_KEY -------------------------------------------------------------------------


def test_no_start_without_a_secret_key_when_debug_is_off(tmp_path):
    result = manage(["check"], tmp_path)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "DJANGO_SECRET_KEY is not set and DEBUG is off" in last_line


def test_a_server_error_is_logged_to_the_console_when_debug_is_off(tmp_path):
    """Django's own logging mails a request's traceback to ADMINS when DEBUG is off and prints nothing:
    an operator reading the server's log would not see why a page answered 500."""
    ensure_secret_key(tmp_path)
    raise_one = (
        "import logging\n"
        "try:\n    raise RuntimeError('boom in a view')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('django.request').error('Internal Server Error: /search/', exc_info=True)\n"
        "    logging.getLogger('django.request').warning('Not Found: /nope/')\n"
    )
    result = manage(["shell", "--no-imports", "-c", raise_one], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Internal Server Error: /search/" in result.stderr and "RuntimeError: boom in a view" in result.stderr
    assert "Not Found" not in result.stderr  # 4xx answers are the visitors' mistakes, not the log's business


def test_debug_is_off_unless_asked_and_the_demo_key_is_kept(tmp_path):
    show = ["shell", "--no-imports", "-c", "from django.conf import settings; print('DEBUG', settings.DEBUG)"]
    path = ensure_secret_key(tmp_path)
    key = read_secret_key(tmp_path)
    assert len(key) >= 50 and path.stat().st_mode & 0o777 == 0o600
    assert ensure_secret_key(tmp_path) == path and read_secret_key(tmp_path) == key  # kept, not replaced

    off = manage(show, tmp_path)
    assert off.returncode == 0, off.stderr
    assert "DEBUG False" in off.stdout
    on = manage(show, tmp_path, DJANGO_DEBUG="1")
    assert "DEBUG True" in on.stdout


def test_processes_starting_together_agree_on_one_key(tmp_path):
    """web, worker and beat of docker compose each run `python -m shop.secret_key` at start."""
    env = {**os.environ, "MMSEARCH_DATA_DIR": str(tmp_path)}
    starts = [
        subprocess.Popen([sys.executable, "-m", "shop.secret_key"], env=env, stdout=subprocess.DEVNULL)
        for _ in range(6)
    ]
    assert all(process.wait(60) == 0 for process in starts)
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]
    key = read_secret_key(tmp_path)
    assert len(key) >= 50
    assert ensure_secret_key(tmp_path) and read_secret_key(tmp_path) == key


def test_check_deploy_passes_for_the_production_settings(tmp_path):
    deploy = ["check", "--deploy", "--fail-level", "WARNING"]
    result = manage(deploy, tmp_path, **PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    # the demo's defaults (plain HTTP) are not a production configuration, and the check says so
    demo = manage(deploy, tmp_path, DJANGO_SECRET_KEY=PRODUCTION_ENV["DJANGO_SECRET_KEY"])
    assert demo.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in demo.stderr


# --- API: authentication, permissions, throttling -------------------------------------------------


@pytest.fixture
def staff_user(django_user_model):
    """A staff user who may manage products but not the search index."""
    user = django_user_model.objects.create_user("clerk", password="clerk-pass", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="catalog"))
    return user


@pytest.fixture
def throttle_rates(settings):
    """throttle_rates(anon=..., user=..., photo=...) sets the API's rates (others off), on a clean cache."""

    def apply(**rates: str | None) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None, "photo": None, **rates},
        }

    cache.clear()
    yield apply
    cache.clear()


@pytest.mark.django_db
def test_index_status_needs_the_reindex_permission(client, staff_user, admin_user):
    url = "/api/index/status/"
    assert client.get(url).status_code == 403
    client.force_login(staff_user)
    assert client.get(url).status_code == 403
    staff_user.user_permissions.add(Permission.objects.get(codename="reindex_products"))
    client.force_login(type(staff_user).objects.get(pk=staff_user.pk))  # fresh permission cache
    response = client.get(url)
    assert response.status_code == 200
    assert "indexed" in str(response.json())
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_basic_authentication_is_not_accepted(client, admin_user):
    admin_user.set_password("right-password")
    admin_user.save()
    credentials = base64.b64encode(b"admin:right-password").decode()
    response = client.get("/api/index/status/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 403  # the right password, but Basic auth is not a way in
    assert client.login(username="admin", password="right-password")
    assert client.get("/api/index/status/").status_code == 200  # a session is


@pytest.mark.django_db
def test_anonymous_clients_are_throttled_per_ip(client, throttle_rates):
    throttle_rates(anon="3/min")
    statuses = [client.get("/api/search/", {"q": "hat"}).status_code for _ in range(4)]
    assert 429 not in statuses[:3] and statuses[3] == 429
    other_ip = client.get("/api/search/", {"q": "hat"}, REMOTE_ADDR="10.1.2.3")
    assert other_ip.status_code != 429


@pytest.mark.django_db
def test_signed_in_users_have_their_own_rate(client, throttle_rates, staff_user):
    throttle_rates(anon="1/min", user="3/min")
    client.force_login(staff_user)
    statuses = [client.get("/api/search/", {"q": "hat"}).status_code for _ in range(4)]
    assert 429 not in statuses[:3] and statuses[3] == 429


@pytest.mark.django_db
def test_photo_searches_have_a_tighter_rate(client, throttle_rates, photo, indexed):
    indexed(ProductFactory(sku="HAT-1", title="red wool hat", photos=["red"]))
    throttle_rates(anon="100/min", photo="2/min")
    posts = [client.post("/api/search/", {"image": photo("red"), "k": "3"}).status_code for _ in range(3)]
    assert posts[:2] == [200, 200] and posts[2] == 429
    # text searches of the same client still pass: only uploads count against the photo rate
    assert client.get("/api/search/", {"q": "hat"}).status_code == 200


@pytest.mark.django_db
def test_throttled_answer_is_a_clear_429(client, throttle_rates):
    throttle_rates(anon="1/min")
    client.get("/api/search/", {"q": "hat"})
    response = client.get("/api/search/", {"q": "hat"})
    assert response.status_code == 429
    assert "Retry-After" in response.headers
    assert "throttled" in response.content.decode().lower()


# --- admin: re-index action and index pages ----------------------------------------------------


@pytest.mark.django_db
def test_plain_staff_cannot_reindex_or_see_the_index_pages(client, staff_user):
    products = [ProductFactory(sku="HAT-1"), ProductFactory(sku="CAP-1")]
    client.force_login(staff_user)
    assert client.get("/admin/catalog/product/").status_code == 200  # their own pages work
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        response = client.post(
            "/admin/catalog/product/",
            {"action": "reindex_selected", "_selected_action": [p.pk for p in products]},
        )
    assert response.status_code == 403
    assert send.call_count == 0
    assert client.get("/admin/multimodal_search/productembedding/").status_code == 403
    assert client.get("/admin/multimodal_search/productembedding/try/", {"q": "hat"}).status_code == 403
    assert "productembedding" not in client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_staff_with_the_reindex_permission_can_reindex(client, staff_user):
    products = [ProductFactory(sku="HAT-1"), ProductFactory(sku="CAP-1")]
    staff_user.user_permissions.add(Permission.objects.get(codename="reindex_products"))
    client.force_login(staff_user)
    assert staff_user.has_perm(REINDEX_PERMISSION)
    with mock.patch("multimodal_search.services.enqueue.send_index_task") as send:
        response = client.post(
            "/admin/catalog/product/",
            {"action": "reindex_selected", "_selected_action": [p.pk for p in products]},
            follow=True,
        )
    assert send.call_count == 1
    assert "Queued 2 product(s)" in response.content.decode()
    assert client.get("/admin/multimodal_search/productembedding/").status_code == 200


# --- the demo's admin login -----------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_admin_logs_in_with_the_documented_credentials(client, django_user_model):
    call_command("ensure_demo_admin", stdout=io.StringIO())
    response = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": "admin", "next": "/admin/"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/multimodal_search/productembedding/").status_code == 200

    # a second run keeps the one user and its (possibly changed) password
    user = django_user_model.objects.get(username="admin")
    user.set_password("changed")
    user.save()
    call_command("ensure_demo_admin", stdout=io.StringIO())
    assert django_user_model.objects.filter(username="admin").count() == 1
    assert django_user_model.objects.get(username="admin").check_password("changed")


@pytest.mark.django_db
def test_the_demo_shopper_signs_in_on_the_storefront_not_the_admin(client, django_user_model):
    call_command("ensure_demo_admin", "--shopper", stdout=io.StringIO())
    shopper = django_user_model.objects.get(username="shopper")
    assert not shopper.is_staff and not shopper.is_superuser
    assert "Sign in" in client.get("/").content.decode()
    page = client.get("/accounts/login/?next=/search/")
    assert page.status_code == 200 and "shopper" in page.content.decode()
    response = client.post("/accounts/login/", {"username": "shopper", "password": "shopper", "next": "/search/"})
    assert response.status_code == 302 and response.headers["Location"] == "/search/"
    home = client.get("/").content.decode()
    assert "Sign out" in home and "shopper" in home
    assert client.get("/admin/").status_code == 302  # not staff: no admin
    wrong = client.post("/accounts/login/", {"username": "shopper", "password": "nope"})
    assert wrong.status_code == 200 and "do not match" in wrong.content.decode()
    assert client.post("/accounts/logout/").status_code == 302
    assert "Sign in" in client.get("/").content.decode()
