"""What a tap becomes: the APDU dialogue with a card, SUN verification, and the reader's events.

Both NFC backends (pcsc, simulated) run `read_tap` over a `CardLink`, so they share this code.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.drivers.base import DriverError, Token, TokenKind
from edge.drivers.ntag424 import RejectReason, SiteKeys, SunReading, SunRejected, verify_sun
from edge.drivers.sun_counters import CounterStore
from edge.drivers.sun_url import (
    MAX_NDEF_LEN,
    SunMessage,
    is_sun_url,
    parse_ndef_uri,
    parse_sun_url,
)

__all__ = [
    "GET_UID",
    "CardGone",
    "CardIOError",
    "CardLink",
    "CardPresented",
    "CardRejected",
    "CardRemovedEarly",
    "NfcEvent",
    "ReaderBack",
    "ReaderLost",
    "SunVerifier",
    "read_tap",
]

log = logging.getLogger(__name__)

GET_UID = bytes.fromhex("FFCA000000")  # PC/SC part 3 pseudo-APDU, answered by the reader
NDEF_APP = bytes.fromhex("D2760000850101")
SELECT_NDEF_APP = bytes.fromhex("00A4040007") + NDEF_APP + b"\x00"
SELECT_NDEF_FILE = bytes.fromhex("00A4000C02E104")
SW_OK = b"\x90\x00"
READ_CHUNK = 0xF0  # stays under short-APDU and small reader frame limits


@dataclass(frozen=True, slots=True)
class CardPresented:
    """A card was read; `token.authenticated` tells a verified NTAG 424 SUN from a plain UID."""

    token: Token


@dataclass(frozen=True, slots=True)
class CardRejected:
    """A card was refused (forged MAC, replayed counter, unreadable or malformed)."""

    reason: RejectReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CardRemovedEarly:
    """The card left the field before the read finished: ask the member to tap again."""


@dataclass(frozen=True, slots=True)
class ReaderLost:
    """The reader or pcscd went away; the driver keeps retrying."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReaderBack:
    """The reader is usable again after a ReaderLost."""

    reader: str


NfcEvent = CardPresented | CardRejected | CardRemovedEarly | ReaderLost | ReaderBack


class CardGone(DriverError):
    """The card left the field during an APDU exchange."""


class CardIOError(DriverError):
    """An APDU exchange failed for another reason than removal."""


class CardLink(Protocol):
    """One connected card: send a command APDU, get the response APDU (data + SW1 SW2)."""

    def transmit(self, apdu: bytes) -> bytes: ...


class SunVerifier:
    """Verifies SUN URLs with a scope's card master keys and refuses read counters already seen.

    During a key rotation a kiosk holds two versions, the current and the previous; a card is
    tried with the newest first. After the rotation only the current one is left, and a card
    still keyed with the old version no longer verifies (BAD_MAC).
    """

    MAX_VERSIONS = 2

    def __init__(self, keys: SiteKeys | Sequence[SiteKeys], counters: CounterStore) -> None:
        held = [keys] if isinstance(keys, SiteKeys) else list(keys)
        if not 1 <= len(held) <= self.MAX_VERSIONS:
            raise ValueError("a kiosk holds one or two card master key versions")
        self._keys = sorted(held, key=lambda k: -k.version)
        self._counters = counters

    def _verify(self, msg: SunMessage) -> tuple[SunReading, int]:
        rejected: SunRejected | None = None
        for keys in self._keys:
            try:
                return verify_sun(keys, msg.picc_enc, msg.mac, msg.mac_input), keys.version
            except SunRejected as e:
                rejected = e
        assert rejected is not None
        raise rejected

    def token_from_url(self, url: str, reader_uid: bytes | None = None) -> Token:
        """The authenticated token of a SUN URL; raises SunRejected. `reader_uid` is the UID
        the reader saw: a SUN message inside a card of another UID (a URL captured with a phone
        and written to another tag) is refused."""
        msg = parse_sun_url(url)
        reading, version = self._verify(msg)
        if reader_uid is not None and not hmac.compare_digest(reader_uid, reading.uid):
            raise SunRejected(
                RejectReason.UID_MISMATCH, "the reader's UID is not the UID inside the SUN message"
            )
        # Only after the MAC checks: a forged message must never move a card's counter.
        if not self._counters.advance(reading.uid, reading.read_ctr):
            raise SunRejected(RejectReason.REPLAYED, f"read counter {reading.read_ctr} not new")
        return Token(
            TokenKind.NTAG424_SUN,
            reading.uid.hex().upper(),
            authenticated=True,
            sun_ctr=reading.read_ctr,
            key_version=version,
        )


def _exchange(link: CardLink, apdu: bytes) -> tuple[bytes, bytes]:
    resp = link.transmit(apdu)
    if len(resp) < 2:
        # vpcd and some readers answer an empty response when the card vanished mid-command.
        raise CardGone("empty response")
    return resp[:-2], resp[-2:]


def _read_binary(link: CardLink, offset: int, length: int) -> bytes:
    out = b""
    while len(out) < length:
        n = min(READ_CHUNK, length - len(out))
        pos = offset + len(out)
        data, sw = _exchange(link, bytes([0x00, 0xB0, pos >> 8, pos & 0xFF, n]))
        if sw != SW_OK or len(data) != n:
            raise SunRejected(RejectReason.UNREADABLE, f"ReadBinary answered SW {sw.hex()}")
        out += data
    return out


def _read_ndef_file(link: CardLink) -> bytes | None:
    """The NDEF file (E104) of an NFC Forum Type 4 tag, or None if the card has no NDEF app."""
    if _exchange(link, SELECT_NDEF_APP)[1] != SW_OK:
        return None
    sw = _exchange(link, SELECT_NDEF_FILE)[1]
    if sw != SW_OK:
        raise SunRejected(RejectReason.UNREADABLE, f"select NDEF file answered SW {sw.hex()}")
    head = _read_binary(link, 0, 2)
    nlen = int.from_bytes(head, "big")
    if nlen > MAX_NDEF_LEN:
        raise SunRejected(RejectReason.MALFORMED, "NDEF message too long")
    return head + _read_binary(link, 2, nlen)


def read_tap(link: CardLink, verifier: SunVerifier) -> NfcEvent:
    """Read a presented card: its UID, then its SUN URL if it has one. Blocking (APDU I/O).

    A card with an NDEF URL carrying SUN parameters must verify; a card without one is a plain
    UID tag (unauthenticated). Reader-level failures (DeviceGone) propagate to the backend.
    """
    try:
        uid, sw = _exchange(link, GET_UID)
        if sw != SW_OK or len(uid) not in (4, 7, 10):
            return CardRejected(RejectReason.UNREADABLE, f"GET UID answered SW {sw.hex()}")
        ndef = _read_ndef_file(link)
        url = None if ndef is None else parse_ndef_uri(ndef)
        if url is None or not is_sun_url(url):
            return CardPresented(Token(TokenKind.NFC_UID, uid.hex().upper(), authenticated=False))
        return CardPresented(verifier.token_from_url(url, uid))
    except CardGone:
        log.info("card removed before the read finished")
        return CardRemovedEarly()
    except CardIOError as e:
        log.warning("card unreadable: %s", e)
        return CardRejected(RejectReason.UNREADABLE, str(e))
    except SunRejected as e:
        log.warning("card rejected: %s (%s)", e.reason.value, e.detail)
        return CardRejected(e.reason, e.detail)
