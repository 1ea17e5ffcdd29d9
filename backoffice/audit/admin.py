"""The audit trail in Django's admin: read-only, searchable, filterable, exported to CSV/XLSX."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from import_export import resources
from import_export.admin import ExportMixin

from backoffice.audit.models import Action


class ActionResource(resources.ModelResource):  # type: ignore[misc]
    class Meta:
        model = Action
        fields = (
            "when", "actor", "address", "action", "target", "site", "allowed", "reason",
            "before", "after",
        )  # fmt: skip
        export_order = fields


@admin.register(Action)
class ActionAdmin(ExportMixin, admin.ModelAdmin[Action]):  # type: ignore[misc]
    resource_classes = (ActionResource,)
    list_display = ("when", "actor", "address", "action", "target", "site", "allowed", "reason")
    list_filter = ("allowed", "action", "site", "actor")
    search_fields = ("actor", "action", "target", "reason", "address")
    date_hierarchy = "when"
    readonly_fields = (*list_display, "before", "after")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the trail is append-only, even for the chain admin
