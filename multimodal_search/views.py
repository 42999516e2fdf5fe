from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from multimodal_search import services
from multimodal_search.conf import search_settings
from multimodal_search.forms import SearchForm, has_null_characters
from multimodal_search.ranking.reasons import LEGEND, reasons
from multimodal_search.ranking.text import AUDIENCE_WORDS, words
from multimodal_search.ranking.vocabulary import PERSONAL
from multimodal_search.refinements import AS_TYPED, RefineForm, refinement_links

#: product pk -> [search id, position] of the latest result clicks, for add-to-cart attribution
CLICKS_SESSION_KEY = "mmsearch_clicks"
KEPT_CLICKS = 20
MAX_ID = 2**63 - 1
#: popular products a page with no results shows under its "No results"
POPULAR_STRIP = 8


@require_http_methods(["GET", "HEAD", "POST"])
def search_page(request: HttpRequest) -> HttpResponse:
    """Visitors' search page: text box, photo upload, results grid with explanations.

    Results below the storefront's relevance cut (``RELEVANCE["STOREFRONT_MIN"]``) are left out, and
    the page says so when nothing matches exactly ("related") or nothing passes ("none").
    """
    context: dict[str, Any] = {"form": SearchForm(), "response": None, "request_error": None}
    if request.method == "POST":
        try:  # an oversized body is refused from its header, before it is read
            services.check_upload_length(request.META.get("CONTENT_LENGTH"))
        except services.SearchError as exc:
            context["request_error"] = str(exc)
            return render(request, "multimodal_search/search.html", context, status=413)
    if has_null_characters(request.GET) or (request.method == "POST" and has_null_characters(request.POST)):
        context["request_error"] = "The request contains null characters."
        return render(request, "multimodal_search/search.html", context, status=400)
    submitted = request.method == "POST" or bool(request.GET.get("q")) or bool(request.GET.get("photo"))
    form = SearchForm(request.POST or request.GET or None, request.FILES or None) if submitted else SearchForm()
    context["form"] = form
    if submitted and form.is_valid():
        if request.method == "POST":
            try:  # post, redirect, get: the results get a URL that can be reloaded and shared
                return results_redirect(request, form)
            except services.PhotoStoreUnavailable as exc:  # search anyway, without a link
                context["photo_note"] = str(exc)
        add_query_photo(context, request, form)
        try:
            session_key, user_id = visitor(request)
            spoken = request.session.pop(services.VOICE_SESSION_KEY, None)
            voice = bool(spoken) and spoken == form.cleaned_data.get("q")
            with services.searcher(session_key=session_key, user_id=user_id, voice=voice) as searched:
                page = services.browse_products(
                    form.cleaned_data.get("q") or None,
                    form.cleaned_data.get("image"),
                    category=form.cleaned_data.get("category") or None,
                    min_relevance=services.storefront_min_relevance(),
                    page_size=form.cleaned_data.get("k") or services.storefront_page_size(),
                    personal=services.taste_for(shopper_of(request)),
                    clamp_page=True,  # an old link past the last page shows the last one
                    as_typed=request.GET.get(AS_TYPED) == "1",  # "Search instead for ..." (a word corrected)
                    **RefineForm(request.GET).refinements(),
                )
            context["response"] = page
            # the words as read ("hoddie" -> "hoodie"), else as searched ("jacket" of "jacket not black")
            searched_words = services.words_as_read(page.query) or form.cleaned_data.get("q")
            context["results"] = [
                {**with_reasons(hit.as_dict(), searched_words), "likely": services.likely_match(hit, page)}
                for hit in page.hits
            ]
            first = (page.page - 1) * page.page_size + 1
            for position, result in enumerate(context["results"], start=first):
                # through /search/click/<search>/<position>/ when the search was logged
                result["href"] = (
                    reverse("multimodal_search:click", args=[searched.search_id, position])
                    if searched.search_id
                    else result.get("url")
                )
            context["legend"] = legend(context["results"])
            # "No exact results — showing similar items": only where no result shown is called a likely
            # match. The ``exact`` cut of ``page.match`` (where a top result is *the* product asked for 90%
            # of the time) left "capris", "tank top" and "leggings" on Luma under it, their top results
            # 0.89-0.91 likely relevant: 38 of 200 held-out queries, 37 of them with a relevant top result.
            # (the first page's results: a later page's are the weaker ones of a set that may have had some)
            context["no_exact"] = (
                page.match is not None
                and page.page == 1
                and bool(page.hits)
                and not any(r["likely"] for r in context["results"])
            )
            # "Nothing here is called “dress” — showing similar items" (a kind the shop has no word for, a
            # brand it does not carry), "Nothing here is for kids" (whom: "kids hoodie"), or both
            unsold = page.query.get("unsold") or []
            context["unsold"] = unsold_phrase(searched_words, [word for word in unsold if word not in AUDIENCE_WORDS])
            context["unsold_for"] = " or ".join(word for word in unsold if word in AUDIENCE_WORDS)
            if not page.hits and page.page == 1 and not form.cleaned_data.get("image"):
                # nothing passes: shorter forms of the words that do find something
                context["relaxed"] = [
                    {"text": r.text, "count": r.count, "results": [hit.as_dict() for hit in r.hits]}
                    for r in services.relaxed_queries(searched_words, min_relevance=services.storefront_min_relevance())
                ]
            if not page.hits and page.page == 1 and not context.get("relaxed"):
                # no dead end: the shop's popular products (in the category searched), below "No results"
                context["popular"] = [
                    hit.as_dict()
                    for hit in services.popular_products(k=POPULAR_STRIP, category=page.query.get("category"))
                ]
            context["refine"] = refinement_links(request.path, request.GET, page)
        except services.SearchError as exc:
            form.add_error(None, str(exc))
    status = 400 if submitted and form.errors else 200
    return render(request, "multimodal_search/search.html", context, status=status)


