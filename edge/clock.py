"""Whether the kiosk's wall clock can be trusted: NTP synchronized (systemd-timesyncd or
chrony), a battery-backed RTC holding a plausible time, or a recent cloud-signed time beacon.

A Pi has no RTC battery by default: after a power cut without network it boots with the time
`fake-hwclock` saved at shutdown, hours or weeks behind. Time passes and opening hours must not
be judged by such a clock; `[clock] untrusted_policy` says what the kiosk does then.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from msgspec import Meta

from edge.validation import Settings

__all__ = [
    "BEACON_FORMAT",
    "ClockConfig",
    "ClockTrust",
    "TimeBeacon",
    "UntrustedPolicy",
    "assess_clock",
    "chrony_synchronized",
    "make_beacon",
    "ntp_synchronized",
    "rtc_plausible",
    "verify_beacon",
]

log = logging.getLogger(__name__)

BEACON_FORMAT = "kiosk-edge-time/1"
# No clock reading before this is real: the firmware did not exist yet.
EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)

Run = Callable[[Sequence[str]], str]


class UntrustedPolicy(enum.StrEnum):
    """What taps do while the clock is not trusted."""

    TIME_PASSES_FAIL_CLOSED = "time_passes_fail_closed"  # passes refused; paid entry allowed
    DENY_ALL = "deny_all"  # every tap refused
    IGNORE = "ignore"  # trust the clock anyway (a kiosk with no time rules)


class ClockConfig(Settings, frozen=True, kw_only=True):
    """`[clock]`: how the kiosk decides that its clock is right, and what it does when not."""

    untrusted_policy: UntrustedPolicy = UntrustedPolicy.TIME_PASSES_FAIL_CLOSED
    trust_rtc: bool = True  # a battery-backed RTC counts as trusted
    beacon_max_age_s: Annotated[int, Meta(gt=0)] = 24 * 3600
    max_skew_s: Annotated[int, Meta(gt=0)] = 120  # beacon vs clock difference allowed


# systemd's own tools report to $NOTIFY_SOCKET when they see it (timedatectl sent ERRNO=112 to
# ours): a child must never speak for the daemon.
_DAEMON_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def run_command(cmd: Sequence[str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY_ENV}
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=3, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s: %s", cmd[0], exc)
        return ""
    return done.stdout if done.returncode == 0 else ""


def ntp_synchronized(run: Run = run_command) -> bool:
    """systemd-timesyncd (or any NTP client systemd knows of) says the clock is synchronized."""
    return run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"]).strip() == "yes"


def chrony_synchronized(run: Run = run_command) -> bool:
    """chronyd is locked to a source (Leap status Normal, not "Not synchronised")."""
    for line in run(["chronyc", "-n", "tracking"]).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Leap status":
            return value.strip() in ("Normal", "Insert second", "Delete second")
    return False


def rtc_plausible(sys_class_rtc: Path = Path("/sys/class/rtc")) -> bool:
    """An RTC that set the system clock at boot and holds a time after the firmware existed
    (an RTC without a battery comes up in 1970 or 2000)."""
    for rtc in sorted(sys_class_rtc.glob("rtc*")):
        try:
            hctosys = (rtc / "hctosys").read_text().strip() == "1"
            since = int((rtc / "since_epoch").read_text().strip())
        except (OSError, ValueError):
            continue
        if hctosys and since >= EARLIEST_PLAUSIBLE.timestamp():
            return True
    return False


@dataclass(frozen=True, slots=True)
class TimeBeacon:
    """A cloud-signed wall time, and the monotonic time at which this kiosk received it."""

    wall_ms: int
    received_mono_ms: int
    device: str

    def now_ms(self, mono_ms: int) -> int:
        """The wall time now, by the beacon and the monotonic clock since."""
        return self.wall_ms + (mono_ms - self.received_mono_ms)


def make_beacon(cloud_key: Ed25519PrivateKey, device: str, wall_ms: int) -> bytes:
    """Cloud side (and tests): a signed time beacon for one device."""
    payload = json.dumps(
        {"format": BEACON_FORMAT, "device": device, "t": wall_ms}, separators=(",", ":")
    ).encode()
    return payload.hex().encode() + b"." + cloud_key.sign(payload).hex().encode()


def verify_beacon(
    blob: bytes, cloud_key: Ed25519PublicKey, device: str, received_mono_ms: int
) -> TimeBeacon | None:
    """A beacon signed by the cloud for this device, or None (logged) if it is not one.

    The sync agent calls this with what it receives and the monotonic time of receipt; a beacon
    for another device is refused so that one kiosk's beacon cannot be replayed to another."""
    try:
        payload_hex, _, sig_hex = blob.partition(b".")
        payload, sig = bytes.fromhex(payload_hex.decode()), bytes.fromhex(sig_hex.decode())
        cloud_key.verify(sig, payload)
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, InvalidSignature):
        log.warning("time beacon refused: not signed by the cloud key")
        return None
    if doc.get("format") != BEACON_FORMAT or doc.get("device") != device:
        log.warning("time beacon refused: wrong format or device")
        return None
    return TimeBeacon(int(doc["t"]), received_mono_ms, device)


@dataclass(frozen=True, slots=True)
class ClockTrust:
    """The verdict: trusted or not, by which source, and a line a field tech can read."""

    trusted: bool
    source: str  # "ntp", "chrony", "rtc", "beacon" or "none"
    detail: str


def assess_clock(
    cfg: ClockConfig,
    *,
    now: datetime | None = None,
    mono_ms: int | None = None,
    beacon: TimeBeacon | None = None,
    run: Run = run_command,
    sys_class_rtc: Path = Path("/sys/class/rtc"),
) -> ClockTrust:
    """Is the wall clock trustworthy now? NTP first, then a fresh beacon, then the RTC."""
    now = now or datetime.now(UTC)
    mono_ms = int(time.monotonic() * 1000) if mono_ms is None else mono_ms
    if now < EARLIEST_PLAUSIBLE:
        return ClockTrust(False, "none", f"clock reads {now:%Y-%m-%d}, before this firmware")
    if ntp_synchronized(run):
        return ClockTrust(True, "ntp", "NTP synchronized (timedatectl)")
    if chrony_synchronized(run):
        return ClockTrust(True, "chrony", "NTP synchronized (chrony)")
    if beacon is not None:
        age_s = (mono_ms - beacon.received_mono_ms) / 1000
        skew_s = abs(now.timestamp() * 1000 - beacon.now_ms(mono_ms)) / 1000
        if 0 <= age_s <= cfg.beacon_max_age_s and skew_s <= cfg.max_skew_s:
            return ClockTrust(
                True, "beacon", f"cloud time beacon {age_s:.0f} s old, skew {skew_s:.1f} s"
            )
        if skew_s > cfg.max_skew_s:
            return ClockTrust(False, "none", f"clock is {skew_s:.0f} s off the cloud time beacon")
    if cfg.trust_rtc and rtc_plausible(sys_class_rtc):
        return ClockTrust(True, "rtc", "battery-backed RTC set the clock at boot")
    return ClockTrust(False, "none", "not NTP synchronized, no RTC, no recent cloud time beacon")
