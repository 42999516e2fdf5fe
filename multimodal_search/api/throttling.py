"""API throttles: per client IP, per user, and a tighter one for photo searches.

Each reads its rate from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope]`` on every request (DRF's
own classes read it once at import), so a changed setting takes effect at once; a missing or None
rate turns that throttle off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class CurrentRateMixin:
    scope: str

    def get_rate(self) -> str | None:
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES or {}
        rate = rates.get(self.scope)
        return str(rate) if rate else None


class AnonThrottle(CurrentRateMixin, AnonRateThrottle):
    """Requests of anonymous clients, per IP address (scope ``anon``)."""

    scope = "anon"


class UserThrottle(CurrentRateMixin, UserRateThrottle):
    """Requests per signed-in user, or per IP address for anonymous clients (scope ``user``)."""

    scope = "user"


class PhotoThrottle(CurrentRateMixin, SimpleRateThrottle):
    """Photo searches (multipart POSTs: each one runs the CNN), per user or IP (scope ``photo``).

    Decided from the method and content type alone, so the body is not parsed before the view
    sees it (upload limits and their errors stay the view's).
    """

    scope = "photo"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.method != "POST" or not (request.content_type or "").startswith("multipart/"):
            return None
        user = request.user
        ident = str(user.pk) if user is not None and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
