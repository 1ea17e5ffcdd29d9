"""NTAG 424 DNA crypto: AN10922 key diversification and SUN (PICCData + SDMMAC) per NXP AN12196."""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from edge.drivers.base import DriverError

__all__ = [
    "PICC_DATA_TAG",
    "RejectReason",
    "SiteKeys",
    "SunReading",
    "SunRejected",
    "an10922_diversify",
    "decrypt_file_data",
    "decrypt_picc_data",
    "encrypt_file_data",
    "encrypt_picc_data",
    "sdm_mac",
    "session_enc_key",
    "session_mac_key",
    "verify_sun",
]

BLOCK = 16
# PICCData tag byte: UID mirrored (bit 7), read counter mirrored (bit 6), UID length 7 (bits 3..0).
PICC_DATA_TAG = 0xC7
UID_LEN = 7
# NTAG 424 application key numbers, used as the "AID" part of the AN10922 diversification input.
META_READ_KEY_NO = 0x02
FILE_READ_KEY_NO = 0x03


class RejectReason(enum.StrEnum):
    """Why a presented card was refused."""

    BAD_MAC = "bad_mac"  # SUN message not made by a card holding our keys
    REPLAYED = "replayed"  # read counter not above the last accepted one for this card
    UID_MISMATCH = "uid_mismatch"  # the reader's UID is not the UID inside the SUN message
    MALFORMED = "malformed"  # NDEF/URL is not a SUN message in our layout
    UNREADABLE = "unreadable"  # APDU exchange failed (status word, short answer)


