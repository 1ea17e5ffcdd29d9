"""Keyboard-wedge decoding: raw key events (python-evdev's InputEvent) to frames, and frames to
typed events (edge.drivers.wedge_events). No device handling here: that is
`edge.drivers.wedge`. Card numbers, track data and PINs are never logged."""

from __future__ import annotations

import logging

import evdev
from evdev import ecodes

from edge.drivers import cardformats, keymap
from edge.drivers.base import Token, TokenKind
from edge.drivers.wedge_events import (
    BankCardRefused,
    CouldNotRead,
    PinCleared,
    PinEntered,
    PinKeyed,
    QrPayload,
    Scanned,
    Swiped,
    WedgeEvent,
)

log = logging.getLogger(__name__)


def event_for(result: cardformats.Result) -> WedgeEvent:
    """The event for one parsed frame."""
    match result:
        case cardformats.Magstripe(number=number, tracks=tracks):
            return Swiped(Token(TokenKind.MAGSTRIPE, number, authenticated=False), tracks)
        case cardformats.Barcode(number=number, check=check):
            return Scanned(Token(TokenKind.BARCODE, number, authenticated=False), check)
        case cardformats.Qr(text=text):
            return QrPayload(Token(TokenKind.QR, text, authenticated=False))
        case cardformats.BankCard():
            return BankCardRefused()
        case cardformats.Unreadable(reason=reason):
            return CouldNotRead(reason)
    raise AssertionError(f"unhandled parse result {type(result).__name__}")


# --------------------------------------------------------------------------------------- decoder


class FrameDecoder:
    """Key events -> frames -> events. Pure: no I/O, time comes from the events' own timestamps
    (the kernel's for a real device, the simulated reader's injectable clock otherwise), so a busy
    loop that reads late never splits a swipe.

    A frame ends at Enter/KPEnter, or when the next key comes more than `frame_gap_s` after the
    last one (`flush()` ends it when no key comes at all). Only key-down (value 1) types; 0 is up,
    2 is auto-repeat. Shift is tracked from its own down/up events.
    """

    def __init__(
        self, *, frame_gap_s: float = 0.1, pin_mode: bool = False, max_pin_length: int = 8
    ) -> None:
        self.frame_gap_s = frame_gap_s
        self.max_pin_length = max_pin_length
        self._pin_mode = pin_mode
        self._shift: set[int] = set()
        self._chars: list[str] = []
        self._bad: str | None = None
        self._last_key_t: float | None = None
        self._pin: list[str] = []
        self._swallow = False  # PIN mode: rest of a card read being thrown away

    @property
    def pin_mode(self) -> bool:
        return self._pin_mode

    @pin_mode.setter
    def pin_mode(self, on: bool) -> None:
        self._pin_mode = on
        self._reset_frame()
        self._pin.clear()
        self._swallow = False

    @property
    def pending(self) -> bool:
        """True while a frame is open (the reader should flush it after `frame_gap_s`)."""
        return bool(self._chars or self._bad or self._swallow)

    def feed(self, event: evdev.InputEvent) -> list[WedgeEvent]:
        if event.type != ecodes.EV_KEY:
            return []
        code, value = int(event.code), int(event.value)
        if code in keymap.SHIFT_KEYS:
            if value == 1:
                self._shift.add(code)
            elif value == 0:
                self._shift.discard(code)
            return []
        if value != 1:
            return []
        t = event.timestamp()
        out: list[WedgeEvent] = []
        if (
            self.pending
            and self._last_key_t is not None
            and t - self._last_key_t > self.frame_gap_s
        ):
            out += self.flush()
        self._last_key_t = t
        if self._pin_mode:
            out += self._pin_key(code)
        else:
            out += self._code_key(code)
        return out

    def flush(self) -> list[WedgeEvent]:
        """End the open frame (inter-key timeout)."""
        if self._swallow:
            self._swallow = False
            return [CouldNotRead("card read during PIN entry: enter the PIN on the keypad")]
        if not (self._chars or self._bad):
            return []
        return [self._end_frame()]

    def _reset_frame(self) -> None:
        self._chars.clear()
        self._bad = None

    def _end_frame(self) -> WedgeEvent:
        text, bad = "".join(self._chars), self._bad
        self._reset_frame()
        if bad is not None:
            return CouldNotRead(bad)
        return event_for(cardformats.classify(text))

    def _code_key(self, code: int) -> list[WedgeEvent]:
        if code in keymap.ENTER_KEYS:
            return [self._end_frame()] if (self._chars or self._bad) else []
        ch = keymap.char_for(code, bool(self._shift))
        if ch is None:
            self._bad = "unexpected keys: noise, or the reader is in the wrong mode"
        elif len(self._chars) >= cardformats.MAX_FRAME:
            self._bad = "too long: a stuck key or noise"
        else:
            self._chars.append(ch)
        return []

    def _pin_key(self, code: int) -> list[WedgeEvent]:
        if self._swallow:
            if code in keymap.ENTER_KEYS:
                return self.flush()
            return []
        if code in keymap.ENTER_KEYS:
            if not self._pin:
                return []
            pin = "".join(self._pin)
            self._pin.clear()
            return [PinEntered(pin)]
        if code in keymap.CLEAR_KEYS:
            had = bool(self._pin)
            self._pin.clear()
            return [PinCleared()] if had else []
        ch = keymap.char_for(code, bool(self._shift))
        if (
            code in keymap.KEYPAD_DIGITS
            and ch is not None
            and ch.isdigit()
            and len(self._pin) < self.max_pin_length
        ):
            self._pin.append(ch)
            return [PinKeyed(len(self._pin))]
        # Not a PIN key (a swipe or scan typing into the keypad, or too many digits): throw the
        # PIN away so that no card digit is ever taken for part of it.
        had = bool(self._pin)
        self._pin.clear()
        self._swallow = True
        return [PinCleared()] if had else []
