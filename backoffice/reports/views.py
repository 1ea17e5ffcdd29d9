"""The reports page: pick a report, dates, period and venue; see its chart (matplotlib PNG in the
page) and tables; download CSV, XLSX or PDF. An operator of one venue sees only that venue."""

from __future__ import annotations

import base64
from typing import Any

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from backoffice.audit.trail import actor_of, client_address, record
from backoffice.cloud import cloud
from backoffice.members.views import page
from backoffice.operators.scope import venue_of
from backoffice.reports.forms import ReportForm
from backoffice.reports.shifts import shifts
from cloud_sync import report_export, reports

DOWNLOADS = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def _cells(report: reports.Report) -> list[dict[str, Any]]:
    cur = report.window.currency
    out = []
    for t in report.tables:
        rows = [
            [report_export.amount_text(r[c.key], c.money, cur) if isinstance(r[c.key], int)
             else r[c.key] for c in t.columns]
            for r in t.rows
        ]  # fmt: skip
        total = (
            [_("total")]
            + [report_export.amount_text(t.totals[c.key], c.money, cur) if c.key in t.totals
               else "" for c in t.columns[1:]]
            if t.totals else None
        )  # fmt: skip
        out.append({"title": t.title, "head": [c.label for c in t.columns], "rows": rows,
                    "total": total})  # fmt: skip
    return out


@login_required
@permission_required("reports.view_report", raise_exception=True)
def report_page(request: HttpRequest) -> HttpResponse:
    form = ReportForm(request.GET or None)
    context: dict[str, Any] = {"form": form, "title": _("Reports")}
    venue = venue_of(request)
    if form.is_valid():
        d = form.cleaned_data
        site = venue if venue is not None else (d["site"] or None)
        c = cloud()
        loc = c.cfg.reports.locale(site)
        window = reports.Window(d["start"], d["end"], d["by"], loc.timezone, loc.currency, site)
        if d["name"] == "shifts":
            result = shifts(window)
        else:
            with c.lock:
                result = reports.run(c.store, d["name"], window)
        fmt = request.GET.get("format", "")
        if fmt in DOWNLOADS:
            record(actor_of(request), client_address(request), f"report_{fmt}", d["name"],
                   site=site or "", allowed=True, before={"window": str(window)})  # fmt: skip
            data = report_export.render(result, fmt)
            response = HttpResponse(data, content_type=DOWNLOADS[fmt])
            filename = f"{d['name']}-{d['start']}-{d['end']}.{fmt}"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        fig = report_export.chart_figure(result)
        if fig is not None:
            png = report_export.figure_png(fig)
            context["chart"] = base64.b64encode(png).decode()
        context |= {"report": result, "tables": _cells(result), "query": request.GET.urlencode()}
    return page(request, "backoffice/reports.html", **context)
