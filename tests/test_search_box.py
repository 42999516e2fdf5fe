"""The search box: a photo search gets a shareable GET address (a short-lived token), shows the
photo above the results and keeps it while words refine it; the box is in every page's header."""

from __future__ import annotations

import io
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import caches
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from multimodal_search import services
from multimodal_search.services.photo_tokens import KEY_PREFIX
from shop.catalog.models import Product
from tests import crafted_images as img
from tests.factories import photo_bytes

pytestmark = pytest.mark.django_db

CARD_TITLE = re.compile(r'<a class="title" href="[^"]*">([^<]*)</a>')


def upload(colour: str = "yellow", name: str = "query.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, photo_bytes(colour, size=96), "image/png")


def post_photo(client: Any, **fields: Any) -> tuple[str, dict[str, list[str]]]:
    response = client.post("/search/", {"image": upload(), **fields})
    assert response.status_code == 303, response.content[:300]
    location = response["Location"]
    assert urlsplit(location).path == "/search/"
    return location, parse_qs(urlsplit(location).query)


def titles(html: str) -> list[str]:
    return CARD_TITLE.findall(html)


def test_photo_post_redirects_to_a_shareable_get_address(client: Any, catalogue: list[Product]) -> None:
    location, params = post_photo(client, q="", k="")
    token = params["photo"][0]
    assert services.is_token(token) and "q" not in params  # empty fields are left out
    page = client.get(location)  # a new visitor (no session needed) opening the shared link
    assert page.status_code == 200
    html = page.content.decode()
    assert titles(html)[0] == "desk lamp"
    assert f'src="/search/photo/{token}/"' in html and 'alt="The photo you searched with"' in html
    assert f'name="photo" value="{token}"' in html  # the header box keeps the photo for refining
    assert 'href="/search/?">Remove photo</a>' in html
    assert client.get(location).content.decode().count("mm-card") == html.count("mm-card")  # reloadable


def test_kept_photo_is_the_reencoded_decoded_photo_not_the_upload(client: Any, catalogue: list[Product]) -> None:
    _, params = post_photo(client)
    entry = caches["query_photos"].get(KEY_PREFIX + params["photo"][0])
    assert entry["photo"].startswith(b"\xff\xd8") and entry["photo"] != photo_bytes("yellow", size=96)
    assert Image.open(io.BytesIO(entry["photo"])).format == "JPEG"


def test_thumbnail_view_returns_a_jpeg(client: Any, catalogue: list[Product]) -> None:
    big = io.BytesIO()
    Image.new("RGB", (1600, 1200), (200, 30, 30)).save(big, format="JPEG")
    response = client.post("/search/", {"image": SimpleUploadedFile("big.jpg", big.getvalue(), "image/jpeg")})
    token = parse_qs(urlsplit(response["Location"]).query)["photo"][0]
    thumbnail = client.get(f"/search/photo/{token}/")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    assert thumbnail["Cache-Control"].startswith("private")
    image = Image.open(io.BytesIO(thumbnail.content))
    assert image.format == "JPEG" and max(image.size) == 320
    assert client.get("/search/photo/unknown-token-123456/").status_code == 404
    assert client.post(f"/search/photo/{token}/").status_code == 405


def test_words_refine_the_kept_photo(client: Any, catalogue: list[Product]) -> None:
    location, params = post_photo(client)
    token = params["photo"][0]
    photo_only = titles(client.get(location).content.decode())
    refined_page = client.get("/search/", {"photo": token, "q": "ceramic coffee mug"})
    assert refined_page.status_code == 200
    html = refined_page.content.decode()
    refined = titles(html)
    assert refined != photo_only and refined[0] == "ceramic coffee mug"
    assert "Results for your photo and “ceramic coffee mug”" in html
    assert 'href="/search/?q=ceramic+coffee+mug">Remove photo</a>' in html
    # without JavaScript the box posts the words and the kept token: same search, as a GET address
    response = client.post("/search/", {"q": "ceramic coffee mug", "photo": token})
    assert response.status_code == 303
    assert parse_qs(urlsplit(response["Location"]).query) == {"q": ["ceramic coffee mug"], "photo": [token]}
    # a new photo replaces the kept one
    _, again = post_photo(client, photo=token)
    assert again["photo"][0] != token


def test_words_only_post_redirects_to_the_plain_address(client: Any, catalogue: list[Product]) -> None:
    response = client.post("/search/", {"q": "desk lamp"})
    assert response.status_code == 303 and response["Location"] == "/search/?q=desk+lamp"


@pytest.mark.parametrize("token", ["x" * 24, "short", "../../etc/passwd", "a" * 65, "<script>alert(1)</script>"])
def test_unknown_or_malformed_token_is_a_clear_message(client: Any, catalogue: list[Product], token: str) -> None:
    response = client.get("/search/", {"photo": token, "q": "lamp"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "expired" in html and "Upload the photo again" in html
    assert "<script>alert(1)" not in html and "mm-card" not in html


def test_expired_token_is_a_clear_message(client: Any, catalogue: list[Product], settings: Any) -> None:
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "QUERY_PHOTOS": {"CACHE": "query_photos", "TTL": 1}}
    location, params = post_photo(client)
    assert client.get(location).status_code == 200
    time.sleep(1.5)  # Redis drops the key after its TTL
    response = client.get(location)
    assert response.status_code == 400 and "This photo search has expired" in response.content.decode()
    assert client.get(f"/search/photo/{params['photo'][0]}/").status_code == 404


def test_photo_search_still_works_when_the_photo_store_is_down(
    client: Any, catalogue: list[Product], settings: Any
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "query_photos": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 1},
        },
    }
    response = client.post("/search/", {"image": upload()})
    assert response.status_code == 200
    html = response.content.decode()
    assert titles(html)[0] == "desk lamp" and "no shareable link" in html
    kept = client.get("/search/", {"photo": "y" * 24})
    assert kept.status_code == 400 and "could not be loaded" in kept.content.decode()


