"""What a keyboard-wedge reader reports (a swipe, a scan, a QR payload, a PIN, the reader lost or
back), as typed events. Plain data: importing this needs no evdev, so a kiosk without a wedge
reader never loads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.drivers.base import Token

# ---------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Swiped:
    """A member's magstripe card (TokenKind.MAGSTRIPE)."""

    token: Token
    tracks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Scanned:
    """A member's numeric barcode with a valid check digit (TokenKind.BARCODE)."""

    token: Token
    check: Literal["luhn", "ean13"]


@dataclass(frozen=True, slots=True)
class QrPayload:
    """Any other scanned code (QR, DataMatrix, alphanumeric): the raw text, for vouchers etc."""

    token: Token

    @property
    def text(self) -> str:
        return self.token.value


@dataclass(frozen=True, slots=True)
class PinEntered:
    """PIN keypad: Enter after digits. `repr` hides the PIN."""

    pin: str

    def __repr__(self) -> str:
        return f"PinEntered(length={len(self.pin)})"


@dataclass(frozen=True, slots=True)
class PinKeyed:
    """PIN keypad: a digit was pressed; `length` digits so far (for a masked display)."""

    length: int


@dataclass(frozen=True, slots=True)
class PinCleared:
    """PIN keypad: the digits so far were thrown away (clear key, or a card read mid-PIN)."""


@dataclass(frozen=True, slots=True)
class BankCardRefused:
    """A payment card was swiped: refused, and nothing of it kept."""


@dataclass(frozen=True, slots=True)
class CouldNotRead:
    """Garbage: half swipe, noise, wrong keyboard layout. `reason` is plain words for a screen."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReaderLost:
    """The reader is not there (unplugged, not found, no permission); retrying with backoff."""

    detail: str


@dataclass(frozen=True, slots=True)
class ReaderBack:
    """The reader is back after a ReaderLost."""

    device: str


WedgeEvent = (
    Swiped
    | Scanned
    | QrPayload
    | PinEntered
    | PinKeyed
    | PinCleared
    | BankCardRefused
    | CouldNotRead
    | ReaderLost
    | ReaderBack
)
