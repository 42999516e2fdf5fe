"""Hostile and unusual input over the REST API and the HTML pages: never a 5xx, always a clear answer.

Every API error must be ``{"error": {"code", "message", "field"}}``; HTML pages must escape what
they echo; decompression-bomb-like photos must not raise a server process's memory by 200 MB.
(``schemathesis`` is not run: the API has no OpenAPI schema yet.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from shop.catalog.models import Product
from tests import crafted_images as img
from tests.factories import ProductFactory, photo_bytes

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "<script>alert('x')</script>"
SQL = "'; DROP TABLE catalog_product; --"
LONG = "a" * 10_000
EMOJI = "👟 red running shoe 🔥"
RTL = "حذاء أحمر שמלה"
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()  # the API throttles count in the cache; each case starts from zero


@pytest.fixture
def catalogue(indexed: Any) -> list[Product]:
    products = [
        ProductFactory(sku="TENT-1", title="two person camping tent", photos=["green"]),
        ProductFactory(sku="MUG-1", title="ceramic coffee mug", photos=["white"]),
    ]
    indexed(*products)
    return products


def assert_api_error(response: Any, status: int, field: str | None = "<any>") -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if field != "<any>":
        assert error["field"] == field, error
    return error


def assert_no_raw_script(response: Any) -> None:
    html = response.content.decode("utf-8", "replace")
    assert SCRIPT not in html
    assert "<script>alert(" not in html


# --- GET /api/search/ ----------------------------------------------------------------------------

GOOD_QUERIES = {
    "emoji": {"q": EMOJI},
    "rtl": {"q": RTL},
    "script-in-q": {"q": SCRIPT},
    "sql-in-q": {"q": SQL},
    "script-in-category": {"q": "tent", "category": SCRIPT},
    "sql-in-category": {"q": "tent", "category": SQL},
    "k-at-max": {"q": "tent", "k": "100"},
    "k-padded": {"q": "tent", "k": " 5 "},
    "method-known": {"q": "tent", "method": "lexical"},
}


@pytest.mark.parametrize("params", GOOD_QUERIES.values(), ids=GOOD_QUERIES.keys())
def test_api_search_odd_but_valid_queries_answer(client: Any, catalogue: list[Product], params: dict) -> None:
    response = client.get("/api/search/", params)
    assert response.status_code == 200, response.content[:500]
    assert isinstance(response.json()["results"], list)
    assert Product.objects.count() == 2  # the SQL did nothing


BAD_QUERIES = {
    "empty": ({}, None),
    "blank-q": ({"q": "   "}, None),
    "10000-chars": ({"q": LONG}, "q"),
    "nul-in-q": ({"q": "tent\x00"}, "q"),
    "nul-in-category": ({"q": "tent", "category": "\x00"}, "category"),
    "nul-in-unknown-parameter": ({"q": "tent", "x": "\x00"}, "x"),
    "unknown-parameter": ({"q": "tent", "utm_source": SCRIPT, "page": SQL}, "utm_source"),
    "k-zero": ({"q": "tent", "k": "0"}, "k"),
    "k-negative": ({"q": "tent", "k": "-3"}, "k"),
    "k-too-big": ({"q": "tent", "k": "101"}, "k"),
    "k-huge": ({"q": "tent", "k": "9" * 30}, "k"),
    "k-text": ({"q": "tent", "k": "ten"}, "k"),
    "k-float": ({"q": "tent", "k": "1e3"}, "k"),
    "k-script": ({"q": "tent", "k": SCRIPT}, "k"),
    "k-sql": ({"q": "tent", "k": "1 OR 1=1"}, "k"),
    "method-unknown": ({"q": "tent", "method": "bogus"}, "method"),
    "method-script": ({"q": "tent", "method": SCRIPT}, "method"),
    "category-too-long": ({"q": "tent", "category": LONG}, "category"),
}


@pytest.mark.parametrize(("params", "field"), BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
def test_api_search_bad_queries_are_400(client: Any, catalogue: list[Product], params: dict, field: str) -> None:
    error = assert_api_error(client.get("/api/search/", params), 400, field)
    assert SCRIPT not in error["message"] or field == "method"  # DRF names the bad choice in JSON, not HTML


def test_api_nul_in_a_parameter_name_is_400(client: Any, catalogue: list[Product]) -> None:
    assert_api_error(client.get("/api/search/?q=tent&a%00b=1"), 400)


# --- POST /api/search/ with photos ----------------------------------------------------------------

GOOD_PHOTOS = {
    "jpeg": ("p.jpg", img.jpeg()),
    "cmyk-jpeg": ("p.jpg", img.jpeg(mode="CMYK")),
    "greyscale-jpeg": ("p.jpg", img.jpeg(mode="L")),
    "exif-rotated-jpeg": ("p.jpg", img.jpeg(orientation=6)),
    "16-bit-png": ("p.png", img.png("I;16")),
    "alpha-png": ("p.png", img.png("RGBA")),
    "palette-png-transparent": ("p.png", img.png("P")),
    "1-bit-png": ("p.png", img.png("1")),
    "animated-gif": ("p.gif", img.animated_gif()),
    "strip-at-the-aspect-limit": ("p.png", img.zero_png(2000, 100)),
    "photo-with-script-name": (f"{SCRIPT}.jpg", img.jpeg()),
}


@pytest.mark.parametrize(("name", "data"), GOOD_PHOTOS.values(), ids=GOOD_PHOTOS.keys())
def test_api_photo_formats_are_searched(client: Any, catalogue: list[Product], name: str, data: bytes) -> None:
    response = client.post("/api/search/", {"image": SimpleUploadedFile(name, data), "k": "2"})
    assert response.status_code == 200, response.content[:500]
    assert response.json()["query"]["image"] is True


BAD_PHOTOS = {
    "truncated-jpeg": ("p.jpg", img.truncated(photo_bytes("red", size=256))),
    "truncated-png": ("p.png", img.truncated(img.png("RGB", (256, 256)))),
    "not-an-image": ("p.jpg", b"GIF89a but not really" * 10),
    "empty-file": ("p.jpg", b""),
    "html-as-jpeg": ("p.jpg", f"<html>{SCRIPT}</html>".encode()),
    "12000x20-strip": ("p.png", img.zero_png(12000, 20)),
    "12000x12000-bomb": ("p.png", img.zero_png(12000, 12000)),
}


@pytest.mark.parametrize(("name", "data"), BAD_PHOTOS.values(), ids=BAD_PHOTOS.keys())
def test_api_bad_photos_are_400_on_the_image_field(
    client: Any, catalogue: list[Product], name: str, data: bytes
) -> None:
    error = assert_api_error(client.post("/api/search/", {"image": SimpleUploadedFile(name, data)}), 400, "image")
    assert SCRIPT not in error["message"]


def test_api_bomb_message_says_what_is_wrong(client: Any, catalogue: list[Product]) -> None:
    strip = client.post("/api/search/", {"image": SimpleUploadedFile("s.png", img.zero_png(12000, 20))})
    assert "12000×20" in strip.json()["error"]["message"]
    bomb = client.post("/api/search/", {"image": SimpleUploadedFile("b.png", img.zero_png(12000, 12000))})
    assert "megapixels" in bomb.json()["error"]["message"]


def test_api_13_mb_photo_is_413_before_it_is_read(client: Any, catalogue: list[Product]) -> None:
    data = img.noise_png(13 * MIB)
    error = assert_api_error(client.post("/api/search/", {"image": SimpleUploadedFile("big.png", data)}), 413)
    assert error["code"] == "too_large" and "10 MB" in error["message"]


def test_api_photo_just_over_the_limit_is_a_clear_400(client: Any, settings: Any, catalogue: list[Product]) -> None:
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "MAX_UPLOAD_BYTES": 100_000}
    data = img.noise_png(150_000)
    error = assert_api_error(client.post("/api/search/", {"image": SimpleUploadedFile("big.png", data)}), 400)
    assert error["field"] == "image" and "larger than" in error["message"]


def test_api_query_photo_is_not_stored_or_echoed(client: Any, settings: Any, catalogue: list[Product]) -> None:
    media = Path(settings.MEDIA_ROOT)
    before = sorted(media.rglob("*"))
    response = client.post("/api/search/", {"image": SimpleUploadedFile("q.jpg", img.jpeg())})
    assert response.status_code == 200
    assert sorted(media.rglob("*")) == before
    assert response.json()["query"]["image"] is True  # a flag, never the photo or a URL to it


def test_api_oversized_form_field_is_413(client: Any, catalogue: list[Product]) -> None:
    error = assert_api_error(client.post("/api/search/", {"q": "tent", "notes": "x" * (3 * MIB)}), 413)
    assert error["code"] == "too_large"


def test_api_thousands_of_form_fields_are_400(client: Any, catalogue: list[Product]) -> None:
    fields = {f"f{i}": "1" for i in range(1500)}
    assert_api_error(client.post("/api/search/", {"q": "tent", **fields}), 400, None)


def test_api_json_body_is_415(client: Any, catalogue: list[Product]) -> None:
    response = client.post("/api/search/", json.dumps({"q": "tent"}), content_type="application/json")
    assert_api_error(response, 415)


# --- methods, unknown paths, the similar endpoint -------------------------------------------------


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_api_unknown_methods_are_405(client: Any, catalogue: list[Product], method: str) -> None:
    error = assert_api_error(getattr(client, method)("/api/search/"), 405, None)
    assert error["code"] == "method_not_allowed"


def test_api_made_up_method_is_405(client: Any, catalogue: list[Product]) -> None:
    assert_api_error(client.generic("BREW", "/api/search/"), 405, None)


def test_api_post_to_similar_is_405(client: Any, catalogue: list[Product]) -> None:
    assert_api_error(client.post("/api/products/TENT-1/similar/"), 405, None)


@pytest.mark.parametrize(
    "path", ["/api/", "/api/nope/", "/api/search", f"/api/{SCRIPT}/", "/api/products/", "/api/%00/"]
)
def test_api_unknown_paths_are_json_404(client: Any, path: str) -> None:
    error = assert_api_error(client.get(path), 404, None)
    assert error["code"] == "not_found"


def test_api_missing_slash_gets_a_hint(client: Any) -> None:
    assert "'/api/search/'" in client.get("/api/search").json()["error"]["message"]


@pytest.mark.parametrize(
    "identifier", ["%00", "TENT-1%00", "NOPE", "%3Cscript%3E", "'%20OR%20'1'='1", "x" * 10_000, "%F0%9F%91%9F"]
)
def test_api_similar_unknown_or_hostile_product_is_404(client: Any, catalogue: list[Product], identifier: str) -> None:
    error = assert_api_error(client.get(f"/api/products/{identifier}/similar/"), 404, None)
    assert len(error["message"]) < 300


@pytest.mark.parametrize("k", ["0", "101", "-1", "abc", "\x00", "9" * 30, ""])
def test_api_similar_validates_k_as_search_does(client: Any, catalogue: list[Product], k: str) -> None:
    assert_api_error(client.get("/api/products/TENT-1/similar/", {"k": k}), 400, "k")


def test_api_similar_accepts_the_search_range(client: Any, catalogue: list[Product]) -> None:
    assert client.get("/api/products/TENT-1/similar/", {"k": "100"}).status_code == 200
    assert client.get("/api/products/TENT-1/similar/", {"k": "1"}).json()["count"] == 1


# --- HTML pages ----------------------------------------------------------------------------------

HTML_CASES = {
    "list-nul-category": ("/?category=%00", 404),
    "list-script-category": (f"/?category={SCRIPT}", 404),
    "list-sql-category": (f"/?category={SQL}", 404),
    "list-long-category": (f"/?category={LONG}", 404),
    "list-huge-category-id": ("/?category=" + "9" * 30, 404),
    "list-unicode-digit-category": ("/?category=%C2%B2", 404),
    "list-nul-page": ("/?page=%00", 200),
    "list-script-page": (f"/?page={SCRIPT}", 200),
    "list-unknown-parameter": (f"/?utm={SCRIPT}", 200),
    "category-huge-id": ("/categories/" + "9" * 30 + "/", 404),
    "product-nul": ("/products/%00/", 404),
    "product-script": ("/products/%3Cscript%3E/", 404),
    "product-sql": ("/products/'%20OR%201=1--/", 404),
    "product-long": ("/products/" + "x" * 10_000 + "/", 404),
    "search-script": (f"/search/?q={SCRIPT}", 200),
    "search-sql": (f"/search/?q={SQL}", 200),
    "search-emoji": (f"/search/?q={EMOJI}", 200),
    "search-rtl": (f"/search/?q={RTL}", 200),
    "search-nul": ("/search/?q=tent%00", 400),
    "search-nul-elsewhere": ("/search/?q=tent&x=%00", 400),
    "search-long": (f"/search/?q={LONG}", 400),
    "search-bad-k": ("/search/?q=tent&k=abc", 400),
    "search-k-too-big": ("/search/?q=tent&k=1000", 400),
    "search-script-category": (f"/search/?q=tent&category={SCRIPT}", 200),
}


@pytest.mark.parametrize(("path", "status"), HTML_CASES.values(), ids=HTML_CASES.keys())
def test_html_pages_answer_hostile_input(client: Any, catalogue: list[Product], path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status, response.content[:300]
    assert_no_raw_script(response)


def test_a_missing_page_keeps_the_store_around_it(client: Any, catalogue: list[Product]) -> None:
    for path in ("/products/NOPE/", "/categories/99999/", "/nonexistent/"):
        response = client.get(path)
        html = response.content.decode()
        assert response.status_code == 404 and "We could not find that page" in html, path
        assert 'class="brand"' in html and "data-mm-search-box" in html  # the header and its search box
    assert '<link rel="icon" href="data:,">' in client.get("/").content.decode()  # no favicon request


def test_html_search_echoes_script_escaped(client: Any, catalogue: list[Product]) -> None:
    html = client.get("/search/", {"q": SCRIPT}).content.decode()
    assert "&lt;script&gt;alert(" in html


HTML_PHOTOS = {
    "truncated": (img.truncated(photo_bytes("red", size=256)), 400),
    "12000x20-strip": (img.zero_png(12000, 20), 400),
    "12000x12000-bomb": (img.zero_png(12000, 12000), 400),
    "animated-gif": (img.animated_gif(), 200),
    "cmyk": (img.jpeg(mode="CMYK"), 200),
}


@pytest.mark.parametrize(("data", "status"), HTML_PHOTOS.values(), ids=HTML_PHOTOS.keys())
def test_html_search_photo_uploads(client: Any, catalogue: list[Product], data: bytes, status: int) -> None:
    # a readable photo: 303 to the results' GET address (tests/test_search_box.py), followed here
    response = client.post("/search/", {"image": SimpleUploadedFile(f"{SCRIPT}.png", data)}, follow=True)
    assert response.status_code == status, response.content[:300]
    assert_no_raw_script(response)
    if status == 400:
        assert "photo" in response.content.decode().lower()


def test_html_search_13_mb_photo_is_413(client: Any, catalogue: list[Product]) -> None:
    response = client.post("/search/", {"image": SimpleUploadedFile("big.png", img.noise_png(13 * MIB))})
    assert response.status_code == 413
    assert "10 MB" in response.content.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [("put", "/search/"), ("delete", "/"), ("post", "/products/TENT-1/"), ("patch", "/"), ("get", "/search/cart/")],
)
def test_html_unknown_methods_are_405(client: Any, catalogue: list[Product], method: str, path: str) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 405
    if method != "head":  # a body that says which methods the address takes, never an empty page
        allowed = response["Allow"]
        assert f"it answers {allowed}" in response.content.decode() and response["Content-Type"].startswith("text/html")


# --- memory: a separate server-like process per photo, its peak RSS measured -----------------------

PROBE = r"""
import io, json, resource, sys
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from multimodal_search.encoders.images import prepare_image

