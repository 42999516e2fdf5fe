"""Demo store pages: the product list (by category, paginated) and a product page."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db.models import Count, F, Min, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, NullIf
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from multimodal_search import services
from multimodal_search.views import shopper_of, visitor
from shop.catalog.models import PATH_SEPARATOR, Category, Product

PAGE_SIZE = 24
STRIP_SIZE = 8  # products in a strip ("Popular", "Customers also viewed")
MAX_PARAMETER_LENGTH = 1000  # longer category paths or SKUs name nothing: a 404


@dataclass
class CategoryNode:
    category: Category
    depth: int
    count: int


@require_safe
def product_list(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Active products, optionally in one category (and its sub-categories).

    ``?category=`` takes a category id or a path such as ``"Men > Tops"``;
    ``?page=`` picks the page (24 products per page).
    """
    category = _category(pk if pk is not None else request.GET.get("category"))
    products = _products()
    if category is not None:
        products = products.filter(
            Q(category__path=category.path) | Q(category__path__startswith=category.path + PATH_SEPARATOR)
        )
    page = Paginator(_one_per_product(products), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "catalog/product_list.html",
        {
            "category": category,
            "breadcrumbs": _breadcrumbs(category),
            "page_obj": page,
            "products": page.object_list,
            "category_tree": category_tree(),
            # visitors with history: recommended for them (nothing when their profile is missing or thin);
            # everyone: popular (in this category)
            "recommended": _recommended(request, category),
            "popular": [
                hit.as_dict()
                for hit in services.popular_products(k=STRIP_SIZE, category=category.path if category else None)
            ],
        },
    )


@require_safe
def product_detail(request: HttpRequest, sku: str) -> HttpResponse:
    """One product with its photos and links to its other colours."""
    _check_text(sku, "product")
    product = get_object_or_404(
        Product.objects.select_related("category").prefetch_related("images"),
        sku=sku,
        active=True,
    )
    if request.method == "GET":  # a view counts towards the visitor's profile (README "Personalisation")
        session_key, user_id = visitor(request)
        services.record_view(str(product.pk), session_key=session_key, user_id=user_id)
    variants = (
        _products().filter(parent_sku=product.parent_sku).exclude(pk=product.pk)
        if product.parent_sku
        else Product.objects.none()
    )
    return render(
        request,
        "catalog/product_detail.html",
        {
            "product": product,
            "images": list(product.images.all()),
            "variants": variants,
            "sizes": [s.strip() for s in product.sizes.split(",") if s.strip()],
            "breadcrumbs": _breadcrumbs(product.category),
            "category_tree": category_tree(),
            "similar": [hit.as_dict() for hit in services.similar_products(product, k=8)],
            # what shoppers did view only: the service's cold-start fill is the "Similar products" grid below
            "also_viewed": [hit.as_dict() for hit in services.also_viewed(product.pk, k=STRIP_SIZE, fill=False)],
        },
    )


def _recommended(request: HttpRequest, category: Category | None) -> list[dict]:
    """ "Recommended for you" for a visitor whose profile is strong enough to go by, else []."""
    path = category.path if category else None
    hits = services.recommended_for_shopper(shopper_of(request), k=STRIP_SIZE, category=path, fallback=False)
    return [hit.as_dict() for hit in hits]


#: the category tree's counts are counted again (off the request) once they are this old
TREE_SECONDS = 60


def category_tree() -> list[CategoryNode]:
    """Every category in path order with its depth and active product count, a product's colours counted
    once (products of sub-categories included); empty branches are left out. The counts read every
    product, so they are kept and counted again off the request once a minute old
    (``services.kept_fresh``; a page that comes during the very first count shows no tree)."""
    none: dict[str, int] = {}
    direct = services.kept_fresh("shop:category-tree", _direct_counts, fresh=TREE_SECONDS, keep=24 * 3600, busy=none)
    categories = list(Category.objects.order_by("path"))
    totals = {c.path: 0 for c in categories}
    for c in categories:
        for path in c.ancestor_paths():
            if path in totals:
                totals[path] += direct.get(c.path, 0)
    return [CategoryNode(c, c.path.count(PATH_SEPARATOR), totals[c.path]) for c in categories if totals[c.path]]


def _direct_counts() -> dict[str, int]:
    """Category path -> its own active products (not its sub-categories'), a product's colours once."""
    counted = Category.objects.annotate(
        direct=Count(_group("products__"), filter=Q(products__active=True), distinct=True)
    ).values_list("path", "direct")
    return {path: int(direct) for path, direct in counted if direct}


def _products() -> QuerySet[Product]:
    return Product.objects.filter(active=True).select_related("category").prefetch_related("images")


def _group(prefix: str = "") -> Coalesce:
    """A product's group: its parent sku, else its own sku (what ``ProductAdapter.get_group`` reads)."""
    return Coalesce(NullIf(F(f"{prefix}parent_sku"), Value("")), F(f"{prefix}sku"))


def _one_per_product(products: QuerySet[Product]) -> QuerySet[Product]:
    """The first stored colour of each product among ``products``, with ``colours``: how
    many colours of it are listed, as the search page groups them."""
    firsts = products.annotate(group=_group()).order_by().values("group").annotate(first=Min("pk")).values("first")
    colours = (
        products.annotate(group=_group())
        .filter(group=OuterRef("group"))
        .order_by()
        .values("group")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        products.filter(pk__in=firsts)
        .annotate(group=_group(), colours=Subquery(colours))
        .order_by("title", "color", "sku")
    )


def _category(value: int | str | None) -> Category | None:
    if value in (None, ""):
        return None
    text = _check_text(str(value).strip(), "category")
    if text.isascii() and text.isdigit():
        if len(text) > 18:  # beyond a bigint: no such id
            raise Http404(f"No category {text[:40]!r}")
        lookup = Q(pk=int(text))
    else:
        lookup = Q(path=PATH_SEPARATOR.join(p.strip() for p in text.split(">") if p.strip()))
    category = Category.objects.filter(lookup).first()
    if category is None:
        raise Http404(f"No category {text[:100]!r}")
    return category


def _check_text(value: str, what: str) -> str:
    """``value``, or a 404 when it cannot name anything (NUL bytes, which PostgreSQL refuses, or too long)."""
    if "\x00" in value or len(value) > MAX_PARAMETER_LENGTH:
        raise Http404(f"No such {what}.")
    return value


def _breadcrumbs(category: Category | None) -> list[Category]:
    if category is None:
        return []
    by_path = {c.path: c for c in Category.objects.filter(path__in=category.ancestor_paths())}
    return [by_path[p] for p in category.ancestor_paths() if p in by_path]
