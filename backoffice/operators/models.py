"""An operator is a Django user; this row adds the venue scope (and the fleet permission)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Operator(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator"
    )
    site = models.CharField(
        _("venue"),
        max_length=64,
        blank=True,
        help_text=_("Sees and touches only members and kiosks of this venue; empty = all venues."),
    )

    class Meta:
        verbose_name = _("operator venue")
        verbose_name_plural = _("operator venues")
        permissions = (("view_fleet", _("Can see the fleet of kiosks")),)

    def __str__(self) -> str:
        return f"{self.user} @ {self.site or '*'}"
