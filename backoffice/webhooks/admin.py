"""Subscriptions and deliveries in the console's admin: each delivery with its attempts, and a
replay action (a chain admin, or whoever holds webhooks.replay_delivery)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from backoffice.audit.trail import actor_of, client_address, record
from backoffice.webhooks.models import Delivery, Subscription
from backoffice.webhooks.worker import replay


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin[Subscription]):
    list_display = ("name", "url", "events", "site", "active", "created")
    list_filter = ("active", "site")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin[Delivery]):
    list_display = (
        "created",
        "event",
        "subscription",
        "status",
        "attempts",
        "last_code",
        "next_at",
    )
    list_filter = ("status", "event", "subscription")
    search_fields = ("event_id", "event")
    readonly_fields = [f.name for f in Delivery._meta.fields] + ["log"]
    actions = ("replay_deliveries",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description=_("Replay the selected deliveries"), permissions=["replay"])
    def replay_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        for d in queryset:
            again = replay(d)
            record(actor_of(request), client_address(request), "webhook_replay", d.event_id,
                   allowed=True, after={"delivery": again.pk})  # fmt: skip
        messages.success(request, _("%(n)d deliveries queued again") % {"n": queryset.count()})

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.replay_delivery")
