"""The console's directory of members and cards: what operators search by (name, phone, card
reference) and the profile fields kept beside the cloud's registers. The cloud store stays the
truth for balances, card states and history; card numbers are never stored, only references."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

CARD_STATES = (
    ("active", _("active")),
    ("lost", _("lost")),
    ("frozen", _("frozen")),
    ("cancelled", _("cancelled")),
    ("replaced", _("replaced")),
    ("expired", _("expired")),
)
# "nfc" is an NTAG 424 card known by its verified SUN UID; "uid" a card read by its bare UID
# (clonable: only kiosks with accept_uid_cards take it), never the same card (docs/security.md).
CARD_KINDS = (
    ("number", _("printed number / barcode")),
    ("nfc", _("NFC (NTAG 424 DNA)")),
    ("uid", _("NFC UID only (clonable)")),
)


class Member(models.Model):
    account = models.CharField(_("account"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    phone = models.CharField(_("phone"), max_length=32, blank=True, db_index=True)
    category = models.CharField(_("category"), max_length=64, blank=True)
    tier = models.CharField(_("tier"), max_length=64, blank=True)
    expiry = models.DateField(_("expiry"), null=True, blank=True)
    site = models.CharField(
        _("venue"), max_length=64, blank=True, help_text=_("Home venue; empty = every venue.")
    )
    created = models.DateTimeField(_("registered"), auto_now_add=True)

    class Meta:
        ordering = ("account",)
        verbose_name = _("member")
        verbose_name_plural = _("members")
        permissions = (
            ("link_card", _("Can link a card to a member")),
            ("card_lifecycle", _("Can report a card lost, freeze, unfreeze, replace, cancel")),
            ("top_up", _("Can top up at the counter")),
            ("refund", _("Can refund and correct balances")),
            ("issue_codes", _("Can issue vouchers and coupons")),
            ("import_member", _("Can import members and cards")),
            ("export_member", _("Can export members")),
        )

    def __str__(self) -> str:
        return f"{self.account} {self.name}"


class Card(models.Model):
    ref = models.CharField(_("card reference"), max_length=64, unique=True)
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="cards"
    )
    kind = models.CharField(_("kind"), max_length=8, choices=CARD_KINDS, default="number")
    status = models.CharField(_("status"), max_length=16, choices=CARD_STATES, default="active")
    created = models.DateTimeField(_("issued"), auto_now_add=True)

    class Meta:
        ordering = ("-created",)
        verbose_name = _("card")
        verbose_name_plural = _("cards")

    def __str__(self) -> str:
        return f"…{self.ref[-8:]} ({self.status})"
