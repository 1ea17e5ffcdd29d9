"""Members and cards from CSV/XLSX (django-import-export): one row per member, optionally with
a card. Columns: account, name, phone, category, tier, expiry, site, and a card as
`card_number` (printed number or barcode), `uid` (NFC UID) or `card_ref` (a reference already
computed with the site key: the `kiosk cards issue` CSV, with account and name columns added).
The preview checks each row; the cloud is written only when the operator confirms."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets

from backoffice.cloud import cloud
from backoffice.members import actions
from backoffice.members.models import Card, Member
from backoffice.operators.scope import venue_of
from cloud_sync import admin
from cloud_sync.errors import ActionRefused, ConfigError

_REF = re.compile(r"^[0-9a-f]{32}$")


def _text(row: dict[str, Any], *names: str) -> str:
    for n in names:
        v = row.get(n)
        if v not in (None, ""):
            return str(v).strip()
    return ""


class MemberResource(resources.ModelResource):  # type: ignore[misc]
    expiry = fields.Field(
        attribute="expiry", column_name="expiry", widget=widgets.DateWidget("%Y-%m-%d")
    )

    def __init__(self, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.request = request
        self._cards: dict[str, tuple[str, str]] = {}  # account -> (card ref, kind)

    class Meta:
        model = Member
        import_id_fields = ("account",)
        fields = ("account", "name", "phone", "category", "tier", "expiry", "site")
        export_order = fields
        skip_unchanged = False
        clean_model_instances = True

    def _card(self, row: dict[str, Any]) -> tuple[str, str] | None:
        number = _text(row, "card_number", "card")
        uid = _text(row, "uid", "nfc_uid")
        given = _text(row, "card_ref").lower()
        c = cloud()
        kind = "uid" if _text(row, "kind") == "uid" else "nfc"  # a UID-only card, on purpose
        try:
            if number:
                return c.card_token(number, "number"), "number"
            if uid:
                return c.card_token(uid, kind), kind
        except ActionRefused as exc:
            raise ValidationError(str(exc)) from None
        if given:
            if not _REF.match(given):
                raise ValidationError(_("card_ref is not a card reference: %(v)s") % {"v": given})
            return given, "nfc" if _text(row, "kind") == "ntag424" else "number"
        return None

    def before_import_row(self, row: dict[str, Any], **kwargs: Any) -> None:
        account, name = _text(row, "account"), _text(row, "name")
        if not account or not name:
            raise ValidationError(_("every row needs an account and a name"))
        venue = venue_of(self.request) if self.request is not None else None
        site = _text(row, "site")
        if venue is not None and site != venue:
            raise ValidationError(_("venue %(site)s is not yours") % {"site": site or "*"})
        try:
            card = self._card(row)
        except ConfigError as exc:
            raise ValidationError(str(exc)) from None
        if card is not None:
            owner = admin.card_owner(cloud().store, card[0])
            if owner is not None and owner != account:
                raise ValidationError(
                    _("this card is already linked to account %(a)s") % {"a": owner}
                )
            self._cards[account] = card

    def after_save_instance(self, instance: Member, row: dict[str, Any], **kwargs: Any) -> None:
        if kwargs.get("dry_run") or self.request is None:
            return
        if not actions.register(self.request, instance):
            raise ValidationError(_("the cloud refused member %(a)s") % {"a": instance.account})
        card = self._cards.get(instance.account)
        if card is None:
            return
        ref, kind = card
        c = cloud()
        with c.lock:
            admin.link_card(
                c.store, instance.account, ref, valid_until_ms=actions.expiry_ms(instance.expiry)
            )
        Card.objects.update_or_create(
            ref=ref, defaults={"member": instance, "kind": kind, "status": "active"}
        )
