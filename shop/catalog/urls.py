from __future__ import annotations

from django.urls import path

from shop.catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.product_list, name="product_list"),
    path("categories/<int:pk>/", views.product_list, name="category"),
    path("products/<str:sku>/", views.product_detail, name="product_detail"),
]
