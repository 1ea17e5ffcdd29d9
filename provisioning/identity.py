"""The device's secrets on disk: its Ed25519 ledger key and the site secret, both 0600 and owned
by the kiosk user; never overwritten unless asked to."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from edge.ledger import generate_key, load_private_key, public_bytes
from edge.ledger.sitekey import SITE_SECRET_BYTES
from provisioning.errors import ProvisionError
from provisioning.files import Owner, write_atomic

__all__ = ["KIOSK_USER", "KeyResult", "ensure_device_key", "ensure_site_secret", "kiosk_owner"]

KIOSK_USER = "kiosk"


def kiosk_owner(passwd: Path | None = None) -> Owner | None:
    """uid/gid of the kiosk user (from `passwd`, e.g. a scratch root's, else the system's);
    None when there is no such user."""
    if passwd is None:
        try:
            pw = pwd.getpwnam(KIOSK_USER)
        except KeyError:
            return None
        return Owner(pw.pw_uid, pw.pw_gid)
    try:
        lines = passwd.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == KIOSK_USER:
            return Owner(int(fields[2]), int(fields[3]))
    return None


@dataclass(frozen=True, slots=True)
class KeyResult:
    path: Path
    created: bool
    public_hex: str = ""  # device key only


def ensure_device_key(path: Path, owner: Owner | None, *, force: bool = False) -> KeyResult:
    """The device's Ed25519 key: generated if missing (or with force), else loaded and checked."""
    if path.exists() and not force:
        key = load_private_key(path)  # refuses a key others can read
        if owner is not None and os.geteuid() == 0:
            os.chown(path, owner.uid, owner.gid)
        return KeyResult(path, False, public_bytes(key).hex())
    key = generate_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(path, pem, 0o600, owner)
    return KeyResult(path, True, public_bytes(key).hex())


def ensure_site_secret(
    path: Path, owner: Owner | None, *, force: bool = False, secret: bytes | None = None
) -> KeyResult:
    """The site secret: written from `secret` (an enrollment bundle) or random, if missing."""
    if secret is not None and len(secret) != SITE_SECRET_BYTES:
        raise ProvisionError(f"site secret must be {SITE_SECRET_BYTES} bytes, not {len(secret)}")
    if path.exists() and not force:
        if owner is not None and os.geteuid() == 0:
            os.chown(path, owner.uid, owner.gid)
        return KeyResult(path, False)
    write_atomic(path, secret or os.urandom(SITE_SECRET_BYTES), 0o600, owner)
    return KeyResult(path, True)
