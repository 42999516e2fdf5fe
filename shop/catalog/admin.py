from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from multimodal_search.admin import reindex_selected
from shop.catalog.models import Category, Product, ProductImage


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["path", "name", "slug", "parent"]
    search_fields = ["name", "path"]
    list_select_related = ["parent"]
    readonly_fields = ["path"]


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 0
    fields = ["preview", "image", "kind", "position", "alt"]
    readonly_fields = ["preview"]
    ordering = ["position", "pk"]

    @admin.display(description="Photo")
    def preview(self, obj: ProductImage) -> str:
        if not obj.pk or not obj.image:
            return ""
        return format_html('<img src="{}" style="height:80px">', obj.image.url)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "title", "color", "category", "price", "gender", "active", "updated_at"]
    list_display_links = ["sku", "title"]
    list_filter = ["active", "gender", "category", "color"]
    search_fields = ["sku", "parent_sku", "title", "description"]
    list_select_related = ["category"]
    autocomplete_fields = ["category"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [ProductImageInline]
    actions = [reindex_selected]
    fieldsets = [
        (None, {"fields": ["sku", "parent_sku", "title", "price", "active"]}),
        ("Classification", {"fields": ["category", "color", "gender", "material", "sizes"]}),
        ("Content", {"fields": ["description", "attributes"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