from django.db import transaction

data = open(sys.argv[1], "rb").read()
client = Client()
# rolled back: the searches' log rows would otherwise stay in the test database, which the tests that
# run after this one share (8 analytics tests failed when they ran after it)
with transaction.atomic():
    warm = client.post("/api/search/", {"image": SimpleUploadedFile("w.png", open(sys.argv[2], "rb").read())})
    assert warm.status_code == 200, warm.content
    prepare_image(Image.open(io.BytesIO(open(sys.argv[2], "rb").read())))
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = peak()
    status = client.post("/api/search/", {"image": SimpleUploadedFile("p.png", data)}).status_code
    after_request = peak()
    if sys.argv[3] == "prepare":  # the CNN preprocessing on its own, without open_photo in front
        prepare_image(Image.open(io.BytesIO(data)))
    transaction.set_rollback(True)
print(json.dumps({"status": status, "request": after_request - before, "prepare": peak() - after_request}))
"""

# (photo, expected status, also run prepare_image on it): the strips padded to a square before they were
# shrunk cost +0.4 GB; the bomb decoded in full cost +1.6 GB
MEMORY_CASES = {
    "12000x20-strip": (lambda: img.zero_png(12000, 20), 400, "prepare"),
    "12000x12000-bomb": (lambda: img.zero_png(12000, 12000), 400, "-"),
    "12000x600-strip-accepted": (lambda: img.zero_png(12000, 600), 200, "prepare"),
    "13-mb-png": (lambda: img.noise_png(13 * MIB), 413, "-"),
}


@pytest.mark.parametrize(("make", "status", "prepare"), MEMORY_CASES.values(), ids=MEMORY_CASES.keys())
def test_photo_requests_raise_process_memory_by_less_than_200_mb(
    tmp_path: Path, make: Any, status: int, prepare: str
) -> None:
    photo, warm = tmp_path / "photo.png", tmp_path / "warm.png"
    photo.write_bytes(make())
    warm.write_bytes(img.png("RGB"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJANGO_TEST_DB_NAME": connection.settings_dict["NAME"],
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(photo), str(warm), prepare],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["status"] == status
    assert measured["request"] < 200 * MIB, measured
    assert measured["prepare"] < 200 * MIB, measured