#: what the "why" line says first of a result surely for another gender than the words name
OTHER_GENDER = "not for the gender you named"


def with_reasons(result: dict[str, Any], query_text: str | None) -> dict[str, Any]:
    """A result with its "why" in a shopper's words (``ranking.reasons``): the bar's segments and the
    two main reasons as sentences."""
    found = reasons(
        result.get("explanation") or {},
        query_text=query_text,
        title=str(result.get("title") or ""),
        colour=str(result.get("color") or ""),
        category=str(result.get("category") or ""),
        because=(result.get("personal") or {}).get("because"),
    )
    result["reasons"] = found
    why = list(dict.fromkeys(reason.sentence for reason in found))[:2]
    personal = [r.sentence for r in found if r.signal == PERSONAL and r.sentence not in why]
    # a men's running short for "women's running shorts": shown after the women's, and said first
    apart = [OTHER_GENDER] if services.other_gender(result.get("signals") or {}, query_text) else []
    result["why"] = apart + why + personal  # moved up for the shopper: always said, however small its share
    return result


def unsold_phrase(text: str | None, unsold: list[str]) -> str:
    """The words from the first to the last of ``unsold`` as ``text`` has them ("espresso machine",
    "dress"), or "" when there are none."""
    typed = words(text or "")
    places = [i for i, word in enumerate(typed) if word in unsold]
    return " ".join(typed[places[0] : places[-1] + 1]) if places else ""


