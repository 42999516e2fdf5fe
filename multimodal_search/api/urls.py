from django.urls import path

from multimodal_search.api import views

app_name = "multimodal_search_api"

urlpatterns = [
    path("search/", views.SearchView.as_view(), name="search"),
    path("products/<str:identifier>/similar/", views.SimilarView.as_view(), name="similar"),
    path("index/status/", views.IndexStatusView.as_view(), name="index_status"),
]
