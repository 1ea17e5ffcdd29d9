"""Members and cards in Django's admin: list, search (name, phone, account, card number via its
reference), filters, import/export; saving and deleting go through the audited cloud actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportModelAdmin

from backoffice.cloud import cloud
from backoffice.members import actions
from backoffice.members.models import Card, Member
from backoffice.members.resources import MemberResource
from backoffice.operators.scope import venue_of


def _scoped(request: HttpRequest, qs: QuerySet[Any], field: str) -> QuerySet[Any]:
    venue = venue_of(request)
    return qs if venue is None else qs.filter(**{field: venue})


class CardInline(admin.TabularInline[Card, Member]):
    model = Card
    fields = ("ref", "kind", "status", "created")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # cards are linked on the member page (a signed cloud op)


@admin.register(Member)
class MemberAdmin(ImportExportModelAdmin):  # type: ignore[misc]
    resource_classes = (MemberResource,)
    list_display = ("account", "name", "phone", "category", "tier", "expiry", "site", "page")
    list_filter = ("site", "tier", "category")
    search_fields = ("account", "name", "phone")
    search_help_text = _("Account, name, phone or card number")
    inlines = (CardInline,)

    @admin.display(description=_("member page"))
    def page(self, obj: Member) -> SafeString:
        url = reverse("member", args=[obj.account])
        return format_html('<a href="{}">{}</a>', url, _("open"))

    def get_import_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_import_resource_kwargs(request, **kwargs), "request": request}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Member]:
        return _scoped(request, super().get_queryset(request), "site")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Member], search_term: str
    ) -> tuple[QuerySet[Member], bool]:
        found, dupes = super().get_search_results(request, queryset, search_term)
        refs = cloud().card_refs(search_term)
        if refs:
            found = found | queryset.filter(cards__ref__in=refs)
            dupes = True
        return found, dupes

    def get_readonly_fields(self, request: HttpRequest, obj: Member | None = None) -> Any:
        return ("account",) if obj is not None else ()

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        venue = venue_of(request)
        if db_field.name == "site" and venue is not None:
            kwargs["initial"] = venue
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Member, form: Any, change: bool) -> None:
        venue = venue_of(request)
        if venue is not None:
            obj.site = venue  # an operator of one venue registers members of that venue
        super().save_model(request, obj, form, change)
        actions.register(request, obj)

    def delete_model(self, request: HttpRequest, obj: Member) -> None:
        actions.delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        for m in queryset:
            actions.delete(request, m)


@admin.register(Card)
class CardAdmin(admin.ModelAdmin[Card]):
    list_display = ("ref", "member", "kind", "status", "created")
    list_filter = ("status", "kind")
    search_fields = ("member__account", "member__name")
    readonly_fields = ("ref", "member", "kind", "status", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Card]:
        return _scoped(request, super().get_queryset(request), "member__site")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Card], search_term: str
    ) -> tuple[QuerySet[Card], bool]:
        found, dupes = super().get_search_results(request, queryset, search_term)
        refs = cloud().card_refs(search_term)
        return (found | queryset.filter(ref__in=refs), dupes) if refs else (found, dupes)
