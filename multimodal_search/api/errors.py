"""One error format for the whole API.

Every 4xx answer of the API has this body::

    {"error": {"code": "invalid", "message": "k must be between 1 and 100.", "field": "k"}}

``code`` is a stable machine-readable word: ``not_found``, ``method_not_allowed``, ``too_large``,
``throttled``, ``not_authenticated``, ``permission_denied``, ``parse_error``, ``unsupported_media_type``,
``bad_request``, and for a bad parameter ``invalid`` or DRF's more precise code (``max_length``,
``min_value``, ``invalid_image``, ``null_characters_not_allowed``...). ``message`` is a sentence for
people and ``field`` the request parameter at fault, or ``null``.

:func:`exception_handler` is DRF's ``EXCEPTION_HANDLER`` (the demo project sets it in
``REST_FRAMEWORK``); the app's views use it even when a project does not
(``MultimodalAPIView.get_exception_handler``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

NON_FIELD = api_settings.NON_FIELD_ERRORS_KEY


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The API's error body."""
    return {"error": {"code": code, "message": message, "field": field}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler with every answer rewritten to :func:`error_body`; ``None`` (a 500) for the rest."""
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(str(exc) or None)
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc) or "Malformed request.", code="bad_request")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):  # ValidationError, NotFound, Throttled...: codes of their own
        field, message, code = _first_error(exc.detail)
    else:  # Http404 / PermissionDenied, which DRF answers as NotFound / PermissionDenied
        field, message, code = None, str(response.data.get("detail", "")), _code_for(response.status_code)
    response.data = error_body(code, message, field)
    return response


def _first_error(detail: Any, field: str | None = None) -> tuple[str | None, str, str]:
    """(field, message, code) of the first error in a DRF ``detail`` (str, list or dict, nested)."""
    if isinstance(detail, dict):
        if not detail:
            return field, "Invalid input.", "invalid"
        key, value = next(iter(detail.items()))
        name = None if key in (NON_FIELD, "detail") else (f"{field}.{key}" if field else str(key))
        return _first_error(value, name or field)
    if isinstance(detail, list):
        if not detail:
            return field, "Invalid input.", "invalid"
        return _first_error(detail[0], field)
    return field, str(detail), str(getattr(detail, "code", None) or "invalid")


def _code_for(status_code: int) -> str:
    return {
        400: "bad_request",
        401: "not_authenticated",
        403: "permission_denied",
        404: "not_found",
        405: "method_not_allowed",
        406: "not_acceptable",
        413: "too_large",
        415: "unsupported_media_type",
        429: "throttled",
    }.get(status_code, "error")


class MultimodalAPIView(APIView):
    """Base of the app's API views: the one error format whatever the project's ``EXCEPTION_HANDLER``."""

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        return exception_handler
