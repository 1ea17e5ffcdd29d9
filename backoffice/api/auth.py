"""DRF authentication by integration token (`Authorization: Bearer kt_...`), and the permission
check that maps each endpoint to a permission of the operators' model."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from backoffice.api.models import ApiToken
from backoffice.api.tokens import check


class TokenAuth(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, token = header.partition(" ")
        if scheme != self.keyword:
            return None
        row = check(token.strip())
        if row is None:
            raise exceptions.AuthenticationFailed("unknown or revoked token")
        return row.integration.user, row

    def authenticate_header(self, request: Request) -> str:
        return self.keyword  # 401, not 403, without a token


class TokenAuthScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "backoffice.api.auth.TokenAuth"
    name = "integrationToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "kt_<prefix>_<secret>"}


class Needs(permissions.BasePermission):
    """The view's `needs` (a permission of the operators' model, e.g. `members.top_up`), per
    method: `needs = {"GET": "members.view_member", "POST": "members.add_member"}`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        perm = getattr(view, "needs", {}).get(request.method or "GET")
        if perm is None:
            return False
        if user.has_perm(perm):
            return True
        from backoffice.audit.trail import record

        record(user.get_username(), request.META.get("REMOTE_ADDR"), f"api {request.method}",
               request.path[:200], allowed=False, reason=f"missing permission {perm}")  # fmt: skip
        return False
