from django.urls import path

from multimodal_search import views, voice_views

app_name = "multimodal_search"

urlpatterns = [
    path("", views.search_page, name="search"),
    path("photo/<str:token>/", views.query_photo, name="query_photo"),
    path("voice/", voice_views.voice_search, name="voice"),
    path("click/<int:search_id>/<int:position>/", views.result_click, name="click"),
    path("cart/", views.add_to_cart, name="cart"),
    path("history/", views.history, name="history"),
]