@pytest.mark.parametrize(
    "data", [img.zero_png(12000, 12000), img.truncated(photo_bytes("red", size=256)), b"not an image"]
)
def test_hostile_uploads_keep_their_errors_and_keep_nothing(
    client: Any, catalogue: list[Product], data: bytes, monkeypatch: Any
) -> None:
    kept: list[Any] = []
    monkeypatch.setattr(services, "keep_photo", lambda image: kept.append(image) or "never")
    response = client.post("/search/", {"image": SimpleUploadedFile("bad.png", data)})
    assert response.status_code == 400 and "photo" in response.content.decode().lower()
    assert kept == []


@pytest.mark.parametrize("path", ["/", "/search/", "/search/?q=lamp", "/products/LAMP-1/"])
def test_header_box_on_every_page(client: Any, catalogue: list[Product], path: str) -> None:
    html = client.get(path).content.decode()
    assert html.count("data-mm-search-box") == 1
    assert 'enctype="multipart/form-data"' in html and 'name="csrfmiddlewaretoken"' in html
    assert '<label class="mm-hidden" for="mm-box-q">Search products</label>' in html
    assert 'accept="image/*" capture="environment"' in html
    assert "multimodal_search/search_box.js" in html and "multimodal_search/search_box.css" in html


def test_box_static_files_are_served(client: Any) -> None:
    for name in ("search_box.js", "search_box.css"):
        response = client.get(f"/static/multimodal_search/{name}")
        assert response.status_code == 200, name


def test_system_check_names_a_missing_photo_cache(settings: Any) -> None:
    from multimodal_search.checks import check_settings

    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "QUERY_PHOTOS": {"CACHE": "nope"}}
    assert "multimodal_search.E006" in [error.id for error in check_settings()]
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "QUERY_PHOTOS": {"CACHE": "query_photos"}}
    assert "multimodal_search.E006" not in [error.id for error in check_settings()]
