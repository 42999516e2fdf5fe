from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("multimodal_search.api.urls")),
    path("search/", include("multimodal_search.urls")),
    path("", include("shop.catalog.urls")),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
