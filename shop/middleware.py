"""The demo store's middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.html import escape


def explain_not_allowed(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """A 405 of an HTML page says which methods the address takes (Django's ``require_POST`` and
    ``require_http_methods`` answer with an empty body). The API's 405s have their JSON body already."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if response.status_code == 405 and not response.content and not request.path.startswith("/api/"):
            allowed = escape(response.get("Allow", ""))
            response.content = (
                "<!doctype html><title>Method not allowed</title>"
                f"<p>This address does not answer {escape(request.method or '')} requests; it answers {allowed}. "
                '<a href="/">Back to the store</a>.</p>'
            ).encode()
            response["Content-Type"] = "text/html; charset=utf-8"
        return response

    return middleware
