"""Admin: the search log, shopper events and the query analytics report (with a chart and a CSV export).

Staff with the "view search log entry" permission (superusers have it) may look; nobody adds or edits
rows (the log is written by searches and deleted by the retention). Imported from ``apps.ready``.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from multimodal_search import services
from multimodal_search.models import SearchLog, ShopperEvent

DEFAULT_DAYS = 30
MAX_DAYS = 366
CHART_WIDTH, CHART_HEIGHT = 720, 160
CSV_COLUMNS = [
    "query",
    "searches",
    "zero_results",
    "with_results",
    "clicked_searches",
    "clicks",
    "ctr",
    "mean_click_position",
]


class PeriodForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        end = data.get("end") or timezone.localdate()
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start must not be after the end.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"Choose a period of at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SearchLog)
class SearchLogAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["created_at", "query", "kind", "source", "result_count", "latency_ms"]
    list_filter = ["kind", "source", "created_at"]
    search_fields = ["query"]
    date_hierarchy = "created_at"
    change_list_template = "admin/multimodal_search/searchlog/change_list.html"

    def get_urls(self) -> list[Any]:
        report = self.admin_site.admin_view(self.report_view)
        export = self.admin_site.admin_view(self.export_view)
        return [
            path("report/", report, name="multimodal_search_searchlog_report"),
            path("report.csv", export, name="multimodal_search_searchlog_report_csv"),
            *super().get_urls(),
        ]

    def _period(self, request: HttpRequest) -> tuple[PeriodForm, date | None, date | None]:
        if not self.has_view_permission(request):
            raise PermissionDenied("You need the permission to view the search log.")
        today = timezone.localdate()
        default = {"start": today - timedelta(days=DEFAULT_DAYS - 1), "end": today}
        form = PeriodForm({**default, **request.GET.dict()})  # the boxes show the period shown
        if not form.is_valid():
            return form, None, None
        return form, form.cleaned_data["start"], form.cleaned_data["end"]

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """Top, zero-result and low-click queries, CTR and mean click position of a period, with a chart."""
        form, start, end = self._period(request)
        report = services.analytics_report(start, end) if start and end else None
        context = {
            **self.admin_site.each_context(request),
            "title": "Query analytics",
            "opts": self.model._meta,
            "form": form,
            "report": report,
            "chart": chart(report.days) if report else None,
            "query_string": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/multimodal_search/analytics_report.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """Every query of the period with its figures, as CSV."""
        form, start, end = self._period(request)
        if not start or not end:
            problems = " ".join(str(error) for errors in form.errors.values() for error in errors)
            return HttpResponse(
                f"No export: the period is not valid. {problems}".strip() + "\n",
                status=400,
                content_type="text/plain; charset=utf-8",
            )
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="search-queries-{start}-{end}.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for row in services.query_figures(start, end).iterator():
            ctr = row["ctr"]
            position = row["mean_click_position"]
            writer.writerow(
                [
                    safe_cell(row["q"]),
                    row["searches"],
                    row["zero_results"],
                    row["with_results"],
                    row["clicked_searches"],
                    row["clicks"],
                    "" if ctr is None else f"{ctr:.4f}",
                    "" if position is None else f"{position:.2f}",
                ]
            )
        return response


@admin.register(ShopperEvent)
class ShopperEventAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["created_at", "kind", "product_pk", "search", "position"]
    list_filter = ["kind", "created_at"]
    search_fields = ["product_pk"]
    raw_id_fields = ["search"]
    exclude = ["session", "user"]


def safe_cell(text: str) -> str:
    """A shopper's words as a CSV cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def chart(days: list[tuple[date, int, int, int]]) -> dict[str, Any]:
    """Bars of the searches per day, each with its clicked and zero-result parts, for an inline SVG."""
    top = max([searches for _day, searches, _zero, _clicked in days] or [0]) or 1
    step = CHART_WIDTH / max(len(days), 1)

    def height(count: int) -> float:
        return round(count / top * CHART_HEIGHT, 1)

    bars = []
    for index, (day, searches, zero, clicked) in enumerate(days):
        x = round(index * step, 1)
        bars.append(
            {
                "day": day,
                "searches": searches,
                "zero": zero,
                "clicked": clicked,
                "x": x,
                "width": max(round(step * 0.8, 1), 1),
                "y": round(CHART_HEIGHT - height(searches), 1),
                "height": height(searches),
                "clicked_y": round(CHART_HEIGHT - height(clicked), 1),
                "clicked_height": height(clicked),
                "zero_height": height(zero),
            }
        )
    return {"bars": bars, "width": CHART_WIDTH, "height": CHART_HEIGHT, "top": top}
