"""System checks for the API's schema and docs pages (``/api/schema/``, ``/api/docs/``, ``/api/redoc/``)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Warning, register
from drf_spectacular.openapi import AutoSchema
from rest_framework.settings import api_settings


@register()
def check_api_schema(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings: list[Warning] = []
    schema_class = api_settings.DEFAULT_SCHEMA_CLASS
    if not (isinstance(schema_class, type) and issubclass(schema_class, AutoSchema)):
        warnings.append(
            Warning(
                "REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'] is not drf-spectacular's AutoSchema: /api/schema/ fails.",
                hint="Set it to 'drf_spectacular.openapi.AutoSchema'.",
                id="multimodal_search.W001",
            )
        )
    if not apps.is_installed("drf_spectacular"):
        warnings.append(
            Warning(
                "'drf_spectacular' is not in INSTALLED_APPS: /api/docs/ and /api/redoc/ have no templates.",
                id="multimodal_search.W002",
            )
        )
    spectacular: dict[str, Any] = getattr(settings, "SPECTACULAR_SETTINGS", {})
    wants_sidecar = "SIDECAR" in (spectacular.get("SWAGGER_UI_DIST"), spectacular.get("REDOC_DIST"))
    if wants_sidecar and not apps.is_installed("drf_spectacular_sidecar"):
        warnings.append(
            Warning(
                "SPECTACULAR_SETTINGS asks for 'SIDECAR' assets but 'drf_spectacular_sidecar' is not in INSTALLED_APPS.",
                id="multimodal_search.W003",
            )
        )
    return warnings
