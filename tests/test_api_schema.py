"""The API's OpenAPI schema and docs pages, the /api/v1/ prefix, unknown parameters, JSON 404/405;
and a schemathesis run of every documented operation against the app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import yaml
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from multimodal_search.api import checks as api_checks
from multimodal_search.api.checks import check_api_schema
from shop.catalog.models import Product
from tests.factories import ProductFactory, photo_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(indexed: Any) -> list[Product]:
    products = [
        ProductFactory(sku="TENT-1", title="two person camping tent", photos=["green"]),
        ProductFactory(sku="LAMP-1", title="desk lamp", photos=["yellow"]),
    ]
    indexed(*products)
    return products


def api_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return dict(body["error"])


# --- the schema ------------------------------------------------------------------------------------


def test_schema_is_openapi_3_json_with_search_and_similar(client: Any) -> None:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert set(paths) == {
        *("/api/v1/search/", "/api/v1/search/voice/"),
        *("/api/v1/products/{identifier}/similar/", "/api/v1/index/status/"),
        "/api/v1/autocomplete/",
        *("/api/v1/products/{identifier}/also-viewed/", "/api/v1/popular/"),
        "/api/v1/events/",
        "/api/v1/recommendations/",
    }

    search = paths["/api/v1/search/"]
    names = {p["name"]: p for p in search["get"]["parameters"]}
    assert set(names) == {
        *("q", "k", "category", "method", "min_relevance", "as_typed", "group"),
        *("filter", "price_min", "price_max", "sort", "ordering", "page", "page_size"),
    }
    assert names["group"]["schema"]["type"] == "boolean" and "variants" in names["group"]["description"]
    assert names["as_typed"]["schema"]["type"] == "boolean" and "hoddie" in names["as_typed"]["description"]
    assert names["filter"]["schema"]["type"] == "array" and names["sort"]["schema"]["enum"][0] == "relevance"
    assert names["k"]["schema"]["minimum"] == 1 and names["k"]["schema"]["maximum"] == 100
    assert "rerank" in names["method"]["schema"]["enum"]
    assert names["price_min"]["schema"]["pattern"].startswith("^") and "pattern" not in names["sort"]["schema"]
    # the photo upload: a multipart form whose image is a binary string
    form = search["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][form]["properties"]["image"]["format"] == "binary"
    # answers: the results' shape and the one error body
    ok = search["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    hit = schema["components"]["schemas"][ok]["properties"]["results"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert {"sku", "title", "url", "image", "score", "relevance"} <= set(
        schema["components"]["schemas"][hit]["required"]
    )
    error = search["get"]["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error == "#/components/schemas/Error"
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "field"}

    similar = paths["/api/v1/products/{identifier}/similar/"]["get"]
    assert {(p["in"], p["name"]) for p in similar["parameters"]} == {("path", "identifier"), ("query", "k")}
    assert {"200", "400", "404"} <= set(similar["responses"])


def test_schema_is_yaml_by_default(client: Any) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi;")  # YAML
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.") and "/api/v1/search/" in schema["paths"]


@pytest.mark.parametrize(
    ("path", "asset"),
    [
        ("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ],
)
def test_docs_pages_load_with_local_assets(client: Any, path: str, asset: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert asset in html
    assert "/api/schema/" in html
    assert "cdn.jsdelivr" not in html
    # the asset itself is served (static files from the apps' folders in tests)
    static = client.get(asset)
    assert static.status_code == 200
    assert b"".join(static.streaming_content if static.streaming else [static.content])[:1]


# --- /api/v1/ ------------------------------------------------------------------------------------


def test_v1_search_answers_like_the_unversioned_path(client: Any, catalogue: list[Product]) -> None:
    params = {"q": "camping tent", "k": 2}
    plain, versioned = client.get("/api/search/", params).json(), client.get("/api/v1/search/", params).json()
    for body in (plain, versioned):
        body.pop("took_ms")
    assert versioned == plain
    assert versioned["results"][0]["sku"] == "TENT-1"


def test_v1_photo_search_similar_and_status(
    client: Any, admin_client: Any, catalogue: list[Product], photo: Any
) -> None:
    response = client.post("/api/v1/search/", {"image": photo("yellow"), "k": 1})
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["sku"] == "LAMP-1"
    similar = client.get("/api/v1/products/TENT-1/similar/", {"k": 1}).json()
    assert similar["count"] == 1 and similar["results"][0]["sku"] == "LAMP-1"
    assert api_error(client.get("/api/v1/products/NOPE/similar/"), 404)["code"] == "not_found"
    assert admin_client.get("/api/v1/index/status/").json()["indexed"] == 2


# --- unknown parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api/", "/api/v1/"])
def test_unknown_query_parameter_is_400_naming_it(client: Any, catalogue: list[Product], prefix: str) -> None:
    error = api_error(client.get(f"{prefix}search/", {"q": "tent", "min_relevanse": "0.5"}), 400)
    assert error == {
        "code": "unknown_parameter",
        "message": "Unknown parameter 'min_relevanse'; this endpoint takes: q, k, category, method, "
        "min_relevance, filter, price_min, price_max, sort, ordering, page, page_size, as_typed, group.",
        "field": "min_relevanse",
    }


def test_unknown_parameter_of_similar_and_status(client: Any, admin_client: Any, catalogue: list[Product]) -> None:
    error = api_error(client.get("/api/products/TENT-1/similar/", {"k": 2, "limit": 5}), 400)
    assert (error["code"], error["field"]) == ("unknown_parameter", "limit")
    assert "takes: k." in error["message"]
    error = api_error(admin_client.get("/api/v1/index/status/", {"verbose": 1}), 400)
    assert (error["field"], error["message"]) == (
        "verbose",
        "Unknown parameter 'verbose'; this endpoint takes: no parameters.",
    )


def test_unknown_form_field_and_query_parameter_of_a_photo_search(
    client: Any, catalogue: list[Product], photo: Any
) -> None:
    error = api_error(client.post("/api/v1/search/", {"image": photo("yellow"), "caption": "x"}), 400)
    assert (error["code"], error["field"]) == ("unknown_parameter", "caption")
    error = api_error(client.post("/api/search/?offset=2", {"image": photo("yellow")}), 400)
    assert error["field"] == "offset"
    # known fields may come in the query string of a POST
    assert client.post("/api/search/?k=1", {"image": photo("yellow")}).json()["count"] == 1


def test_get_takes_no_image_parameter(client: Any, catalogue: list[Product]) -> None:
    error = api_error(client.get("/api/search/", {"q": "tent", "image": "http://example.com/a.jpg"}), 400)
    assert (error["code"], error["field"]) == ("unknown_parameter", "image")


def test_drf_format_parameter_is_still_taken(client: Any, catalogue: list[Product]) -> None:
    assert client.get("/api/search/", {"q": "tent", "format": "json"}).status_code == 200


# --- JSON 404 / 405 everywhere under /api/ ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nope/", "/api/v1/nope/", "/api/v1/", "/api/v2/search/", "/api/docs/x/"])
def test_unknown_paths_are_json_404(client: Any, path: str) -> None:
    error = api_error(client.get(path), 404)
    assert error["code"] == "not_found" and error["field"] is None
    assert path in error["message"]
    assert "The endpoints are listed at /api/docs/ (OpenAPI schema: /api/schema/)." in error["message"]


def test_missing_slash_under_v1_gets_a_hint(client: Any) -> None:
    assert "'/api/v1/search/'" in api_error(client.get("/api/v1/search"), 404)["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/search/"),
        ("delete", "/api/search/"),
        ("post", "/api/v1/products/TENT-1/similar/"),
        ("post", "/api/v1/index/status/"),
        ("post", "/api/schema/"),
        ("post", "/api/docs/"),
        ("delete", "/api/redoc/"),
    ],
)
def test_wrong_methods_are_json_405(admin_client: Any, method: str, path: str) -> None:
    error = api_error(getattr(admin_client, method)(path), 405)
    assert error["code"] == "method_not_allowed"
    assert method.upper() in error["message"]


def test_system_checks_warn_when_the_schema_wiring_is_missing(settings: Any, monkeypatch: Any) -> None:
    assert check_api_schema() == []
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema",
    }
    monkeypatch.setattr(api_checks.apps, "is_installed", lambda name: not name.startswith("drf_spectacular"))
    assert [warning.id for warning in check_api_schema()] == [
        "multimodal_search.W001",
        "multimodal_search.W002",
        "multimodal_search.W003",
    ]


# --- schemathesis: every documented operation, generated inputs --------------------------------------


# schemathesis' own pytest integration (schema.parametrize / from_fixture) reaches into pytest internals that
# pytest 9 no longer has, so each operation's Hypothesis strategy is driven here directly.
GENERATED_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """The project's WSGI app in this thread and test transaction (as Django's test client runs it: the
    connection is not closed at the end of each request)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


