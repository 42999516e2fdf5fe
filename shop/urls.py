import re

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.static import serve

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    # shoppers sign in to get recommendations from their own history (demo: shopper / shopper)
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("multimodal_search.api.urls")),
    path("search/", include("multimodal_search.urls")),
    path("", include("shop.catalog.urls")),
]

if settings.DEBUG or settings.DEMO_SERVE_MEDIA:
    # Demo only: Django serves the catalogue photos (DEMO_SERVE_MEDIA=1 with DEBUG off, as `make demo`
    # does); a real shop serves MEDIA_ROOT from its web server or object storage.
    urlpatterns += [
        re_path(
            rf"^{re.escape(settings.MEDIA_URL.lstrip('/'))}(?P<path>.*)$",
            serve,
            {"document_root": settings.MEDIA_ROOT},
        )
    ]
