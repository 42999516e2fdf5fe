from django.urls import path, re_path

from multimodal_search.api import views

app_name = "multimodal_search_api"

urlpatterns = [
    path("search/", views.SearchView.as_view(), name="search"),
    path("products/<str:identifier>/similar/", views.SimilarView.as_view(), name="similar"),
    path("index/status/", views.IndexStatusView.as_view(), name="index_status"),
    # last: any other path under the API is a JSON 404, not the project's HTML page
    re_path(r"", views.NotFoundView.as_view(), name="not_found"),
]
