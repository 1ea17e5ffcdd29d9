"""The site secret: one file per site, from which the card-reference key and the NTAG 424 SUN
master key are derived (HKDF), so the two can never be the same key by mistake."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge.ledger.errors import KeyFileError
from edge.ledger.keys import read_owner_only, write_owner_only

SITE_SECRET_BYTES = 32


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
    """Write a new random site secret, mode 0600 (refuses to overwrite: FileExistsError)."""
    write_owner_only(path, os.urandom(SITE_SECRET_BYTES), replace=False)


def load_site_secrets(path: Path) -> SiteSecrets:
    raw = read_owner_only(path, "site key")
    if len(raw) != SITE_SECRET_BYTES:
        raise KeyFileError(f"{path}: site key must be {SITE_SECRET_BYTES} bytes, not {len(raw)}")
    return derive(raw)
