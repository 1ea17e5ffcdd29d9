"""Simulated cards at the APDU level: a plain UID tag and an NTAG 424 DNA mirroring SUN URLs.

The simulated reader and the vpcd card emulator in tests both drive these models.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from edge.drivers.ntag424 import (
    SiteKeys,
    encrypt_picc_data,
    sdm_mac,
    session_mac_key,
)
from edge.drivers.sun_url import build_ndef_file, sun_url

__all__ = ["Ntag424Tag", "PlainTag", "SimCard"]

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"
SW_BAD_INS = b"\x6d\x00"
SW_WRONG_P1P2 = b"\x6b\x00"
SW_WRONG_LENGTH = b"\x67\x00"
NDEF_APP = bytes.fromhex("D2760000850101")
NDEF_FILE = bytes.fromhex("E104")


class SimCard(Protocol):
    """A card model: `reset` on power-up, `transmit` one command APDU -> response APDU."""

    def reset(self) -> None: ...

    def transmit(self, apdu: bytes) -> bytes: ...


class PlainTag:
    """A tag with only a UID (MIFARE Classic/Ultralight class): no NDEF application."""

    def __init__(self, uid: bytes) -> None:
        self.uid = uid

    def reset(self) -> None:
        pass

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:4] == b"\xff\xca\x00\x00":
            return self.uid + SW_OK
        if apdu[1:2] == b"\xa4":
            return SW_NOT_FOUND
        return SW_BAD_INS


class Ntag424Tag:
    """An NTAG 424 DNA whose NDEF file mirrors `base?e=<PICCData>&cmac=<SDMMAC>` (our layout).

    The read counter goes up each time the NDEF file is selected. `forge_mac` corrupts the MAC;
    `replay_next` makes the next read serve the previous file bytes again (a captured URL).
    """

    def __init__(
        self,
        uid: bytes,
        *,
        meta_key: bytes,
        file_key: bytes,
        read_ctr: int = 0,
        base_url: str = "https://tap.example/k",
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.uid = uid
        self.read_ctr = read_ctr
        self.forge_mac = False
        self.replay_next = False
        self._meta_key = meta_key
        self._file_key = file_key
        self._base_url = base_url
        self._random = random
        self._app = False
        self._file: bytes | None = None
        self._last_file: bytes | None = None

    @classmethod
    def for_site(cls, uid: bytes, keys: SiteKeys, *, read_ctr: int = 0) -> Ntag424Tag:
        """A card provisioned for a site: keys diversified from its master key (AN10922)."""
        return cls(
            uid, meta_key=keys.meta_read_key, file_key=keys.file_read_key(uid), read_ctr=read_ctr
        )

    def reset(self) -> None:
        self._app = False
        self._file = None

    def sun_file(self) -> bytes:
        """Advance the counter and build the NDEF file a reader would see now."""
        if self.replay_next and self._last_file is not None:
            self.replay_next = False
            return self._last_file
        self.read_ctr += 1
        picc = encrypt_picc_data(self._meta_key, self.uid, self.read_ctr, self._random(5))
        mac = sdm_mac(session_mac_key(self._file_key, self.uid, self.read_ctr), b"")
        if self.forge_mac:
            mac = bytes([mac[0] ^ 0x01]) + mac[1:]
        self._last_file = build_ndef_file(sun_url(self._base_url, picc, mac))
        return self._last_file

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla_ins, p1p2, body = apdu[:2], apdu[2:4], apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        if cla_ins == b"\xff\xca":
            return self.uid + SW_OK
        if cla_ins == b"\x00\xa4" and p1p2 == b"\x04\x00":
            self._app = body == NDEF_APP
            self._file = None
            return SW_OK if self._app else SW_NOT_FOUND
        if cla_ins == b"\x00\xa4" and p1p2 == b"\x00\x0c":
            if not self._app or body != NDEF_FILE:
                return SW_NOT_FOUND
            self._file = self.sun_file()
            return SW_OK
        if cla_ins == b"\x00\xb0":
            if self._file is None:
                return SW_NOT_FOUND
            offset = int.from_bytes(p1p2, "big")
            n = apdu[4] if len(apdu) == 5 and apdu[4] else 256
            if offset + n > len(self._file):
                return SW_WRONG_P1P2
            return self._file[offset : offset + n] + SW_OK
        return SW_BAD_INS
