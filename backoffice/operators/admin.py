"""Operators in Django's admin: users and groups as Django ships them, and each user's venue."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from backoffice.operators.forms import LoginForm
from backoffice.operators.models import Operator

admin.site.login_form = LoginForm
admin.site.login_template = "otp/admin111/login.html"
admin.site.site_header = _("kiosk-edge back office")
admin.site.site_title = _("kiosk-edge back office")
admin.site.index_title = _("Back office")


@admin.register(Operator)
class OperatorAdmin(admin.ModelAdmin[Operator]):
    """One row per user (made with the user); the chain admin sets the venue here."""

    list_display = ("user", "site")
    list_editable = ("site",)
    search_fields = ("user__username", "site")
    list_filter = ("site",)
