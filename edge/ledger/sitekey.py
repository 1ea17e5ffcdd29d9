"""The site secret and the card master keys of a scope.

The site secret (one file per site) derives, by HKDF, the card-reference key, the key that names
cards in the kiosk's SUN counter store, and version 1 of the NTAG 424 SUN card master key. The
card-reference key never changes (every card account is named by it). The card master key has
versions: `kiosk cloud card-keys rotate` makes a new random one, and a scope's card-keys file
(0600, lines `<version> <32 hex>`) holds the current and, during a rotation, the previous one,
which is what a kiosk accepts (docs/security.md, "Cards").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge.ledger.errors import KeyFileError
from edge.ledger.keys import read_owner_only, write_owner_only

SITE_SECRET_BYTES = 32
CARD_MASTER_BYTES = 16
MAX_CARD_KEY_VERSIONS = 2  # the current one, and the previous one during a rotation
MAX_CARD_KEY_VERSION = 255  # NTAG 424 keeps a one-byte key version beside each key


@dataclass(frozen=True, slots=True)
class SiteSecrets:
    card_ref_key: bytes
    sun_master: bytes  # version 1 of the card master key
    counter_key: bytes  # names cards in the kiosk's SUN counter store (never a UID in clear)

    def __repr__(self) -> str:
        return "SiteSecrets(<hidden>)"


def derive(secret: bytes) -> SiteSecrets:
    def hkdf(info: bytes, n: int) -> bytes:
        return HKDF(hashes.SHA256(), n, salt=None, info=info).derive(secret)

    return SiteSecrets(
        hkdf(b"kiosk-edge card-ref v1", 32),
        hkdf(b"kiosk-edge ntag424-sun v1", CARD_MASTER_BYTES),
        hkdf(b"kiosk-edge sun-counter-store v1", 32),
    )


def create_site_key(path: Path) -> None:
    """Write a new random site secret, mode 0600 (refuses to overwrite: FileExistsError)."""
    write_owner_only(path, os.urandom(SITE_SECRET_BYTES), replace=False)


def load_site_secrets(path: Path) -> SiteSecrets:
    raw = read_owner_only(path, "site key")
    if len(raw) != SITE_SECRET_BYTES:
        raise KeyFileError(f"{path}: site key must be {SITE_SECRET_BYTES} bytes, not {len(raw)}")
    return derive(raw)


CardKeys = dict[int, bytes]  # card master key version -> key


def load_card_keys(path: Path) -> CardKeys:
    """A scope's card-keys file: one or two versions, each `<version> <32 hex digits>`."""
    keys: CardKeys = {}
    try:
        text = read_owner_only(path, "card keys").decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: card keys must be lines '<version> <32 hex>'") from None
    for line in text.splitlines():
        version_s, _, key_hex = line.strip().partition(" ")
        try:
            version, key = int(version_s), bytes.fromhex(key_hex)
        except ValueError:
            raise KeyFileError(f"{path}: card keys must be lines '<version> <32 hex>'") from None
        if not 1 <= version <= MAX_CARD_KEY_VERSION or len(key) != CARD_MASTER_BYTES:
            raise KeyFileError(f"{path}: a card key is version 1..255 and 16 bytes")
        if version in keys:
            raise KeyFileError(f"{path}: card key version {version} given twice")
        keys[version] = key
    if not 1 <= len(keys) <= MAX_CARD_KEY_VERSIONS:
        raise KeyFileError(f"{path}: holds {len(keys)} card key versions; 1 or 2 expected")
    return keys


def save_card_keys(path: Path, keys: CardKeys) -> None:
    if not 1 <= len(keys) <= MAX_CARD_KEY_VERSIONS:
        raise ValueError("a card-keys file holds one or two versions")
    lines = [f"{v} {keys[v].hex()}\n" for v in sorted(keys, reverse=True)]
    write_owner_only(path, "".join(lines).encode("ascii"))


def rotate_card_keys(keys: CardKeys) -> CardKeys:
    """Start a rotation: a new random current version; the current one becomes the previous."""
    current = max(keys)
    if current >= MAX_CARD_KEY_VERSION:
        raise KeyFileError(f"card key version {current} is the last one")
    return {current + 1: os.urandom(CARD_MASTER_BYTES), current: keys[current]}


def finish_rotation(keys: CardKeys) -> CardKeys:
    """End a rotation: only the current version is left (cards of the old one are refused)."""
    current = max(keys)
    return {current: keys[current]}


def card_keys_of(secrets: SiteSecrets, path: Path | None) -> CardKeys:
    """The card master keys a kiosk or the cloud holds for a scope: its card-keys file when one
    is configured (it must then exist), else version 1, derived from the site secret."""
    if path is not None:
        return load_card_keys(path)
    return {1: secrets.sun_master}
