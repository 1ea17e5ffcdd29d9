"""Logins that fail and lockouts go into the audit trail too."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from backoffice.audit.trail import client_address, record


@receiver(user_login_failed)
def _login_failed(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any
) -> None:
    name = str(credentials.get("username", ""))
    address = client_address(request) if request is not None else None
    record(name, address, "login", allowed=False, reason="wrong user name or password")


@receiver(user_logged_in)
def _logged_in(sender: object, request: HttpRequest | None, user: Any, **kw: Any) -> None:
    address = client_address(request) if request is not None else None
    record(str(user.get_username()), address, "login", allowed=True)


@receiver(user_locked_out)
def _locked_out(
    sender: object, request: HttpRequest, username: str | None = None, **kw: Any
) -> None:
    record(username or "", client_address(request), "lockout", allowed=False, reason="locked out")
