"""Money as operators type and read it: decimal text <-> integer minor units, exactly."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MINOR_UNITS = 100  # cash is held in minor units (fen, cents)


def parse_money(text: str) -> int:
    """ "12.50" -> 1250, exactly; anything else (zero, negative, a third decimal) refused."""
    try:
        value = Decimal(text.strip()) * MINOR_UNITS
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise ValueError(f"not an amount: {text!r}")
    return int(value)


def money(minor: int) -> str:
    return f"{Decimal(minor) / MINOR_UNITS:.2f}"
