"""What an operator types at `kiosk cloud ...`, checked before it reaches the store: amounts are
whole minor units within a sane bound (parsed from the digits, never through a float), ids and
names are valid UTF-8 without control characters. A refusal is a usage error naming the fix."""

from __future__ import annotations

import re
import unicodedata

import click

from edge.ledger.records import CARD_PREFIX, COUPON_PREFIX, VOUCHER_PREFIX

__all__ = ["ACCOUNT", "AMOUNT", "CODE", "MAX_AMOUNT", "NAME", "Amount", "Text"]

# One top-up, voucher or grant: 10,000,000.00 in a currency with cents. Far above any real one,
# far below what SQLite and msgpack hold (2**63), so totals of many stay exact too.
MAX_AMOUNT = 1_000_000_000
_DIGITS = re.compile(r"[0-9]+")


class Amount(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A positive whole number of minor units, digits only: `2500` for 25.00."""

    name = "minor units"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            text = str(value).strip()
        if not _DIGITS.fullmatch(text):
            hint = " (write 2500 for 25.00)" if re.fullmatch(r"[0-9]*[.,][0-9]+", text) else ""
            self.fail(
                f"{text!r} is not a whole number of minor units: digits only{hint}", param, ctx
            )
        if len(text) > len(str(MAX_AMOUNT)) or not 1 <= int(text) <= MAX_AMOUNT:
            self.fail(f"{text} is not between 1 and {MAX_AMOUNT:,} minor units", param, ctx)
        return int(text)


class Text(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """An id or a name: valid UTF-8, no control characters, a bounded length; ids also without
    spaces (and accounts without the prefixes the ledger reserves for cards and codes)."""

    def __init__(self, what: str, *, max_len: int, spaces: bool, reserved: tuple[str, ...] = ()):
        self.name = what
        self.max_len = max_len
        self.spaces = spaces
        self.reserved = reserved

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # argv bytes that were not UTF-8 arrive as lone surrogates
            self.fail(
                f"the {self.name} is not valid UTF-8; type it in UTF-8 (terminal locale"
                " e.g. LANG=C.UTF-8)",
                param,
                ctx,
            )
        if not text.strip():
            self.fail(f"the {self.name} is empty", param, ctx)
        if len(text) > self.max_len:
            self.fail(f"the {self.name} is longer than {self.max_len} characters", param, ctx)
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
            self.fail(f"the {self.name} {text!r} holds control characters", param, ctx)
        if not self.spaces and any(c.isspace() for c in text):
            self.fail(f"the {self.name} {text!r} holds spaces", param, ctx)
        if text.startswith(self.reserved):
            self.fail(
                f"the {self.name} {text!r} starts with a prefix the ledger reserves"
                f" ({', '.join(self.reserved)})",
                param,
                ctx,
            )
        return text


AMOUNT = Amount()
ACCOUNT = Text(
    "account id", max_len=64, spaces=False, reserved=(CARD_PREFIX, COUPON_PREFIX, VOUCHER_PREFIX)
)
CODE = Text("code", max_len=64, spaces=False)
NAME = Text("name", max_len=100, spaces=True)
CARD = Text("card number", max_len=64, spaces=True)
