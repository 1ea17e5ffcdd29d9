"""Integrations and their tokens in the admin (tokens are issued by `kiosk cloud integration
add`, shown once; here they can be seen by prefix and revoked)."""

from __future__ import annotations

from django.contrib import admin

from backoffice.api.models import ApiToken, Integration


class TokenInline(admin.TabularInline[ApiToken, Integration]):
    model = ApiToken
    fields = ("prefix", "created", "last_used", "revoked")
    readonly_fields = ("prefix", "created", "last_used")
    extra = 0
    can_delete = False


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin[Integration]):
    list_display = ("user", "note", "created")
    inlines = (TokenInline,)
