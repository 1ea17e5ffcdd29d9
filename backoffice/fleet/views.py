"""The fleet page: every kiosk the cloud knows (online/offline, lag, last contact, and the
health it reported: version, clock, reader, display, disk, tap latency, refusals by reason),
within the operator's venue, and the fleet's alerts."""

from __future__ import annotations

import datetime as dt

from django.contrib import admin
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from backoffice.cloud import cloud
from backoffice.operators.scope import venue_of


@login_required
@permission_required("operators.view_fleet", raise_exception=True)
def kiosks(request: HttpRequest) -> HttpResponse:
    c = cloud()
    venue = venue_of(request)
    with c.lock:
        devices = [d for d in c.store.devices() if venue is None or d.site == venue]
        healths = c.fleet.healths()
        mine = {d.device for d in devices}
        events = [e for e in c.fleet.events(limit=50) if e.device in mine or not e.device]

    def when(ms: int | None) -> dt.datetime | None:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms else None

    rows = [
        {
            "site": d.site,
            "device": d.device,
            "status": "recovering" if d.recovering else ("online" if d.online else "offline"),
            "online": d.online,
            "lag": d.lag,
            "stored": d.stored,
            "queue": d.queue_depth,
            "seen": when(d.last_seen_ms),
            "health": healths.get(d.device),
            "refusals": ", ".join(
                f"{k.lower()} {n}" for k, n in sorted(healths[d.device].refusals.items())
            )
            if d.device in healths
            else "",
        }
        for d in devices
    ]
    alerts = [
        {
            "at": when(e.at_ms),
            "type": e.type,
            "device": e.device,
            "detail": e.detail,
            "open": e.open,
            "cleared": when(e.cleared_ms),
        }
        for e in events
    ]
    context = {
        **admin.site.each_context(request),
        "title": _("Fleet"),
        "rows": rows,
        "alerts": alerts,
    }
    return render(request, "backoffice/fleet.html", context)
