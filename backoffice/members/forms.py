"""Forms of the counter pages (Django forms: validation and CSRF are Django's)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from backoffice.members.models import CARD_KINDS
from backoffice.money import parse_money


class MoneyField(forms.CharField):
    def clean(self, value: Any) -> int:
        text = super().clean(value)
        try:
            return parse_money(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class TopUpForm(forms.Form):
    amount = MoneyField(label=_("Amount"), max_length=12)
    receipt = forms.CharField(label=_("Receipt number"), max_length=64)


class LinkCardForm(forms.Form):
    number = forms.CharField(label=_("Card number or NFC UID"), max_length=64)
    kind = forms.ChoiceField(label=_("Kind"), choices=CARD_KINDS)


class ReplaceCardForm(LinkCardForm):
    pass


class RefundForm(forms.Form):
    amount = MoneyField(label=_("Amount"), max_length=12)
    original = forms.CharField(label=_("Original tap id or receipt"), max_length=64)
    reason = forms.CharField(label=_("Reason"), max_length=200)


class CodeForm(forms.Form):
    kind = forms.ChoiceField(
        label=_("Kind"), choices=(("voucher", _("top-up voucher")), ("coupon", _("coupon")))
    )
    code = forms.CharField(label=_("Code"), max_length=64)
    amount = MoneyField(label=_("Amount (vouchers)"), max_length=12, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == "voucher" and not data.get("amount"):
            self.add_error("amount", _("a voucher needs an amount"))
        return data


class BatchForm(forms.Form):
    sheet = forms.FileField(
        label=_("CSV or XLSX with columns account, amount, receipt"),
    )