def test_generated_requests_get_documented_answers(catalogue: list[Product], wsgi_app: WSGIHandler) -> None:
    """No 5xx, and every answer (200s and errors) has a documented status, content type and body."""
    api = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /api/v1/search/",
        "POST /api/v1/search/",
        "POST /api/v1/search/voice/",
        "GET /api/v1/products/{identifier}/similar/",
        "GET /api/v1/index/status/",
        "GET /api/v1/autocomplete/",
        *("GET /api/v1/products/{identifier}/also-viewed/", "GET /api/v1/popular/"),
        *("GET /api/v1/events/", "POST /api/v1/events/", "DELETE /api/v1/events/"),
        "GET /api/v1/recommendations/",
    }
    statuses: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        )
        def run(case: Any) -> None:
            statuses.add(case.call_and_validate(checks=GENERATED_CHECKS).status_code)

        run()
    assert {200, 400, 403} <= statuses  # real searches ran, not only refusals
    # random SKUs are all 404s and random bytes no photo: a real product's neighbours and a real photo too
    by_path = {(op.method.upper(), op.path): op for op in operations}
    similar = by_path["GET", "/api/v1/products/{identifier}/similar/"]
    response = similar.Case(path_parameters={"identifier": "TENT-1"}, query={"k": 1}).call_and_validate(
        checks=GENERATED_CHECKS
    )
    assert response.json()["results"][0]["sku"] == "LAMP-1"
    autocomplete = by_path["GET", "/api/v1/autocomplete/"].Case(query={"q": "desk l", "limit": 1})
    assert autocomplete.call_and_validate(checks=GENERATED_CHECKS).json()["products"][0]["sku"] == "LAMP-1"
    photo_search = by_path["POST", "/api/v1/search/"].Case(
        body={"image": photo_bytes("yellow"), "k": 1},
        media_type="multipart/form-data",
        multipart_content_types={"image": "image/jpeg"},
    )
    assert photo_search.call_and_validate(checks=GENERATED_CHECKS).json()["results"][0]["sku"] == "LAMP-1"
