"""NTAG 424 DNA EV2 secure messaging (AES), per NXP NT4H2421Gx section 9.1 and AN12196.

Both sides of it: the PCD (the card writer in `provisioning.ntag424_writer`) and the PICC (the
card model `edge.drivers.nfc_cards.BlankNtag424`). Pinned to AN12196's worked examples in
tests/test_nfc_ev2.py:

- AuthenticateEV2First (cmd 71, then AF): E(K, RndB); E(K, RndA || RndB'); the card answers
  E(K, TI || RndA' || PDcap2 || PCDcap2), all AES-128-CBC with a zero IV. RndX' = rotate left.
- Session keys: SesAuthENCKey = CMAC(K, SV1), SesAuthMACKey = CMAC(K, SV2), SV1 = A5 5A 00 01 00
  80 || RndA[15:14] || (RndA[13:8] XOR RndB[15:10]) || RndB[9:0] || RndA[7:0], SV2 with 5A A5.
- CommMode.Full: data padded 80 00.., AES-CBC under SesAuthENCKey with IV = E(SesAuthENCKey,
  A5 5A || TI || CmdCtr || 8 zero bytes) (5A A5 for responses, with the incremented counter);
  MACt = odd bytes of CMAC(SesAuthMACKey, Cmd || CmdCtr || TI || CmdHeader || EncData), and for
  a response CMAC(SesAuthMACKey, RC || CmdCtr+1 || TI || RespData). CmdCtr is 2 bytes LE.
- ChangeKey data: for another key than the authenticated one (NewKey XOR OldKey) || KeyVer ||
  CRC32NK(NewKey); for the authenticated key NewKey || KeyVer. CRC32NK is the IEEE 802.3 CRC32
  without the final inversion (JAMCRC), little-endian.
"""

from __future__ import annotations

import hmac
import zlib
from dataclasses import dataclass, field

from edge.drivers.ntag424 import BLOCK, aes_cbc, aes_cmac, aes_ecb_encrypt

__all__ = [
    "ADDITIONAL_FRAME",
    "AUTH_FIRST",
    "ZERO_IV",
    "Ev2Error",
    "Ev2Session",
    "auth_card_answer",
    "auth_part2",
    "change_key_data",
    "crc32nk",
    "finish_auth",
    "mac_t",
    "pad",
    "rotl",
    "session_keys",
    "unpad",
]

AUTH_FIRST = 0x71
ADDITIONAL_FRAME = 0xAF
ZERO_IV = bytes(BLOCK)
MAC_LEN = 8
CAPS = bytes(6)  # PDcap2 and PCDcap2 as a blank card answers them


class Ev2Error(Exception):
    """A secure-messaging check failed (wrong key, MAC, counter, padding or framing)."""


def rotl(b: bytes) -> bytes:
    return b[1:] + b[:1]


def pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2: 80 then zeros to a whole block (always at least one byte)."""
    out = data + b"\x80"
    return out + bytes(-len(out) % BLOCK)


def unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not data or len(data) % BLOCK or not stripped.endswith(b"\x80"):
        raise Ev2Error("bad padding")
    if len(data) - len(stripped) >= BLOCK:
        raise Ev2Error("bad padding")
    return stripped[:-1]


def mac_t(key: bytes, data: bytes) -> bytes:
    """The truncated MAC: the odd-indexed bytes of the AES-CMAC."""
    return aes_cmac(key, data)[1::2]


def crc32nk(data: bytes) -> bytes:
    """CRC32 as ChangeKey wants it: IEEE 802.3 without the final inversion, little-endian."""
    return (zlib.crc32(data) ^ 0xFFFFFFFF).to_bytes(4, "little")


def _sv(label: bytes, rnd_a: bytes, rnd_b: bytes) -> bytes:
    mixed = bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
    return label + b"\x00\x01\x00\x80" + rnd_a[0:2] + mixed + rnd_b[6:16] + rnd_a[8:16]


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """(SesAuthENCKey, SesAuthMACKey) from the authentication key, RndA and RndB."""
    if len(rnd_a) != BLOCK or len(rnd_b) != BLOCK:
        raise ValueError("RndA and RndB are 16 bytes")
    return aes_cmac(key, _sv(b"\xa5\x5a", rnd_a, rnd_b)), aes_cmac(
        key, _sv(b"\x5a\xa5", rnd_a, rnd_b)
    )


@dataclass(slots=True)
class Ev2Session:
    """An authenticated session: keys, transaction identifier and command counter.

    The PCD calls `command` then `response`; the card calls `open_command` then `answer`. Both
    advance `cmd_ctr` once per command/response pair. Keys never appear in repr.
    """

    enc_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    ti: bytes
    key_no: int
    cmd_ctr: int = 0

    def _ctr(self, value: int | None = None) -> bytes:
        return (self.cmd_ctr if value is None else value).to_bytes(2, "little")

    def iv(self, label: bytes, ctr: int) -> bytes:
        return aes_ecb_encrypt(self.enc_key, label + self.ti + self._ctr(ctr) + bytes(8))

    def command_mac(self, ins: int, header: bytes, enc: bytes) -> bytes:
        return mac_t(self.mac_key, bytes([ins]) + self._ctr() + self.ti + header + enc)

    # --- PCD side -----------------------------------------------------------------------

    def command(self, ins: int, header: bytes, plain: bytes) -> bytes:
        """A CommMode.Full command APDU (90 INS 00 00 Lc header enc MACt 00)."""
        enc = b""
        if plain:
            enc = aes_cbc(
                self.enc_key, self.iv(b"\xa5\x5a", self.cmd_ctr), pad(plain), decrypt=False
            )
        body = header + enc + self.command_mac(ins, header, enc)
        return bytes([0x90, ins, 0x00, 0x00, len(body)]) + body + b"\x00"

    def response(self, resp: bytes, *, mac: bool = True) -> bytes:
        """Check a 91 00 answer (its MACt unless `mac` is False) and return its data; the counter
        moves on. Raise Ev2Error on a wrong MAC or status."""
        if resp[-2:] != b"\x91\x00":
            raise Ev2Error(f"status {resp[-2:].hex()}")
        self.cmd_ctr += 1
        if not mac:
            return resp[:-2]
        data, got = resp[: -2 - MAC_LEN], resp[-2 - MAC_LEN : -2]
        want = mac_t(self.mac_key, b"\x00" + self._ctr() + self.ti + data)
        if len(resp) < 2 + MAC_LEN or not hmac.compare_digest(want, got):
            raise Ev2Error("response MAC mismatch")
        return data

    # --- PICC side ----------------------------------------------------------------------

    def open_command(self, ins: int, body: bytes, header_len: int) -> tuple[bytes, bytes]:
        """Check a Full command's MAC at this session's counter: (header, decrypted data)."""
        if len(body) < header_len + MAC_LEN:
            raise Ev2Error("command too short")
        header, enc = body[:header_len], body[header_len:-MAC_LEN]
        if not hmac.compare_digest(self.command_mac(ins, header, enc), body[-MAC_LEN:]):
            raise Ev2Error("command MAC mismatch")
        if len(enc) % BLOCK:
            raise Ev2Error("encrypted data is not whole blocks")
        iv = self.iv(b"\xa5\x5a", self.cmd_ctr)
        plain = unpad(aes_cbc(self.enc_key, iv, enc, decrypt=True)) if enc else b""
        return header, plain

    def answer(self, data: bytes = b"") -> bytes:
        """The card's 91 00 answer with MACt (data in plain); the counter moves on."""
        self.cmd_ctr += 1
        return data + mac_t(self.mac_key, b"\x00" + self._ctr() + self.ti + data) + b"\x91\x00"


