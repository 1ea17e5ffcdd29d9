"""The audit trail: one row per operator or CLI action, allowed or refused."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Action(models.Model):
    """Who did what, when, from where, to which account or card, and what it changed."""

    when = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)
    actor = models.CharField(_("who"), max_length=150, db_index=True)  # user, or cli:<unix user>
    address = models.GenericIPAddressField(_("from"), null=True, blank=True)
    action = models.CharField(_("what"), max_length=100, db_index=True)
    target = models.CharField(_("account or card"), max_length=200, blank=True, db_index=True)
    site = models.CharField(_("venue"), max_length=64, blank=True)
    allowed = models.BooleanField(_("allowed"))
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    before = models.JSONField(_("before"), default=dict, blank=True)
    after = models.JSONField(_("after"), default=dict, blank=True)

    class Meta:
        ordering = ("-when", "-id")
        verbose_name = _("action")
        verbose_name_plural = _("audit trail")
        permissions = (("export_action", _("Can export the audit trail")),)

    def __str__(self) -> str:
        verdict = "ok" if self.allowed else "refused"
        return f"{self.when:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target} {verdict}"
