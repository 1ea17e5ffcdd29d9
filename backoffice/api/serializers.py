"""What the API reads and writes, as DRF serializers (drf-spectacular builds the OpenAPI schema
from them). Money is integer minor units, as everywhere in kiosk-edge."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from cloud_sync.operator_input import MAX_AMOUNT

ACCOUNT_RE = r"^[A-Za-z0-9_.@-]{1,64}$"


class Text(serializers.CharField):
    """A JSON string as sent: no number taken for text, no whitespace trimmed away."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        # Django refuses NUL in text; saying so puts it in the schema (a pattern)
        self.validators.append(RegexValidator(r"^[^\x00]*$", "no NUL characters"))

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class Pattern(serializers.RegexField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class Whole(serializers.IntegerField):
    """A JSON integer: no "12" string, no 12.0, no true."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


CARD_STATES = ("lost", "frozen", "active", "cancelled")


class MemberIn(serializers.Serializer[dict[str, object]]):
    account = Pattern(ACCOUNT_RE, max_length=64)
    name = Text(max_length=200, min_length=1)
    phone = Text(max_length=32, required=False, allow_blank=True, default="")
    category = Text(max_length=64, required=False, allow_blank=True, default="")
    site = Text(max_length=64, required=False, allow_blank=True, default="")


class CardOut(serializers.Serializer[dict[str, object]]):
    ref = serializers.CharField(help_text="HMAC reference of the card; never the number")
    kind = serializers.CharField()
    status = serializers.CharField()


class MemberOut(serializers.Serializer[dict[str, object]]):
    account = serializers.CharField()
    name = serializers.CharField()
    phone = serializers.CharField()
    category = serializers.CharField()
    tier = serializers.CharField()
    site = serializers.CharField()
    balances = serializers.DictField(child=serializers.IntegerField(), required=False)
    cards = CardOut(many=True, required=False)


class MemberPage(serializers.Serializer[dict[str, object]]):
    count = serializers.IntegerField()
    results = MemberOut(many=True)


class Balances(serializers.Serializer[dict[str, object]]):
    account = serializers.CharField()
    balances = serializers.DictField(child=serializers.IntegerField())


class CardIn(serializers.Serializer[dict[str, object]]):
    number = Pattern(r"^[0-9A-Fa-f ]{4,32}$", help_text="printed number or NFC UID")
    kind = serializers.ChoiceField(choices=("number", "nfc"), default="number")


class CardStatusIn(serializers.Serializer[dict[str, object]]):
    status = serializers.ChoiceField(choices=CARD_STATES)


class TopUpIn(serializers.Serializer[dict[str, object]]):
    amount = Whole(min_value=1, max_value=MAX_AMOUNT, help_text="minor units")
    receipt = Pattern(r"^[A-Za-z0-9_.:/-]{1,64}$", help_text="the POS receipt")
    purse = Pattern(r"^(cash|points|visits:[a-z0-9_-]{1,32})$", default="cash")


class TopUpOut(serializers.Serializer[dict[str, object]]):
    account = serializers.CharField()
    purse = serializers.CharField()
    amount = serializers.IntegerField()
    receipt = serializers.CharField()
    balance = serializers.IntegerField()


class RefundIn(serializers.Serializer[dict[str, object]]):
    tap = Pattern(r"^[A-Za-z0-9_.:-]{1,64}$", help_text="tap id of the purchase")
    amount = Whole(min_value=1, max_value=MAX_AMOUNT, required=False)
    reason = Text(max_length=200, min_length=1)
    account = Pattern(ACCOUNT_RE, required=False)


class RefundOut(serializers.Serializer[dict[str, object]]):
    account = serializers.CharField()
    cash = serializers.IntegerField()
    points_back = serializers.IntegerField()
    repeated = serializers.BooleanField()


class Transaction(serializers.Serializer[dict[str, object]]):
    replica = serializers.CharField()
    seq = serializers.IntegerField()
    wall_ms = serializers.IntegerField()
    kind = serializers.CharField()
    account = serializers.CharField()
    purse = serializers.CharField()
    amount = serializers.IntegerField()
    counterpart = serializers.CharField()
    ref = serializers.CharField()


class TransactionPage(serializers.Serializer[dict[str, object]]):
    results = Transaction(many=True)
    next_cursor = serializers.CharField()
    more = serializers.BooleanField()


class Problem(serializers.Serializer[dict[str, object]]):
    detail = serializers.CharField()
    invalid = serializers.JSONField(required=False, help_text="per field, for a refused body")
