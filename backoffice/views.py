"""The console's home page and its refusal page (every 403 is recorded in the audit trail)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.template.loader import render_to_string
from django.utils.translation import gettext as _

from backoffice.audit.models import Action
from backoffice.audit.trail import refused
from backoffice.members.models import Member
from backoffice.members.views import page
from backoffice.operators.scope import venue_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    venue = venue_of(request)
    members = Member.objects.all() if venue is None else Member.objects.filter(site=venue)
    recent = (
        Action.objects.all()[:10]
        if request.user.has_perm("audit.view_action")
        else Action.objects.none()
    )
    return page(
        request,
        "backoffice/home.html",
        title=_("Back office"),
        venue=venue or _("all venues"),
        member_count=members.count(),
        recent=recent,
    )


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 403 handler: the refusal is recorded (who, from where, what) and shown plainly."""
    match = request.resolver_match
    what = match.url_name if match and match.url_name else request.path
    target = ""
    if match:
        target = str(match.kwargs.get("account") or match.kwargs.get("object_id") or "")
    refused(
        request, f"{request.method} {what}", target, str(exception or "") or "permission denied"
    )
    body = render_to_string(
        "backoffice/forbidden.html", {**admin.site.each_context(request)}, request=request
    )
    return HttpResponseForbidden(body)
