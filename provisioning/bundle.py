"""Offline enrollment: a provisioning bundle signed by the cloud's Ed25519 key, carried to the
kiosk on a USB stick, verified and applied there.

A bundle carries the site config (TOML as data), the cloud's public key, the site secret, an
expiry and a one-time nonce. The device refuses a bundle that is not signed by the cloud key it
trusts (given on the command line, or pinned at an earlier enrollment), expired, already used
(used nonces are recorded), or for re-enrollment of an enrolled device without `reenroll`.

Online enrollment (claim codes over MQTT: cloud_sync.enroll, provisioning.enroll) gets the same
signed document from the cloud and passes it, verified, to `apply_enrollment` with the TLS files
(`files`) and what to add to the record (`record_extra`).

The bundle holds the site secret in clear: it is as secret as the site key file itself (0600,
delete it after use).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.config import KioskConfig
from edge.ledger import KeyFileError, public_bytes
from edge.ledger.keys import public_key_from_bytes
from edge.ledger.sitekey import SITE_SECRET_BYTES
from edge.validation import SettingsFault, load
from provisioning.errors import AlreadyEnrolled, BundleRejected, ProvisionError
from provisioning.files import Owner, write_atomic
from provisioning.identity import ensure_device_key, ensure_site_secret, kiosk_owner

__all__ = [
    "FORMAT",
    "EnrollResult",
    "Enrollment",
    "apply_bundle_file",
    "apply_enrollment",
    "apply_signed",
    "config_toml",
    "create_bundle",
    "parse_duration",
    "verify_signed",
]

FORMAT = "kiosk-edge-enroll/1"
ENROLLMENT_FILE = "enrollment.json"
HISTORY_FILE = "enrollment-history.jsonl"
NONCES_FILE = "used-nonces"
CLOUD_KEY_FILE = "cloud.pub"
CONFIG_FILE = "kiosk.toml"
_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `7d`."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) <= 0:
        raise ProvisionError(f"not a duration: {text!r} (use e.g. 30m, 2h, 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What the cloud tells a device when it enrolls it (verified, not yet applied)."""

    site: str
    device: str
    issued_at: datetime
    expires_at: datetime
    nonce: str
    config: dict[str, Any]
    cloud_public_key: bytes
    site_secret: bytes

    def __repr__(self) -> str:
        return f"Enrollment(site={self.site!r}, device={self.device!r}, nonce={self.nonce})"

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "site": self.site,
            "device": self.device,
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "nonce": self.nonce,
            "config": self.config,
            "cloud_public_key": self.cloud_public_key.hex(),
            "site_secret": base64.b64encode(self.site_secret).decode(),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Enrollment:
        try:
            doc = json.loads(raw)
            if doc.get("format") != FORMAT:
                raise BundleRejected("format", f"not a {FORMAT} bundle: {doc.get('format')!r}")
            return cls(
                site=str(doc["site"]),
                device=str(doc["device"]),
                issued_at=datetime.fromisoformat(doc["issued_at"]),
                expires_at=datetime.fromisoformat(doc["expires_at"]),
                nonce=str(doc["nonce"]),
                config=dict(doc["config"]),
                cloud_public_key=bytes.fromhex(doc["cloud_public_key"]),
                site_secret=base64.b64decode(doc["site_secret"], validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise BundleRejected("format", f"bundle content unreadable: {exc}") from exc


def _site_config(template: dict[str, Any], site: str, device: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(json.dumps(template))  # a deep copy, JSON-safe
    kiosk = config.setdefault("kiosk", {})
    kiosk["id"], kiosk["site"] = device, site
    for local in ("key_file", "site_key_file", "cloud_public_key"):
        kiosk.pop(local, None)  # the device decides where its files are
    return config


def config_toml(config: Mapping[str, Any]) -> str:
    """The kiosk config as TOML text, checked to read back as the same data (tomli-w writes it;
    a config that would read back differently is never written)."""
    try:
        text = tomli_w.dumps(config)
    except (TypeError, ValueError) as exc:
        raise ProvisionError(f"the config cannot be written as TOML: {exc}") from exc
    if tomllib.loads(text) != config:
        raise ProvisionError("internal: the config did not survive TOML writing")
    return text


def _validate(config: dict[str, Any], where: str) -> KioskConfig:
    try:
        return load(KioskConfig, config)
    except SettingsFault as exc:
        raise ProvisionError(f"{where}: wrong settings: {exc}") from None


def create_bundle(
    *,
    site: str,
    device: str,
    cloud_key: Ed25519PrivateKey,
    site_secret: bytes,
    config_template: dict[str, Any],
    expires_in: timedelta,
    now: datetime | None = None,
) -> bytes:
    """Operator side: the signed bundle (JSON: the payload bytes in base64 and their signature)."""
    if len(site_secret) != SITE_SECRET_BYTES:
        raise ProvisionError(f"site secret must be {SITE_SECRET_BYTES} bytes")
    now = now or datetime.now(UTC)
    config = _site_config(config_template, site, device)
    _validate(config, "site config")
    enrollment = Enrollment(
        site=site,
        device=device,
        issued_at=now,
        expires_at=now + expires_in,
        nonce=os.urandom(16).hex(),
        config=config,
        cloud_public_key=public_bytes(cloud_key),
        site_secret=site_secret,
    )
    payload = enrollment.to_json()
    signed = {
        "payload": base64.b64encode(payload).decode(),
        "signature": cloud_key.sign(payload).hex(),
    }
    return json.dumps(signed, indent=1).encode() + b"\n"


MAX_BUNDLE = 1 << 20  # bytes of a signed enrollment document (a site config and keys)


def verify_signed(blob: bytes, cloud_key: Ed25519PublicKey) -> Enrollment:
    """The enrollment in a signed document, if `cloud_key` signed it; else BundleRejected."""
    if len(blob) > MAX_BUNDLE:
        raise BundleRejected("format", f"{len(blob)} bytes is more than {MAX_BUNDLE}")
    try:
        outer = json.loads(blob)
        payload = base64.b64decode(outer["payload"], validate=True)
        signature = bytes.fromhex(outer["signature"])
    except (KeyError, TypeError, ValueError, binascii.Error, RecursionError) as exc:
        raise BundleRejected("format", f"not a signed bundle: {exc}") from exc
    try:
        cloud_key.verify(signature, payload)
    except InvalidSignature:
        raise BundleRejected(
            "signature", "not signed by the trusted cloud key (wrong cloud, or altered)"
        ) from None
    enrollment = Enrollment.from_json(payload)
    if enrollment.cloud_public_key != public_bytes(cloud_key):
        raise BundleRejected("signature", "bundle names another cloud key than its signer")
    return enrollment


@dataclass(frozen=True, slots=True)
class EnrollResult:
    site: str
    device: str
    config_file: Path
    device_public_key: str
    reenrolled: bool


def pinned_cloud_key(config_dir: Path) -> bytes | None:
    path = config_dir / CLOUD_KEY_FILE
    if not path.exists():
        return None
    try:
        return bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise ProvisionError(f"{path}: not a hex public key") from exc


def trusted_cloud_key(config_dir: Path, given: bytes | None) -> Ed25519PublicKey:
    """The key a bundle must be signed with: the pinned one, or the one given; both must agree."""
    pinned = pinned_cloud_key(config_dir)
    if pinned is not None and given is not None and pinned != given:
        raise BundleRejected(
            "cloud key",
            f"the given cloud key differs from the one pinned in {config_dir / CLOUD_KEY_FILE}; "
            "remove that file only if the deployment really changed its cloud key",
        )
    raw = given if given is not None else pinned
    if raw is None:
        raise BundleRejected(
            "cloud key", "no cloud key to check against: give --cloud-public-key HEX"
        )
    try:
        return public_key_from_bytes(raw)
    except KeyFileError as exc:
        raise BundleRejected("cloud key", str(exc)) from exc


def _used_nonces(config_dir: Path) -> set[str]:
    path = config_dir / NONCES_FILE
    return set(path.read_text().split()) if path.exists() else set()


def apply_enrollment(
    enrollment: Enrollment,
    config_dir: Path,
    *,
    reenroll: bool = False,
    now: datetime | None = None,
    owner: Owner | None = None,
    files: Mapping[str, tuple[bytes, int]] | None = None,
    record_extra: Mapping[str, Any] | None = None,
) -> EnrollResult:
    """Device side, after verification: check expiry, nonce and enrollment state, then write
    config, site secret, pinned cloud key and device key (and `files`: name in `config_dir` ->
    (content, mode), e.g. the TLS key and certificate of online enrollment). The enrollment
    record is written last: until it is there, the device is not enrolled and the same bundle
    can be applied again."""
    now = now or datetime.now(UTC)
    if now >= enrollment.expires_at:
        raise BundleRejected(
            "expired",
            f"bundle expired at {enrollment.expires_at.isoformat()} (device clock "
            f"{now.isoformat()}); ask for a new one, or fix the clock if it is wrong",
        )
    if enrollment.nonce in _used_nonces(config_dir):
        raise BundleRejected("used", "this bundle was applied before; ask for a new one")
    record_path = config_dir / ENROLLMENT_FILE
    previous: dict[str, Any] | None = None
    if record_path.exists():
        previous = json.loads(record_path.read_text())
        if not reenroll:
            raise AlreadyEnrolled(
                f"device already enrolled as {previous.get('device')!r} at site "
                f"{previous.get('site')!r}; give --reenroll to replace that enrollment"
            )
    config = json.loads(json.dumps(enrollment.config))
    kiosk = config.setdefault("kiosk", {})
    if (kiosk.get("id"), kiosk.get("site")) != (enrollment.device, enrollment.site):
        raise BundleRejected("format", "the config inside names another device or site")
    kiosk["key_file"] = str(config_dir / "device.key")
    kiosk["site_key_file"] = str(config_dir / "site.key")
    kiosk["cloud_public_key"] = enrollment.cloud_public_key.hex()
    _validate(config, "bundle config")
    text = config_toml(config)

    owner = owner if owner is not None else kiosk_owner()
    root_kiosk = Owner(0, owner.gid) if owner else None
    config_dir.mkdir(parents=True, exist_ok=True)
    device = ensure_device_key(config_dir / "device.key", owner)
    ensure_site_secret(config_dir / "site.key", owner, force=True, secret=enrollment.site_secret)
    for name, (data, file_mode) in (files or {}).items():
        write_atomic(config_dir / name, data, file_mode, owner if file_mode == 0o600 else None)
    write_atomic(config_dir / CLOUD_KEY_FILE, enrollment.cloud_public_key.hex().encode() + b"\n")
    write_atomic(config_dir / CONFIG_FILE, text.encode(), 0o640, root_kiosk)
    nonces = sorted(_used_nonces(config_dir) | {enrollment.nonce})
    write_atomic(config_dir / NONCES_FILE, ("\n".join(nonces) + "\n").encode(), 0o640, root_kiosk)
    record = {
        "site": enrollment.site,
        "device": enrollment.device,
        "enrolled_at": now.isoformat(),
        "nonce": enrollment.nonce,
        "bundle_expires_at": enrollment.expires_at.isoformat(),
        "cloud_public_key": enrollment.cloud_public_key.hex(),
        "device_public_key": device.public_hex,
        **(record_extra or {}),
    }
    if previous is not None:
        history = config_dir / HISTORY_FILE
        old = history.read_bytes() if history.exists() else b""
        line = json.dumps({"replaced": previous, "by": record, "reenrolled_at": now.isoformat()})
        write_atomic(history, old + line.encode() + b"\n", 0o640, root_kiosk)
    write_atomic(record_path, json.dumps(record, indent=1).encode() + b"\n", 0o640, root_kiosk)
    return EnrollResult(
        enrollment.site,
        enrollment.device,
        config_dir / CONFIG_FILE,
        device.public_hex,
        previous is not None,
    )


def apply_signed(
    blob: bytes,
    config_dir: Path,
    *,
    cloud_public_key: bytes | None = None,
    reenroll: bool = False,
    now: datetime | None = None,
    owner: Owner | None = None,
) -> EnrollResult:
    """Verify a signed enrollment document (bundle file or online response) and apply it."""
    key = trusted_cloud_key(config_dir, cloud_public_key)
    enrollment = verify_signed(blob, key)
    return apply_enrollment(enrollment, config_dir, reenroll=reenroll, now=now, owner=owner)


def apply_bundle_file(path: Path, config_dir: Path, **kwargs: Any) -> EnrollResult:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read the bundle: {exc.strerror}") from exc
    return apply_signed(blob, config_dir, **kwargs)
