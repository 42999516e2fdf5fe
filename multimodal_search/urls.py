from django.urls import path

from multimodal_search import views

app_name = "multimodal_search"

urlpatterns = [path("", views.search_page, name="search")]
