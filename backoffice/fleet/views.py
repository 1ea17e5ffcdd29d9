"""The fleet page: every kiosk the cloud knows (online/offline, lag, last contact, what it
said last), within the operator's venue."""

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
    rows = [
        {
            "site": d.site,
            "device": d.device,
            "status": "recovering" if d.recovering else ("online" if d.online else "offline"),
            "online": d.online,
            "lag": d.lag,
            "stored": d.stored,
            "queue": d.queue_depth,
            "seen": dt.datetime.fromtimestamp(d.last_seen_ms / 1000, dt.UTC)
            if d.last_seen_ms
            else None,
        }
        for d in devices
    ]
    context = {**admin.site.each_context(request), "title": _("Fleet"), "rows": rows}
    return render(request, "backoffice/fleet.html", context)
