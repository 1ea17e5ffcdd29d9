"""The venue scope of an operator: the one venue it may see and touch, or None for all."""

from __future__ import annotations

from django.http import HttpRequest

from backoffice.operators.models import Operator


def venue_of(request: HttpRequest) -> str | None:
    user = request.user
    if not user.is_authenticated:
        return ""  # nothing
    if user.is_superuser:
        return None
    op = Operator.objects.filter(user_id=user.pk).first()
    return (op.site or None) if op else None


def in_scope(request: HttpRequest, site: str) -> bool:
    venue = venue_of(request)
    return venue is None or venue == site
