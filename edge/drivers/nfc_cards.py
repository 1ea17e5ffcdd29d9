"""Simulated cards at the APDU level: a plain UID tag and an NTAG 424 DNA mirroring SUN URLs.

The simulated reader and the vpcd card emulator in tests both drive these models.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from edge.drivers.ntag424 import (
    SiteKeys,
    aes_cbc,
    encrypt_picc_data,
    sdm_mac,
    session_mac_key,
)
from edge.drivers.ntag424_ev2 import (
    ADDITIONAL_FRAME,
    AUTH_FIRST,
    ZERO_IV,
    Ev2Error,
    Ev2Session,
    auth_card_answer,
    crc32nk,
)
from edge.drivers.sun_url import build_ndef_file, sun_url

__all__ = ["BlankNtag424", "Ntag424Tag", "PlainTag", "SimCard"]

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


class _NdefApplication:
    """The ISO 7816 side both NTAG 424 models share: GET UID, select the NDEF application and
    file, ReadBinary. Anything else is the card's own (empty answer)."""

    def __init__(self, uid: bytes) -> None:
        self.uid = uid
        self.app_selected = False
        self.file: bytes | None = None

    def reset(self) -> None:
        self.app_selected = False
        self.file = None

    def transmit(self, apdu: bytes, select_file: Callable[[], bytes]) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla_ins, p1p2 = apdu[:2], apdu[2:4]
        body = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        if cla_ins == b"\xff\xca":
            return self.uid + SW_OK
        if cla_ins == b"\x00\xa4" and p1p2 == b"\x04\x00":
            self.app_selected = body == NDEF_APP
            self.file = None
            return SW_OK if self.app_selected else SW_NOT_FOUND
        if cla_ins == b"\x00\xa4" and p1p2 == b"\x00\x0c":
            if not self.app_selected or body != NDEF_FILE:
                return SW_NOT_FOUND
            self.file = select_file()
            return SW_OK
        if cla_ins == b"\x00\xb0":
            if self.file is None:
                return SW_NOT_FOUND
            offset = int.from_bytes(p1p2, "big")
            n = apdu[4] if len(apdu) == 5 and apdu[4] else 256
            if offset + n > len(self.file):
                return SW_WRONG_P1P2
            return self.file[offset : offset + n] + SW_OK
        return b""


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
        self._iso = _NdefApplication(uid)
        self._last_file: bytes | None = None

    @classmethod
    def for_site(cls, uid: bytes, keys: SiteKeys, *, read_ctr: int = 0) -> Ntag424Tag:
        """A card provisioned for a site: keys diversified from its master key (AN10922)."""
        return cls(
            uid, meta_key=keys.meta_read_key, file_key=keys.file_read_key(uid), read_ctr=read_ctr
        )

    def reset(self) -> None:
        self._iso.reset()

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
        return self._iso.transmit(apdu, self.sun_file) or SW_BAD_INS


SW_NATIVE_OK = b"\x91\x00"
SW_ADDITIONAL_FRAME = b"\x91\xaf"
SW_AUTH_ERROR = b"\x91\xae"
SW_INTEGRITY_ERROR = b"\x91\x1e"
SW_LENGTH_ERROR = b"\x91\x7e"
SW_PARAMETER_ERROR = b"\x91\x9e"
SW_PERMISSION_DENIED = b"\x91\x9d"
SW_NO_SUCH_KEY = b"\x91\x40"
NDEF_FILE_NO = 0x02
FREE = 0xE  # access condition "free" in NTAG 424 access rights nibbles
NO_ACCESS = 0xF
SDM_ENABLED = 0x40
SDM_UID_CTR_ASCII = 0xC1  # SDMOptions: UID mirror, ReadCtr mirror, ASCII encoding
KEY_COUNT = 5


