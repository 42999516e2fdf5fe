"""Query analytics: the search log, shopper events (clicks, add to cart) and the admin's report.

A face (the search page, the API) runs a search inside :func:`searcher`, which says who is searching
(a keyed hash of the session key, or the user id) and from where. The search service sends
``search_performed``; its receiver calls :func:`log_search`, which writes one ``SearchLog`` row for the
first search of that context (the "fewer words" searches a page runs after it are not the shopper's)
and hands its id back through the context, so the page can link each result to
``/search/click/<search id>/<position>/`` (:func:`record_click`). Searches outside a context (commands,
evaluation, the shell) are not logged. A database error is logged as a warning and the search goes on.

The report (:func:`analytics_report`) counts over the searches of a period: CTR is the share of
searches with results that got at least one click; the mean click position is over those clicks.
Rows older than ``ANALYTICS["RETENTION_DAYS"]`` are deleted by :func:`prune_analytics`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Avg, Case, Count, F, FloatField, Q, QuerySet, Sum, Value, When, Window
from django.db.models.functions import Cast, Lower, NullIf, RowNumber, TruncDate
from django.utils import timezone
from django.utils.crypto import salted_hmac

from multimodal_search.conf import search_settings
from multimodal_search.models import SearchLog, ShopperEvent, ShopperProfile
from multimodal_search.ranking.calibration import NONE
from multimodal_search.services.health import product_cards

logger = logging.getLogger(__name__)

TEXT, PHOTO, BOTH, VOICE = "text", "photo", "both", "voice"
CLICK, CART = ShopperEvent.CLICK, ShopperEvent.CART
#: session key under which the voice search leaves the words it heard: the search page then logs "voice"
VOICE_SESSION_KEY = "mmsearch_voice"


@dataclass
class Searcher:
    """Who runs the searches of one request; ``search_id`` is set once the first one is logged."""

    session: str
    user_id: int | None
    source: str
    voice: bool = False
    search_id: int | None = None


_current: ContextVar[Searcher | None] = ContextVar("mmsearch_searcher", default=None)


def visitor(session_key: str | None) -> str:
    """The keyed hash the log keeps for a session key ("" for none): the same visitor gets the same
    value, and the value cannot be used as a session cookie."""
    if not session_key:
        return ""
    return salted_hmac("multimodal_search.analytics.session", session_key).hexdigest()[:32]


@contextmanager
def searcher(
    *, session_key: str | None, user_id: int | None, source: str = "storefront", voice: bool = False
) -> Iterator[Searcher]:
    """Log the first search run inside the block as ``source``'s, by this session or user.

    Args:
        session_key: the visitor's session key (hashed before it is stored), or None.
        user_id: the signed-in user's id, or None.
        source: where the search came from ("storefront", "api").
        voice: the words were spoken (the search's kind is "voice").
    """
    current = Searcher(visitor(session_key), user_id, source, voice)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)


def enabled() -> bool:
    return bool(search_settings.ANALYTICS["ENABLED"])


def log_search(
    query: Mapping[str, Any],
    result_count: int,
    took_ms: float,
    *,
    shown: list[str] | None = None,
    first_position: int = 1,
    filters: Mapping[str, Any] | None = None,
    match: str | None = None,
) -> int | None:
    """Write the search log row of a search (``search_performed``'s receiver); its id, or None when
    nothing was written (no context, not the context's first search, analytics off, a database error)."""
    current = _current.get()
    if current is None or current.search_id is not None or not enabled():
        return None
    text = str(query.get("text") or "")[:500]
    kind = VOICE if current.voice else (BOTH if text else PHOTO) if query.get("image") else TEXT
    chosen = dict(filters or {})
    if query.get("category"):
        chosen["category"] = query["category"]
    try:
        with transaction.atomic():  # a savepoint: a failed insert leaves an outer transaction usable
            row = SearchLog.objects.create(
                created_at=timezone.now(),
                query=text,
                corrected=str(query.get("corrected") or "")[:500],
                fallback=str(query.get("fallback") or "")[:16],
                match=str(match or "")[:8],
                unsold=" ".join(query.get("unsold") or [])[:200],
                kind=kind,
                source=current.source,
                filters=chosen,
                result_count=result_count,
                latency_ms=round(took_ms, 2),
                results=[str(pk) for pk in shown or []],
                first_position=first_position,
                session=current.session,
                user_id=current.user_id,
            )
    except DatabaseError:
        logger.warning("Could not write the search log", exc_info=True)
        return None
    current.search_id = row.pk
    return row.pk


def record_event(
    kind: str,
    product_pk: str,
    *,
    session_key: str | None,
    user_id: int | None,
    search_id: int | None = None,
    position: int | None = None,
) -> bool:
    """Store one shopper event; False when analytics is off or the database refused it.

    A stored event also updates the shopper's profile on the worker once the transaction commits
    (``services.personal.profile_changed``; nothing when personalisation is off).
    """
    if not enabled():
        return False
    try:
        with transaction.atomic():
            ShopperEvent.objects.create(
                kind=kind,
                product_pk=str(product_pk),
                search_id=search_id,
                position=position,
                session=visitor(session_key),
                user_id=user_id,
                created_at=timezone.now(),
            )
    except DatabaseError:
        logger.warning("Could not record a %s event", kind, exc_info=True)
        return False
    from multimodal_search.services import personal  # personal builds on this module

    personal.profile_changed(personal.shopper_key(session_key=session_key, user_id=user_id))
    return True


def clicked_product(search_id: int, position: int) -> str | None:
    """The pk of the product shown at ``position`` (1-based) by logged search ``search_id``, or None."""
    row = SearchLog.objects.filter(pk=search_id).values("results", "first_position").first()
    if row is None:
        return None
    index = position - row["first_position"]
    return row["results"][index] if 0 <= index < len(row["results"]) else None


def product_url(product_pk: str) -> str | None:
    """The public URL of a product the adapter still returns (None: no such product, or no URL)."""
    try:
        card = product_cards([product_pk]).get(str(product_pk)) or {}
    except (ValueError, ValidationError):  # not a pk of this model ("abc" for an integer key)
        return None
    return str(card.get("url") or "") or None


def prune_analytics(now: datetime | None = None) -> tuple[int, int]:
    """Delete search log rows and events older than ``ANALYTICS["RETENTION_DAYS"]``, and the profiles of
    sessions (visitors who never signed in) not updated since then (signed-in users keep theirs).

    Returns:
        ``(searches deleted, events deleted)``.
    """
    cutoff = (now or timezone.now()) - timedelta(days=int(search_settings.ANALYTICS["RETENTION_DAYS"]))
    events, _ = ShopperEvent.objects.filter(created_at__lt=cutoff).delete()
    searches, _ = SearchLog.objects.filter(created_at__lt=cutoff).delete()
    ShopperProfile.objects.filter(user__isnull=True, updated_at__lt=cutoff).delete()
    return searches, events


@dataclass(frozen=True)
class QueryFigures:
    """One query's figures (``query`` lower-cased; "" for photo-only searches)."""

    query: str
    searches: int
    zero_results: int
    with_results: int
    clicked_searches: int
    clicks: int
    ctr: float | None
    mean_click_position: float | None


@dataclass(frozen=True)
class CorrectedQuery:
    """A query (lower-cased) whose words were read as others, and how often, with the share clicked."""

    query: str
    corrected: str
    searches: int
    clicked_searches: int


@dataclass(frozen=True)
class LooseQuery:
    """A query (lower-cased) that no product matched closely, answered by the products having its words
    (``query["fallback"]``), how often, and how many of those searches had a click."""

    query: str
    searches: int
    clicked_searches: int


@dataclass(frozen=True)
class UnsoldKind:
    """Words that named a kind of goods the shop has no word for ("dress"; ``query["unsold"]``), in how
    many searches, how many of those had a click, and the commonest query that named them."""

    words: str
    searches: int
    clicked_searches: int
    example: str


@dataclass
class Report:
    start: date
    end: date
    totals: QueryFigures
    top: list[QueryFigures] = field(default_factory=list)
    zero_results: list[QueryFigures] = field(default_factory=list)
    low_click: list[QueryFigures] = field(default_factory=list)
    #: typed words read as the catalogue's (``ranking.spelling``), most searched first
    corrected: list[CorrectedQuery] = field(default_factory=list)
    #: queries no product matched closely, shown the products having every word, most searched first
    loose: list[LooseQuery] = field(default_factory=list)
    #: kinds of goods shoppers named that the shop has no word for, most searched first
    unsold: list[UnsoldKind] = field(default_factory=list)
    #: ``(day, searches, zero-result searches, clicked searches)`` for every day of the period
    days: list[tuple[date, int, int, int]] = field(default_factory=list)


def period_searches(start: date, end: date) -> QuerySet[SearchLog]:
    """The searches logged from ``start`` to ``end`` (both days included, in the current time zone)."""
    zone = timezone.get_current_timezone()
    since = datetime.combine(start, time.min, tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone)
    return SearchLog.objects.filter(created_at__gte=since, created_at__lt=until)


#: a search nothing answered: no result, or none of them a likely match (``match`` "none": the API without
#: ``min_relevance`` answers every product ranked, so "Kapuzenpullover" logged 147 results there and 0 on
#: the storefront) unless the page showed the products having its words instead (``loose_queries``)
NOTHING_MATCHED = Q(result_count=0) | (Q(match=NONE) & Q(fallback=""))

_FIGURES: dict[str, Any] = {
    "searches": Count("id", distinct=True),
    "zero_results": Count("id", filter=NOTHING_MATCHED, distinct=True),
    "with_results": Count("id", filter=~NOTHING_MATCHED, distinct=True),
    "clicked_searches": Count("id", filter=Q(events__kind=CLICK) & ~NOTHING_MATCHED, distinct=True),
    "clicks": Count("events", filter=Q(events__kind=CLICK)),
    "mean_click_position": Avg("events__position", filter=Q(events__kind=CLICK)),
}


def _figures(row: Mapping[str, Any], query: str = "") -> QueryFigures:
    with_results = int(row["with_results"] or 0)
    return QueryFigures(
        query=query,
        searches=int(row["searches"] or 0),
        zero_results=int(row["zero_results"] or 0),
        with_results=with_results,
        clicked_searches=int(row["clicked_searches"] or 0),
        clicks=int(row["clicks"] or 0),
        ctr=row["clicked_searches"] / with_results if with_results else None,
        mean_click_position=None if row["mean_click_position"] is None else float(row["mean_click_position"]),
    )


def query_figures(start: date, end: date) -> QuerySet[Any]:
    """Per query (lower-cased) figures of the period, most searched first (``values`` rows)."""
    figures: QuerySet[Any] = period_searches(start, end).annotate(q=Lower("query")).values("q").annotate(**_FIGURES)
    ctr = Cast(F("clicked_searches"), FloatField()) / NullIf(F("with_results"), 0)
    return figures.annotate(ctr=ctr).order_by("-searches", "q")


def analytics_report(start: date, end: date, *, limit: int = 20) -> Report:
    """Top, zero-result and low-click queries, totals (CTR, mean click position) and daily counts.

    Args:
        start, end: the period's first and last day.
        limit: rows per list.
    """
    searches = period_searches(start, end)
    by_day: QuerySet[Any] = searches.annotate(
        day=TruncDate("created_at", tzinfo=timezone.get_current_timezone())
    ).values("day")
    # the period's totals are the sums of its days' (a search is in one day): one pass fewer
    clicked = Q(events__kind=CLICK)
    position_sums = {
        "position_sum": Sum("events__position", filter=clicked),
        "positions": Count("events__position", filter=clicked),
    }
    daily = {row["day"]: row for row in by_day.annotate(**_FIGURES, **position_sums)}
    days = []
    day = start
    while day <= end:
        row = daily.get(day)
        days.append((day, row["searches"], row["zero_results"], row["clicked_searches"]) if row else (day, 0, 0, 0))
        day += timedelta(days=1)
    top, zero_results, low_click = _query_lists(start, end, limit)
    return Report(
        corrected=corrected_queries(start, end, limit=limit),
        loose=loose_queries(start, end, limit=limit),
        unsold=unsold_queries(start, end, limit=limit),
        start=start,
        end=end,
        totals=_figures(_summed(daily.values())),
        top=top,
        zero_results=zero_results,
        low_click=low_click,
        days=days,
    )


def corrected_queries(start: date, end: date, *, limit: int = 20) -> list[CorrectedQuery]:
    """The period's queries whose words the search read as others ("hoddie" -> "hoodie"), most searched
    first: what shoppers misspell, and where a reading is wrong (few clicks) a synonym rule for the
    typed word stops it (``services.query.correct_spelling``). Reads only the corrected rows (an index)."""
    rows = _marked_queries(start, end, "corrected", limit)
    return [CorrectedQuery(row["q"], row["marked"], row["searches"], row["clicked"]) for row in rows]


def loose_queries(start: date, end: date, *, limit: int = 20) -> list[LooseQuery]:
    """The period's queries that no result matched closely, which showed the products having every word
    searched instead (``services.search.EVERY_WORD``: "winter", in a few descriptions), most searched
    first: words shoppers use that the catalogue's titles and categories do not, where a synonym rule or
    better product text helps. They are not among the zero-result queries. Reads only those rows (an index)."""
    return [
        LooseQuery(row["q"], row["searches"], row["clicked"]) for row in _marked_queries(start, end, "fallback", limit)
    ]


def unsold_queries(start: date, end: date, *, limit: int = 20) -> list[UnsoldKind]:
    """The period's kinds of goods that shoppers named and the shop has no word for ("dress", of "red
    dress" and "black dress"; ``services.query.unsold_kinds``), most searched first, each with its
    commonest query: demand the catalogue does not meet, or a word for what it sells that a synonym
    rule should add. They are not all among the zero-result queries: "red dress" showed red tops.
    Reads only those rows (an index)."""
    rows = _marked_queries(start, end, "unsold", None)
    found: dict[str, dict[str, Any]] = {}
    for row in rows:  # most searched query first: each kind's first is its example
        kind = found.setdefault(row["marked"], {"searches": 0, "clicked": 0, "example": row["q"]})
        kind["searches"] += row["searches"]
        kind["clicked"] += row["clicked"]
    ranked = sorted(found.items(), key=lambda item: (-item[1]["searches"], item[0]))[:limit]
    return [UnsoldKind(words, kind["searches"], kind["clicked"], kind["example"]) for words, kind in ranked]


def _marked_queries(start: date, end: date, column: str, limit: int | None) -> list[dict[str, Any]]:
    """``q`` (the query, lower-cased), ``marked`` (``column``'s value, lower-cased), ``searches`` and
    ``clicked`` (those with a click) of the period's searches whose ``column`` is not empty (a partial
    index on each such column), most searched first (``limit`` None: all)."""
    rows: QuerySet[Any] = (
        period_searches(start, end)
        .exclude(**{column: ""})
        .annotate(q=Lower("query"), marked=Lower(column))
        .values("q", "marked")
        .annotate(
            searches=Count("id", distinct=True),
            clicked=Count("id", filter=Q(events__kind=CLICK), distinct=True),
        )
        .order_by("-searches", "q", "marked")
    )
    if limit is not None:
        rows = rows[:limit]
    return list(rows)


def _summed(days: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of a period from those of its days (``_FIGURES`` with the clicks' position sums)."""
    rows = list(days)
    total = {name: sum(row[name] or 0 for row in rows) for name in _FIGURES if name != "mean_click_position"}
    positions = sum(row["positions"] or 0 for row in rows)
    position_sum = sum(row["position_sum"] or 0 for row in rows)
    total["mean_click_position"] = position_sum / positions if positions else None
    return total


def _query_lists(start: date, end: date, limit: int) -> tuple[list[QueryFigures], ...]:
    """The report's three per-query lists from one pass over the period's searches: the per-query figures
    are grouped once and ranked three ways in the database, and only the rows of a list come back.

    Each list was a ``GROUP BY`` of its own, and the totals another pass: at 1,000,000 logged searches
    (``bench/analytics.py``) the report took 8.9 s, now 4.0 s (one pass by query 2.3 s, one by day)."""
    minimum = int(search_settings.ANALYTICS["LOW_CLICK_MIN_SEARCHES"])
    below_minimum = Case(When(with_results__gte=minimum, then=Value(0)), default=Value(1))
    orders = {
        "top": [F("searches").desc(), F("q").asc()],
        "zero": [F("zero_results").desc(), F("q").asc()],
        # queries with too few searches last, then as the low-click list reads: lowest CTR first
        "low": [below_minimum.asc(), F("ctr").asc(nulls_last=True), F("with_results").desc(), F("q").asc()],
    }
    ranks = {f"{name}_rank": Window(RowNumber(), order_by=order) for name, order in orders.items()}
    listed_anywhere = Q()
    for name in ranks:
        listed_anywhere |= Q(**{f"{name}__lte": limit})
    rows = list(query_figures(start, end).annotate(**ranks).filter(listed_anywhere))

    def listed(name: str, keep: Callable[[Mapping[str, Any]], bool]) -> list[QueryFigures]:
        chosen = sorted((row for row in rows if row[name] <= limit and keep(row)), key=lambda row: row[name])
        return [_figures(row, row["q"]) for row in chosen]

    return (
        listed("top_rank", lambda row: True),
        listed("zero_rank", lambda row: row["zero_results"] > 0),
        listed("low_rank", lambda row: row["with_results"] >= minimum),
    )