class SunRejected(DriverError):
    """A SUN message failed verification; `reason` says which check."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"card rejected: {reason.value}{': ' + detail if detail else ''}")
        self.reason = reason
        self.detail = detail


def aes_ecb_encrypt(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block, by design
    return enc.update(block) + enc.finalize()


def aes_cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _dbl(block: bytes) -> bytes:
    """Doubling in GF(2^128), as in CMAC subkey generation (RFC 4493)."""
    n = int.from_bytes(block, "big") << 1
    if n >> 128:
        n = (n & ((1 << 128) - 1)) ^ 0x87
    return n.to_bytes(BLOCK, "big")


def an10922_diversify(master: bytes, m: bytes) -> bytes:
    """AES-128 key diversification per NXP AN10922 section 2.2.

    D = 0x01 || M, padded with 80 00.. to 32 bytes when shorter (then the last block is XORed
    with CMAC subkey K2, else K1), and the key is the CBC-MAC of D. Unlike plain CMAC this always
    pads to two blocks, so it differs from CMAC(0x01 || M) when M is 15 bytes or fewer.
    """
    if len(master) != BLOCK:
        raise ValueError("AN10922: master key must be 16 bytes")
    if not 1 <= len(m) <= 31:
        raise ValueError("AN10922: diversification input must be 1..31 bytes")
    k1 = _dbl(aes_ecb_encrypt(master, bytes(BLOCK)))
    d = b"\x01" + m
    if len(d) < 2 * BLOCK:
        d = (d + b"\x80").ljust(2 * BLOCK, b"\x00")
        sub = _dbl(k1)
    else:
        sub = k1
    last = bytes(a ^ b for a, b in zip(d[BLOCK:], sub, strict=True))
    return aes_cbc(master, bytes(BLOCK), d[:BLOCK] + last, decrypt=False)[BLOCK:]


@dataclass(frozen=True, slots=True)
class SiteKeys:
    """A site's SUN keys, all derived from one master key (never logged, never in repr).

    The SDM meta read key cannot depend on the UID (the UID is inside the PICCData it decrypts),
    so it is diversified with the system identifier only; the SDM file read key (the MAC key) is
    diversified per card: M = key number || UID || system identifier. `version` is the card
    master key's version in its scope (docs/security.md, "Cards": rotation).
    """

    master: bytes
    system_id: bytes = b"kiosk"
    version: int = 1

    def __post_init__(self) -> None:
        if len(self.master) != BLOCK:
            raise ValueError("site master key must be 16 bytes")
        if not 1 <= len(self.system_id) <= 31 - 1 - UID_LEN:
            raise ValueError("system_id must be 1..23 bytes")

    def __repr__(self) -> str:
        return f"SiteKeys(version={self.version}, <hidden>)"

    @property
    def meta_read_key(self) -> bytes:
        return an10922_diversify(self.master, bytes([META_READ_KEY_NO]) + self.system_id)

    def file_read_key(self, uid: bytes) -> bytes:
        return an10922_diversify(self.master, bytes([FILE_READ_KEY_NO]) + uid + self.system_id)

    @property
    def counter_store_key(self) -> bytes:
        """Key for the HMAC that names a card in the counter store (UIDs are not stored)."""
        return hmac.new(self.master, b"kiosk-edge sun counter store v1", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class SunReading:
    """A verified SUN message: who (UID) and which read (counter)."""

    uid: bytes
    read_ctr: int
    file_data: bytes | None = None

    def __repr__(self) -> str:
        return f"SunReading(uid=<hidden>, read_ctr={self.read_ctr})"


def decrypt_picc_data(meta_key: bytes, picc_enc: bytes) -> tuple[bytes, int]:
    """AN12196 step 1: UID and SDMReadCtr from the encrypted PICCData (`e` parameter)."""
    if len(picc_enc) != BLOCK:
        raise SunRejected(RejectReason.MALFORMED, "PICCData must be 16 bytes")
    plain = aes_cbc(meta_key, bytes(BLOCK), picc_enc, decrypt=True)
    if plain[0] != PICC_DATA_TAG:
        # Wrong meta key or forged data: the tag byte is the only plaintext check available.
        raise SunRejected(RejectReason.BAD_MAC, "PICCData tag mismatch")
    uid = plain[1 : 1 + UID_LEN]
    ctr = int.from_bytes(plain[1 + UID_LEN : 4 + UID_LEN], "little")
    return uid, ctr


def encrypt_picc_data(meta_key: bytes, uid: bytes, read_ctr: int, pad: bytes) -> bytes:
    """What a card mirrors as `e` (used by the simulated card and the emulator); pad: 5 bytes."""
    if len(uid) != UID_LEN or len(pad) != BLOCK - 1 - UID_LEN - 3:
        raise ValueError("uid must be 7 bytes and pad 5 bytes")
    plain = bytes([PICC_DATA_TAG]) + uid + read_ctr.to_bytes(3, "little") + pad
    return aes_cbc(meta_key, bytes(BLOCK), plain, decrypt=False)


def _sv(prefix: bytes, uid: bytes, read_ctr: int) -> bytes:
    return (prefix + b"\x00\x01\x00\x80" + uid + read_ctr.to_bytes(3, "little")).ljust(BLOCK, b"\0")


def session_mac_key(file_key: bytes, uid: bytes, read_ctr: int) -> bytes:
    """AN12196 step 2: KSesSDMFileReadMAC = CMAC(file read key, SV2)."""
    return aes_cmac(file_key, _sv(b"\x3c\xc3", uid, read_ctr))


def session_enc_key(file_key: bytes, uid: bytes, read_ctr: int) -> bytes:
    """AN12196 step 4: KSesSDMFileReadENC = CMAC(file read key, SV1)."""
    return aes_cmac(file_key, _sv(b"\xc3\x3c", uid, read_ctr))


def sdm_mac(ses_mac_key: bytes, mac_input: bytes) -> bytes:
    """AN12196 step 3: CMAC over the MAC input, truncated to the odd-indexed bytes (8 bytes)."""
    return aes_cmac(ses_mac_key, mac_input)[1::2]


def decrypt_file_data(file_key: bytes, uid: bytes, read_ctr: int, enc: bytes) -> bytes:
    """AN12196 step 4: decrypt the SDM encrypted file data."""
    if not enc or len(enc) % BLOCK:
        raise SunRejected(RejectReason.MALFORMED, "encrypted file data must be whole blocks")
    key = session_enc_key(file_key, uid, read_ctr)
    iv = aes_ecb_encrypt(key, read_ctr.to_bytes(3, "little") + bytes(13))
    return aes_cbc(key, iv, enc, decrypt=True)


def encrypt_file_data(file_key: bytes, uid: bytes, read_ctr: int, plain: bytes) -> bytes:
    """What a card mirrors as SDM encrypted file data (the inverse of decrypt_file_data)."""
    if not plain or len(plain) % BLOCK:
        raise ValueError("file data must be whole 16-byte blocks")
    key = session_enc_key(file_key, uid, read_ctr)
    iv = aes_ecb_encrypt(key, read_ctr.to_bytes(3, "little") + bytes(13))
    return aes_cbc(key, iv, plain, decrypt=False)


def verify_sun(
    keys: SiteKeys,
    picc_enc: bytes,
    mac: bytes,
    mac_input: bytes = b"",
    enc_file_data: bytes | None = None,
) -> SunReading:
    """AN12196 steps 1-5 except the counter check (that needs the store): raise SunRejected."""
    uid, ctr = decrypt_picc_data(keys.meta_read_key, picc_enc)
    file_key = keys.file_read_key(uid)
    expected = sdm_mac(session_mac_key(file_key, uid, ctr), mac_input)
    if not hmac.compare_digest(expected, mac):
        raise SunRejected(RejectReason.BAD_MAC, "SDMMAC mismatch")
    data = None if enc_file_data is None else decrypt_file_data(file_key, uid, ctr, enc_file_data)
    return SunReading(uid=uid, read_ctr=ctr, file_data=data)
