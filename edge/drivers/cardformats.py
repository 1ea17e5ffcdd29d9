"""Pure parsers for what a keyboard wedge types: magstripe tracks, barcodes, QR text.

`classify(text)` turns one frame of typed text into exactly one typed result and never raises.

Bank-card rule (why: track data of payment cards must never be stored or logged, PCI DSS 3.2):
a swipe is refused as a bank card when a track carries a primary account number (PAN) of 12-19
digits that passes the Luhn check AND either
  (a) it is on track 1 with ISO 7813 format code ``B`` (the financial-card format), or
  (b) it is followed by a 4-digit expiry and a 3-digit service code (track 1 after the second
      ``^``, track 2 after ``=``) and starts with a payment-card IIN: 2221-2720, or 3, 4, 5, 6.
Member cards should therefore use a non-``B`` track 1 format code (or no track 1), and numbers that
fail Luhn, start with 1, 7, 8 or 9, or carry no expiry + service code on the track.
Barcodes are typed numbers, not track data, so they are never refused by this rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BankCard",
    "Barcode",
    "Magstripe",
    "Qr",
    "Result",
    "Unreadable",
    "classify",
    "ean13_valid",
    "is_bank_card",
    "luhn_valid",
]

# Characters of one frame. A member card's tracks are under 250, our QR payloads (coupon,
# voucher, SUN URL) under 200: a longer frame is a stuck key, noise or someone's payload.
MAX_FRAME = 512
TOO_LONG = f"too long: more than {MAX_FRAME} characters (a stuck key, noise or a foreign code)"


@dataclass(frozen=True, slots=True)
class Magstripe:
    """A member card swipe. `number` is the card number (track 2 preferred, else track 1)."""

    number: str
    tracks: tuple[int, ...]

    def __repr__(self) -> str:
        return f"Magstripe(tracks={self.tracks}, number=<hidden>)"


@dataclass(frozen=True, slots=True)
class Barcode:
    """A numeric member card number whose check digit is right."""

    number: str
    check: Literal["luhn", "ean13"]

    def __repr__(self) -> str:
        return f"Barcode(check={self.check}, number=<hidden>)"


@dataclass(frozen=True, slots=True)
class Qr:
    """Any other printable payload (QR, DataMatrix, alphanumeric 1D): kept as raw text."""

    text: str

    def __repr__(self) -> str:
        return f"Qr(length={len(self.text)}, text=<hidden>)"


@dataclass(frozen=True, slots=True)
class BankCard:
    """A payment card's track data: carries nothing, on purpose."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Garbage: a half swipe, noise, a reader typing in the wrong keyboard layout."""

    reason: str


Result = Magstripe | Barcode | Qr | BankCard | Unreadable


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812 check digit (mod 10, doubling every second digit from the right)."""
    if not digits.isascii() or not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def ean13_valid(digits: str) -> bool:
    """GS1 EAN-13 check digit (weights 1, 3 from the left)."""
    if len(digits) != 13 or not digits.isascii() or not digits.isdigit():
        return False
    total = sum((ord(c) - 48) * (3 if i % 2 else 1) for i, c in enumerate(digits[:12]))
    return (10 - total % 10) % 10 == ord(digits[12]) - 48


def _bank_iin(pan: str) -> bool:
    if pan[0] in "3456":
        return True
    return len(pan) >= 4 and 2221 <= int(pan[:4]) <= 2720


def is_bank_card(pan: str, *, format_code: str | None, expiry_and_service: bool) -> bool:
    """The bank-card rule of this module's docstring."""
    if not (12 <= len(pan) <= 19 and luhn_valid(pan)):
        return False
    if format_code == "B":
        return True
    return expiry_and_service and _bank_iin(pan)


