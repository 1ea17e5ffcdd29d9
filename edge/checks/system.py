"""The self-test rows about the kiosk itself rather than its parts: config, keys and enrollment,
the MQTT certificate's expiry, the broker's reachability, clock trust and free disk space."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.clock import Run, assess_clock, run_command
from edge.config import ConfigError, KioskConfig, load_config
from edge.drivers.base import Check

__all__ = ["BrokerAddress", "has_kiosk_section", "system_checks"]

CERT_WARN_DAYS = 30
MIN_FREE_BYTES = 200 * 1024 * 1024
MIN_FREE_FRACTION = 0.05
BROKER_TIMEOUT_S = 2.0

Connect = Callable[[str, int, float], None]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the kiosk's cloud link goes, as the `kiosk` command read it from `[agent.broker]`."""

    host: str
    port: int
    cert: Path | None  # the device certificate for mutual TLS, if configured


def no_broker(cfg: KioskConfig) -> BrokerAddress | None:
    return None


def has_kiosk_section(path: Path) -> bool:
    """A whole kiosk config (not a hardware-only file like examples/kiosk-sim.toml)."""
    try:
        return "kiosk" in tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def tcp_connect(host: str, port: int, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _secret_file(name: str, path: Path, fix_missing: str) -> Check:
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check(name, False, f"{path} missing", fix_missing)
    except PermissionError:
        return Check(name, False, f"{path}: no permission", "run the self-test as user kiosk")
    if stat.S_IMODE(st.st_mode) & 0o077:
        return Check(
            name,
            False,
            f"{path} mode {stat.S_IMODE(st.st_mode):04o}, readable by others",
            f"chmod 600 {path}",
        )
    if not os.access(path, os.R_OK):
        return Check(name, False, f"{path} not readable by this user", f"chown kiosk: {path}")
    return Check(name, True, f"{path} (0600)")


def _cert_check(cert_path: Path, now: datetime) -> Check:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        return Check("certificate", False, f"{cert_path}: {exc}", "re-enroll to get a certificate")
    left = cert.not_valid_after_utc - now
    when = f"{cert.not_valid_after_utc:%Y-%m-%d}"
    if left <= timedelta(0):
        return Check(
            "certificate",
            False,
            f"expired on {when}",
            "renew the device certificate (re-enroll)",
        )
    if left < timedelta(days=CERT_WARN_DAYS):
        return Check(
            "certificate",
            False,
            f"expires on {when}, in {left.days} days",
            "renew the device certificate before it expires",
        )
    return Check("certificate", True, f"valid until {when}")


def system_checks(
    config_path: Path,
    *,
    run: Run = run_command,
    connect: Connect = tcp_connect,
    now: datetime | None = None,
    sys_class_rtc: Path = Path("/sys/class/rtc"),
    load: Callable[[Path], KioskConfig] = load_config,
    broker_of: Callable[[KioskConfig], BrokerAddress | None] = no_broker,
) -> list[Check]:
    """Config, keys, enrollment, certificate, broker, clock and disk rows, each with its fix."""
    now = now or datetime.now(UTC)
    try:
        cfg: KioskConfig = load(config_path)
    except ConfigError as exc:
        return [Check("config", False, str(exc), f"fix {config_path}, or re-apply the bundle")]
    k = cfg.kiosk
    checks = [Check("config", True, f"{config_path}: {k.id} at {k.site} ({k.role.value})")]
    keys_fix = f"kiosk provision keys --config {config_path} (or apply the enrollment bundle)"
    checks.append(_secret_file("device key", k.key_file, keys_fix))
    checks.append(_secret_file("site key", k.site_key_file, keys_fix))
    if k.cloud_public_key:
        checks.append(Check("enrollment", True, "cloud public key pinned"))
    else:
        checks.append(
            Check(
                "enrollment",
                False,
                "no cloud public key in [kiosk]: not enrolled",
                "kiosk provision bundle apply BUNDLE --cloud-public-key HEX",
            )
        )
    broker = broker_of(cfg)
    if broker is not None and broker.cert is not None:
        checks.append(_cert_check(broker.cert, now))
    if broker is not None:
        try:
            connect(broker.host, broker.port, BROKER_TIMEOUT_S)
            checks.append(Check("broker", True, f"{broker.host}:{broker.port} reachable"))
        except OSError as exc:
            checks.append(
                Check(
                    "broker",
                    False,
                    f"{broker.host}:{broker.port}: {exc.strerror or exc}",
                    "check the network cable/Wi-Fi, the broker address in [agent.broker] and "
                    "the firewall (the kiosk keeps working offline meanwhile)",
                )
            )
    trust = assess_clock(cfg.clock, now=now, run=run, sys_class_rtc=sys_class_rtc)
    checks.append(
        Check(
            "clock",
            trust.trusted,
            f"{trust.source}: {trust.detail}" if trust.trusted else trust.detail,
            "enable NTP (timedatectl set-ntp true) and check the network, or fit an RTC "
            f"battery; meanwhile taps follow [clock] untrusted_policy = "
            f"{cfg.clock.untrusted_policy.value}",
        )
    )
    checks.append(_disk_check(k.state_dir))
    return checks


def _disk_check(state_dir: Path) -> Check:
    where = state_dir if state_dir.exists() else state_dir.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return Check("disk", False, f"{state_dir}: {exc.strerror}", "create the state dir")
    free_mb = usage.free // (1024 * 1024)
    detail = f"{free_mb} MB free of {usage.total // (1024 * 1024)} MB at {where}"
    ok = usage.free >= MIN_FREE_BYTES and usage.free >= MIN_FREE_FRACTION * usage.total
    fix = "free space on the SD card (journalctl --vacuum-size=50M, apt-get clean)"
    return Check("disk", ok, detail, "" if ok else fix)
