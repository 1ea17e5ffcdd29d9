"""Issuing and checking integration tokens; the token is shown once, only its digest is kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from backoffice.api.models import ApiToken, Integration

PREFIX = "kt_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_name(name: str) -> str:
    return f"api:{name}"


@transaction.atomic
def issue(name: str, groups: list[str] = (), site: str = "", note: str = "") -> str:  # type: ignore[assignment]
    """A new token for integration `name` (made if new, in `groups`, scoped to `site`)."""
    from backoffice.operators.models import Operator

    user, made = User.objects.get_or_create(username=user_name(name))
    if made:
        user.set_unusable_password()  # it never logs in to the console
        user.save()
    integration, _ = Integration.objects.get_or_create(user=user, defaults={"note": note})
    for g in groups:
        user.groups.add(Group.objects.get(name=g))
    Operator.objects.update_or_create(user=user, defaults={"site": site})
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    ApiToken.objects.create(integration=integration, prefix=prefix, digest=_digest(secret))
    return f"{PREFIX}{prefix}_{secret}"


def check(token: str) -> ApiToken | None:
    """The live token row for this text, or None."""
    if not token.startswith(PREFIX):
        return None
    prefix, _, secret = token.removeprefix(PREFIX).partition("_")
    row = (
        ApiToken.objects.select_related("integration__user")
        .filter(prefix=prefix, revoked=False)
        .first()
    )
    if row is None or not hmac.compare_digest(row.digest, _digest(secret)):
        return None
    if not row.integration.user.is_active:
        return None
    ApiToken.objects.filter(pk=row.pk).update(last_used=timezone.now())
    return row