def legend(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(signal, legend word)`` of every signal some result's bar shows, in the legend's order."""
    shown = {reason.signal for result in results for reason in result["reasons"]}
    return [(name, word) for name, word in LEGEND.items() if name in shown]


def results_redirect(request: HttpRequest, form: SearchForm) -> HttpResponse:
    """A 303 to the GET address of a posted search, its new photo (if any) kept under a token."""
    params = QueryDict(mutable=True)
    for name, values in request.POST.lists():
        if name not in ("csrfmiddlewaretoken", "image", "photo"):
            params.setlist(name, [value for value in values if value])
    if "image" in request.FILES:
        params["photo"] = services.keep_photo(form.cleaned_data["image"])
    elif form.cleaned_data.get("photo"):
        params["photo"] = form.cleaned_data["photo"]
    response = HttpResponseRedirect(f"{reverse('multimodal_search:search')}?{params.urlencode()}")
    response.status_code = 303
    return response


def add_query_photo(context: dict[str, Any], request: HttpRequest, form: SearchForm) -> None:
    """Put the kept query photo's token and a "remove photo" link into the results page's context."""
    token = form.cleaned_data.get("photo")
    if request.method != "GET" or not token:
        return
    params = request.GET.copy()
    for name in ("photo", "page"):  # without the photo the results start again from page 1
        params.pop(name, None)
    context["query_photo"] = token
    context["remove_photo_url"] = f"{reverse('multimodal_search:search')}?{params.urlencode()}"


@require_http_methods(["GET", "HEAD"])
def query_photo(request: HttpRequest, token: str) -> HttpResponse:
    """The thumbnail of a kept query photo (404 once its token has expired)."""
    try:
        thumbnail = services.photo_thumbnail(token)
    except services.SearchError:
        raise Http404("This photo has expired.") from None
    response = HttpResponse(thumbnail, content_type="image/jpeg")
    # the same token always names the same photo; private: a shopper's photo stays out of shared caches
    response["Cache-Control"] = f"private, max-age={services.photo_ttl()}"
    response["Content-Disposition"] = 'inline; filename="query-photo.jpg"'
    return response


def visitor(request: HttpRequest) -> tuple[str | None, int | None]:
    """The session key and user id the search log records (README "Query analytics"); a visitor
    without a session gets one, so their clicks can be tied to their searches."""
    user_id = request.user.pk if request.user.is_authenticated else None
    if search_settings.ANALYTICS["ENABLED"] and not request.session.session_key:
        request.session.modified = True  # the middleware sends the new session's cookie
        request.session.save()
    if user_id is None and request.session.session_key:
        # kept so that signing in (which changes the session key) can hand these events to the user
        request.session.setdefault(services.VISITOR_SESSION_KEY, services.visitor_hash(request.session.session_key))
    return request.session.session_key, user_id


def shopper_of(request: HttpRequest) -> str | None:
    """The shopper whose profile personalises this request (``services.shopper_key``): the signed-in user,
    else the visitor's session when they have one (none is created here); None for a first-time visitor."""
    user_id = request.user.pk if request.user.is_authenticated else None
    return services.shopper_key(session_key=request.session.session_key, user_id=user_id)


@require_http_methods(["GET", "HEAD"])
def result_click(request: HttpRequest, search_id: int, position: int) -> HttpResponse:
    """A search result's link: records the click against the logged search, then redirects to the product."""
    product_pk = services.clicked_product(search_id, position) if search_id <= MAX_ID else None
    url = services.product_url(product_pk) if product_pk else None
    if product_pk is None or url is None:
        raise Http404("This result is no longer available.")
    if request.method == "GET":
        session_key, user_id = visitor(request)
        services.record_event(
            "click", product_pk, session_key=session_key, user_id=user_id, search_id=search_id, position=position
        )
        clicks = {pk: spot for pk, spot in request.session.get(CLICKS_SESSION_KEY, {}).items() if pk != product_pk}
        clicks[str(product_pk)] = [search_id, position]
        request.session[CLICKS_SESSION_KEY] = dict(list(clicks.items())[-KEPT_CLICKS:])
    return HttpResponseRedirect(url)


@require_POST
def add_to_cart(request: HttpRequest) -> HttpResponse:
    """``POST /search/cart/`` with ``product`` (a pk): the demo's "add to cart" (there is no cart), recorded
    against the search whose result was clicked to reach the product; a 303 back to the product."""
    product_pk = request.POST.get("product", "")
    url = services.product_url(product_pk) if 0 < len(product_pk) <= 64 and "\x00" not in product_pk else None
    if url is None:
        return HttpResponseBadRequest("No such product.", content_type="text/plain; charset=utf-8")
    search_id, position = request.session.get(CLICKS_SESSION_KEY, {}).get(product_pk) or (None, None)
    session_key, user_id = visitor(request)
    services.record_event(
        "cart", product_pk, session_key=session_key, user_id=user_id, search_id=search_id, position=position
    )
    messages.success(request, "Added to your cart.")
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


HISTORY_PAGE = 50


@require_http_methods(["GET", "HEAD", "POST"])
def history(request: HttpRequest) -> HttpResponse:
    """``/search/history/``: the visitor's own recent events (what shapes their profile); a POST (the
    "Clear my history" button) deletes them and the profile, then a 303 back here."""
    shopper = shopper_of(request)
    if request.method == "POST":
        deleted = services.clear_history(shopper) if shopper else 0
        messages.success(request, f"Your history is cleared ({deleted} event{'' if deleted == 1 else 's'} deleted).")
        response = HttpResponseRedirect(reverse("multimodal_search:history"))
        response.status_code = 303
        return response
    events = list(services.shopper_events(shopper, limit=HISTORY_PAGE)) if shopper else []
    cards = services.product_cards(list({event.product_pk for event in events})) if events else {}
    rows = [{"event": event, "product": cards.get(event.product_pk) or {}} for event in events]
    return render(request, "multimodal_search/history.html", {"rows": rows, "limit": HISTORY_PAGE})
