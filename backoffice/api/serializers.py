"""What the API reads and writes, as DRF serializers (drf-spectacular builds the OpenAPI schema
from them). Money is integer minor units, as everywhere in kiosk-edge."""

from __future__ import annotations

from rest_framework import serializers

from cloud_sync.operator_input import MAX_AMOUNT

ACCOUNT_RE = r"^[A-Za-z0-9_.@-]{1,64}$"
CARD_STATES = ("lost", "frozen", "active", "cancelled")


class MemberIn(serializers.Serializer[dict[str, object]]):
    account = serializers.RegexField(ACCOUNT_RE, max_length=64)
    name = serializers.CharField(max_length=200, min_length=1)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    category = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    site = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


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
    number = serializers.RegexField(r"^[0-9A-Fa-f ]{4,32}$", help_text="printed number or NFC UID")
    kind = serializers.ChoiceField(choices=("number", "nfc"), default="number")


class CardStatusIn(serializers.Serializer[dict[str, object]]):
    status = serializers.ChoiceField(choices=CARD_STATES)


class TopUpIn(serializers.Serializer[dict[str, object]]):
    amount = serializers.IntegerField(min_value=1, max_value=MAX_AMOUNT, help_text="minor units")
    receipt = serializers.RegexField(r"^[A-Za-z0-9_.:/-]{1,64}$", help_text="the POS receipt")
    purse = serializers.RegexField(r"^(cash|points|visits:[a-z0-9_-]{1,32})$", default="cash")


class TopUpOut(serializers.Serializer[dict[str, object]]):
    account = serializers.CharField()
    purse = serializers.CharField()
    amount = serializers.IntegerField()
    receipt = serializers.CharField()
    balance = serializers.IntegerField()


class RefundIn(serializers.Serializer[dict[str, object]]):
    tap = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$", help_text="tap id of the purchase")
    amount = serializers.IntegerField(min_value=1, max_value=MAX_AMOUNT, required=False)
    reason = serializers.CharField(max_length=200, min_length=1)
    account = serializers.RegexField(ACCOUNT_RE, required=False)


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