class BlankNtag424:
    """An NTAG 424 DNA as it leaves the factory (all five AES keys zero, SDM off, NDEF file
    writable by anyone), which accepts personalisation and then mirrors SUN like a real one.

    Personalisation uses the card's real secure messaging (NT4H2421Gx, AN12196; see
    `edge.drivers.ntag424_ev2`): AuthenticateEV2First (71/AF) opens a session (TI, CmdCtr,
    SesAuthENC/MAC keys); ChangeKey (C4) and ChangeFileSettings (5F) are CommMode.Full (data
    encrypted, MACt checked at the session's CmdCtr, answer MACed); ChangeKey of another key
    than the authenticated one carries NewKey XOR OldKey and CRC32NK. A wrong MAC (which is
    also what a wrong or replayed CmdCtr gives) answers 91 1E and ends the session, as does an
    ISO select or a reset; a command without a session answers 91 AE. WriteData (8D) is
    CommMode.Plain, allowed while the file's write right is free (0xE).

    What this model leaves out of the real card: the other native commands (GetFileSettings,
    ReadData, GetCardUID, AuthenticateEV2NonFirst, LRP mode, ...), CommMode.MAC, the CC and
    proprietary files, and SDM options other than our layout (FileOption 0x40, SDMOptions 0xC1,
    SDMAccessRights (RFU|CtrRet, MetaRead|FileRead) with key numbers, PICCDataOffset,
    SDMMACInputOffset and SDMMACOffset, 3 bytes little-endian each), mirrored per AN12196.
    """

    def __init__(
        self, uid: bytes, *, random: Callable[[int], bytes] = os.urandom, file_size: int = 256
    ) -> None:
        self.uid = uid
        self.keys = [bytes(16) for _ in range(KEY_COUNT)]
        self.key_versions = [0] * KEY_COUNT
        self.read_ctr = 0
        self.ndef = bytearray(file_size)
        self.access = bytes([0xE0, 0xEE])  # RW|Change, Read|Write
        self.sdm: dict[str, int] | None = None
        self.session: Ev2Session | None = None
        self._auth: tuple[int, bytes] | None = None  # key number and RndB between 71 and AF
        self._random = random
        self._iso = _NdefApplication(uid)

    def reset(self) -> None:
        self._iso.reset()
        self.session = None
        self._auth = None

    def current_file(self) -> bytes:
        """The NDEF file as a reader sees it now (with SUN mirrored when SDM is on)."""
        data = bytearray(self.ndef)
        sdm = self.sdm
        if sdm is None:
            return bytes(data)
        self.read_ctr += 1
        meta_key, file_key = self.keys[sdm["meta"]], self.keys[sdm["file"]]
        picc = encrypt_picc_data(meta_key, self.uid, self.read_ctr, self._random(5))
        at = sdm["picc"]
        data[at : at + 32] = picc.hex().upper().encode()
        mac_input = bytes(data[sdm["mac_input"] : sdm["mac"]])
        mac = sdm_mac(session_mac_key(file_key, self.uid, self.read_ctr), mac_input)
        data[sdm["mac"] : sdm["mac"] + 16] = mac.hex().upper().encode()
        return bytes(data)

    def _authenticate_first(self, data: bytes) -> bytes:
        self.session = None
        if len(data) < 2 or data[1] > len(data) - 2:
            return SW_LENGTH_ERROR
        if data[0] >= KEY_COUNT:
            return SW_NO_SUCH_KEY
        rnd_b = self._random(16)
        self._auth = (data[0], rnd_b)
        return aes_cbc(self.keys[data[0]], ZERO_IV, rnd_b, decrypt=False) + SW_ADDITIONAL_FRAME

    def _additional_frame(self, data: bytes) -> bytes:
        pending, self._auth = self._auth, None
        if pending is None:
            return SW_PERMISSION_DENIED
        key_no, rnd_b = pending
        if len(data) != 32:
            return SW_LENGTH_ERROR
        try:
            answer, session = auth_card_answer(
                self.keys[key_no], key_no, rnd_b, self._random(4), data
            )
        except Ev2Error:
            return SW_AUTH_ERROR
        self.session = session
        return answer + SW_NATIVE_OK

    def _open(self, ins: int, data: bytes) -> tuple[Ev2Session, int, bytes] | bytes:
        """Check a CommMode.Full command with a 1-byte header: session, header, plain data;
        or the status word to answer."""
        session = self.session
        if session is None:
            return SW_AUTH_ERROR
        try:
            header, plain = session.open_command(ins, data, 1)
        except Ev2Error:
            self.session = None  # a real card drops the authentication on an integrity error
            return SW_INTEGRITY_ERROR
        return session, header[0], plain

    def _change_key(self, data: bytes) -> bytes:
        opened = self._open(0xC4, data)
        if isinstance(opened, bytes):
            return opened
        session, key_no, plain = opened
        if session.key_no != 0:
            return SW_AUTH_ERROR  # only the application master key changes keys
        if key_no >= KEY_COUNT:
            return SW_NO_SUCH_KEY
        if key_no == session.key_no:
            if len(plain) != 17:
                return SW_LENGTH_ERROR
            self.keys[key_no], self.key_versions[key_no] = plain[:16], plain[16]
            session.cmd_ctr += 1
            self.session = None  # the session's key is gone: a bare 91 00 and no session
            return SW_NATIVE_OK
        if len(plain) != 21:
            return SW_LENGTH_ERROR
        new = bytes(a ^ b for a, b in zip(plain[:16], self.keys[key_no], strict=True))
        if crc32nk(new) != plain[17:21]:
            self.session = None
            return SW_INTEGRITY_ERROR
        self.keys[key_no], self.key_versions[key_no] = new, plain[16]
        return session.answer()

    def _write_data(self, data: bytes) -> bytes:
        if len(data) < 7 or data[0] != NDEF_FILE_NO:
            return SW_PARAMETER_ERROR
        if self.access[1] & 0x0F != FREE:
            return SW_PERMISSION_DENIED
        offset = int.from_bytes(data[1:4], "little")
        length = int.from_bytes(data[4:7], "little")
        chunk = data[7:]
        if len(chunk) != length or offset + length > len(self.ndef):
            return SW_PARAMETER_ERROR
        self.ndef[offset : offset + length] = chunk
        if self.session is not None:
            self.session.cmd_ctr += 1  # CommMode.Plain inside a session still counts
        return SW_NATIVE_OK

    def _change_file_settings(self, data: bytes) -> bytes:
        opened = self._open(0x5F, data)
        if isinstance(opened, bytes):
            return opened
        session, file_no, body = opened
        change = self.access[0] & 0x0F
        if change == NO_ACCESS or (change != FREE and change != session.key_no):
            return SW_PERMISSION_DENIED
        if file_no != NDEF_FILE_NO or len(body) != 15 or body[0] != SDM_ENABLED:
            return SW_PARAMETER_ERROR
        if body[3] != SDM_UID_CTR_ASCII:
            return SW_PARAMETER_ERROR
        meta, file_ = body[5] >> 4, body[5] & 0x0F
        if meta >= KEY_COUNT or file_ >= KEY_COUNT:
            return SW_PARAMETER_ERROR  # this model mirrors encrypted PICCData and a MAC only

        def off(i: int) -> int:
            return int.from_bytes(body[i : i + 3], "little")

        sdm = {"meta": meta, "file": file_, "picc": off(6), "mac_input": off(9), "mac": off(12)}
        if not (sdm["picc"] + 32 <= sdm["mac_input"] <= sdm["mac"] <= len(self.ndef) - 16):
            return SW_PARAMETER_ERROR
        self.access = bytes(body[1:3])
        self.sdm = sdm
        return session.answer()

    def transmit(self, apdu: bytes) -> bytes:
        answer = self._iso.transmit(apdu, self.current_file)
        if answer:
            if apdu[1:2] == b"\xa4":  # an ISO select ends any authentication
                self.session = None
                self._auth = None
            return answer
        body = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        if apdu[0] == 0x90 and self._iso.app_selected:
            if apdu[1] != ADDITIONAL_FRAME:
                self._auth = None  # a half-done authentication is abandoned by any other command
            handler = {
                AUTH_FIRST: self._authenticate_first,
                ADDITIONAL_FRAME: self._additional_frame,
                0xC4: self._change_key,
                0x8D: self._write_data,
                0x5F: self._change_file_settings,
            }.get(apdu[1])
            if handler is not None:
                return handler(body)
        return SW_BAD_INS
