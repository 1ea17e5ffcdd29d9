"""Webhook subscriptions, their deliveries (each attempt logged, replayable) and the worker's
cursor over the cloud store's ops."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils.translation import gettext_lazy as _

from backoffice.webhooks.events import EVENTS


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


class Subscription(models.Model):
    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(_("URL"), max_length=500)
    events = models.JSONField(_("events"), default=list, help_text=", ".join(sorted(EVENTS)))
    site = models.CharField(_("venue"), max_length=64, blank=True, help_text=_("empty = all"))
    secret = models.CharField(_("signing secret"), max_length=100, default=new_secret)
    active = models.BooleanField(_("active"), default=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")

    def __str__(self) -> str:
        return f"{self.name} -> {self.url}"


class Delivery(models.Model):
    PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
    STATES = ((PENDING, _("pending")), (DELIVERED, _("delivered")), (FAILED, _("failed")))

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=64, db_index=True)  # the same for every retry
    event = models.CharField(_("event"), max_length=64, db_index=True)
    payload = models.JSONField()
    status = models.CharField(
        _("status"), max_length=16, choices=STATES, default=PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_at = models.DateTimeField(_("next attempt"), db_index=True)
    last_code = models.IntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    log = models.JSONField(_("attempts log"), default=list)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    delivered = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        ordering = ("-created", "-id")
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        permissions = (("replay_delivery", _("Can replay a webhook delivery")),)

    def __str__(self) -> str:
        return f"{self.event} {self.event_id[:8]} -> {self.subscription.name}: {self.status}"


class Cursor(models.Model):
    """Where the worker is in the op feed (`cloud_sync.feed`) and what it knew of the kiosks."""

    name = models.CharField(max_length=32, primary_key=True)
    value = models.JSONField(default=dict)
