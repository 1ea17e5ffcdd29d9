"""The site secret: one file per site, from which the card-reference key and the NTAG 424 SUN
master key are derived (HKDF), so the two can never be the same key by mistake."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge.errors import KioskError

SITE_SECRET_BYTES = 32


class SiteKeyError(KioskError):
    """The site key file is missing, the wrong size, or readable by others."""


@dataclass(frozen=True, slots=True)
class SiteSecrets:
    card_ref_key: bytes
    sun_master: bytes

    def __repr__(self) -> str:
        return "SiteSecrets(<hidden>)"


def derive(secret: bytes) -> SiteSecrets:
    def hkdf(info: bytes, n: int) -> bytes:
        return HKDF(hashes.SHA256(), n, salt=None, info=info).derive(secret)

    return SiteSecrets(hkdf(b"kiosk-edge card-ref v1", 32), hkdf(b"kiosk-edge ntag424-sun v1", 16))


def create_site_key(path: Path) -> None:
    """Write a new random site secret, mode 0600 (refuses to overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(SITE_SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_site_secrets(path: Path) -> SiteSecrets:
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise SiteKeyError(f"{path}: cannot read the site key: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SiteKeyError(f"{path}: site key is readable by others; run: chmod 600 {path}")
    if len(raw) != SITE_SECRET_BYTES:
        raise SiteKeyError(f"{path}: site key must be {SITE_SECRET_BYTES} bytes, not {len(raw)}")
    return derive(raw)
