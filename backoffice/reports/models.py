"""No table: a permission to see reports (given to venue managers, auditors, chain admins)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ReportAccess(models.Model):
    class Meta:
        managed = False
        default_permissions = ()
        permissions = (("view_report", _("Can see reports and export them")),)
        verbose_name = _("report")