def auth_part2(key: bytes, enc_rnd_b: bytes, rnd_a: bytes) -> tuple[bytes, bytes]:
    """PCD: from the card's E(K, RndB), the part-2 APDU and RndB."""
    if len(enc_rnd_b) != BLOCK:
        raise Ev2Error("part 1 answer must be 16 bytes")
    rnd_b = aes_cbc(key, ZERO_IV, enc_rnd_b, decrypt=True)
    enc = aes_cbc(key, ZERO_IV, rnd_a + rotl(rnd_b), decrypt=False)
    return bytes([0x90, ADDITIONAL_FRAME, 0x00, 0x00, len(enc)]) + enc + b"\x00", rnd_b


def finish_auth(key: bytes, key_no: int, rnd_a: bytes, rnd_b: bytes, enc_resp: bytes) -> Ev2Session:
    """PCD: check the card's part-2 answer (RndA') and open the session at CmdCtr 0."""
    if len(enc_resp) != 2 * BLOCK:
        raise Ev2Error("part 2 answer must be 32 bytes")
    plain = aes_cbc(key, ZERO_IV, enc_resp, decrypt=True)
    if not hmac.compare_digest(plain[4:20], rotl(rnd_a)):
        raise Ev2Error("card did not prove the key (RndA' mismatch)")
    enc_key, mac_key = session_keys(key, rnd_a, rnd_b)
    return Ev2Session(enc_key, mac_key, ti=plain[:4], key_no=key_no)


def auth_card_answer(
    key: bytes, key_no: int, rnd_b: bytes, ti: bytes, part2: bytes
) -> tuple[bytes, Ev2Session]:
    """PICC: check E(K, RndA || RndB') and answer E(K, TI || RndA' || PDcap2 || PCDcap2)."""
    if len(part2) != 2 * BLOCK:
        raise Ev2Error("part 2 must be 32 bytes")
    plain = aes_cbc(key, ZERO_IV, part2, decrypt=True)
    rnd_a = plain[:BLOCK]
    if not hmac.compare_digest(plain[BLOCK:], rotl(rnd_b)):
        raise Ev2Error("PCD did not prove the key (RndB' mismatch)")
    answer = aes_cbc(key, ZERO_IV, ti + rotl(rnd_a) + CAPS + CAPS, decrypt=False)
    enc_key, mac_key = session_keys(key, rnd_a, rnd_b)
    return answer, Ev2Session(enc_key, mac_key, ti=ti, key_no=key_no)


def change_key_data(
    key_no: int, auth_key_no: int, new: bytes, version: int, old: bytes | None = None
) -> bytes:
    """ChangeKey's plain data (before padding and encryption)."""
    if len(new) != BLOCK:
        raise ValueError("keys are 16 bytes")
    if key_no == auth_key_no:
        return new + bytes([version])
    if old is None or len(old) != BLOCK:
        raise ValueError("changing another key than the authenticated one needs the old key")
    return bytes(a ^ b for a, b in zip(new, old, strict=True)) + bytes([version]) + crc32nk(new)