# Track 1 (ISO 7813): %  FC  PAN  ^  NAME  ^  YYMM SSS discretionary  ?
_TRACK1 = re.compile(r"%([A-Z])([0-9]{1,19})\^([^^?%;]{0,26})\^([^?%;]*)\?")
# Track 2 (ISO 7813): ;  PAN  [=  YYMM SSS discretionary]  ?
_TRACK2 = re.compile(r";([0-9]{1,19})(?:=([0-9]*))?\?")
# Reader error markers for an unreadable track (MagTek, IDTech: %E? ;E?)
_TRACK_ERROR = re.compile(r"[%;]E\?")
# AIM symbology identifier some scanners prefix (]Q1 = QR code, ]E0 = EAN-13, ...)
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")


def _expiry_and_service(rest: str) -> bool:
    return len(rest) >= 7 and rest[:7].isdigit()


def _parse_swipe(text: str) -> Result:
    pans: list[tuple[int, str]] = []
    bank = False
    pos = 0
    errors = 0
    while pos < len(text):
        err = _TRACK_ERROR.match(text, pos)
        if err:
            errors += 1
            pos = err.end()
            continue
        m1 = _TRACK1.match(text, pos)
        if m1:
            fc, pan, _name, rest = m1.groups()
            bank |= is_bank_card(pan, format_code=fc, expiry_and_service=_expiry_and_service(rest))
            pans.append((1, pan))
            pos = m1.end()
            continue
        m2 = _TRACK2.match(text, pos)
        if m2:
            pan, rest2 = m2.group(1), m2.group(2) or ""
            bank |= is_bank_card(
                pan, format_code=None, expiry_and_service=_expiry_and_service(rest2)
            )
            pans.append((2, pan))
            pos = m2.end()
            continue
        # Anything else: a half swipe, or a layout mismatch that turned ^ and ? into other keys.
        # A bank card's digits may sit in this text: check before giving up, say nothing of it.
        if _looks_like_bank_fragment(text):
            return BankCard()
        if "?" not in text[pos:]:
            return Unreadable("incomplete swipe: swipe again, steadily")
        return Unreadable("card data not in a known format (check the reader's keyboard layout)")
    if bank or _looks_like_bank_fragment(text):
        return BankCard()
    if not pans:
        return Unreadable("card could not be read: swipe again")
    numbers = {pan for _, pan in pans}
    if len(numbers) > 1:
        return Unreadable("tracks disagree: swipe again")
    track2 = [pan for t, pan in pans if t == 2]
    number = track2[0] if track2 else pans[0][1]
    return Magstripe(number=number, tracks=tuple(t for t, _ in pans))


_FRAGMENT_B = re.compile(r"%B([0-9]{12,19})")


def _looks_like_bank_fragment(text: str) -> bool:
    # A half swipe of a bank card still shows "%B" + a Luhn-valid PAN: refuse it as a bank card
    # rather than call it unreadable, so that the app never tries to keep any of it.
    m = _FRAGMENT_B.match(text)
    return bool(m and luhn_valid(m.group(1)))


def classify(text: str) -> Result:
    """One frame of typed text -> one result. Never raises."""
    try:
        return _classify(text)
    except Exception:  # a parser bug must not take the reader down; the reason says so
        return Unreadable("internal parser error")


def _classify(text: str) -> Result:
    if not text:
        return Unreadable("empty read")
    if len(text) > MAX_FRAME:
        return Unreadable(TOO_LONG)
    if not text.isprintable():
        return Unreadable("control characters in the data: noise")
    force_qr = False
    aim = _AIM.match(text)
    if aim:
        force_qr = text[1] in "Qd"  # QR code, DataMatrix
        text = text[aim.end() :]
        if not text:
            return Unreadable("empty code")
    if not force_qr and text[0] in "%;":
        return _parse_swipe(text)
    if not force_qr and text.isascii() and text.isdigit():
        if not 8 <= len(text) <= 19:
            return Unreadable("number of the wrong length for a card")
        if ean13_valid(text):
            return Barcode(number=text, check="ean13")
        if luhn_valid(text):
            return Barcode(number=text, check="luhn")
        return Unreadable("check digit wrong: scan again")
    if len(text) < 4:
        return Unreadable("too short: noise")
    return Qr(text=text)
