"""Clock trust from injected command outputs, sysfs and signed beacons; the untrusted-clock
policy in the rules (time passes fail closed, paid entry still allowed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.clock import (
    ClockConfig,
    UntrustedPolicy,
    assess_clock,
    chrony_synchronized,
    make_beacon,
    ntp_synchronized,
    verify_beacon,
)
from edge.ledger import generate_key
from edge.taps.reasons import DenyReason
from edge.taps.rules import Balance, Member, Pass, decide
from tests.rules_helpers import NOW, config, state, tap

NOW_DT = datetime.fromtimestamp(NOW / 1000, UTC)
CHRONY_SYNCED = """Reference ID    : C0A80101 (192.168.1.1)
Stratum         : 3
System time     : 0.000012 seconds fast of NTP time
Leap status     : Normal
"""
CHRONY_UNSYNCED = """Reference ID    : 00000000 ()
Stratum         : 0
Leap status     : Not synchronised
"""


def outputs(**by_cmd: str):  # type: ignore[no-untyped-def]
    """A fake command runner: the output for each command name, "" (failed) otherwise."""

    def run(cmd: Sequence[str]) -> str:
        return by_cmd.get(cmd[0], "")

    return run


def no_rtc(tmp_path: Path) -> Path:
    return tmp_path / "no-rtc"


def test_timedatectl_yes_is_trusted(tmp_path: Path) -> None:
    run = outputs(timedatectl="yes\n")
    assert ntp_synchronized(run)
    trust = assess_clock(ClockConfig(), now=NOW_DT, run=run, sys_class_rtc=no_rtc(tmp_path))
    assert (trust.trusted, trust.source) == (True, "ntp")


def test_chrony_normal_leap_status_is_trusted(tmp_path: Path) -> None:
    run = outputs(timedatectl="no\n", chronyc=CHRONY_SYNCED)
    assert chrony_synchronized(run)
    assert not chrony_synchronized(outputs(chronyc=CHRONY_UNSYNCED))
    trust = assess_clock(ClockConfig(), now=NOW_DT, run=run, sys_class_rtc=no_rtc(tmp_path))
    assert trust.source == "chrony"


def test_nothing_synchronized_is_untrusted_with_a_reason(tmp_path: Path) -> None:
    run = outputs(timedatectl="no\n", chronyc=CHRONY_UNSYNCED)
    trust = assess_clock(ClockConfig(), now=NOW_DT, run=run, sys_class_rtc=no_rtc(tmp_path))
    assert not trust.trusted
    assert "not NTP synchronized" in trust.detail


def rtc(tmp_path: Path, since_epoch: int, hctosys: str = "1") -> Path:
    d = tmp_path / "rtc" / "rtc0"
    d.mkdir(parents=True)
    (d / "hctosys").write_text(hctosys + "\n")
    (d / "since_epoch").write_text(f"{since_epoch}\n")
    return tmp_path / "rtc"


def test_a_set_rtc_is_trusted_and_a_flat_one_is_not(tmp_path: Path) -> None:
    run = outputs()
    good = rtc(tmp_path / "a", NOW // 1000)
    assert assess_clock(ClockConfig(), now=NOW_DT, run=run, sys_class_rtc=good).source == "rtc"
    flat = rtc(tmp_path / "b", 946_684_800)  # 2000-01-01: no battery
    assert not assess_clock(ClockConfig(), now=NOW_DT, run=run, sys_class_rtc=flat).trusted
    no_trust = ClockConfig(trust_rtc=False)
    assert not assess_clock(no_trust, now=NOW_DT, run=run, sys_class_rtc=good).trusted


def test_a_clock_before_the_firmware_existed_is_never_trusted(tmp_path: Path) -> None:
    run = outputs(timedatectl="yes\n")
    old = datetime(2024, 6, 1, tzinfo=UTC)
    assert not assess_clock(ClockConfig(), now=old, run=run, sys_class_rtc=no_rtc(tmp_path)).trusted


def test_a_signed_beacon_makes_the_clock_trusted_while_fresh_and_close(tmp_path: Path) -> None:
    key = generate_key()
    beacon = verify_beacon(make_beacon(key, "gate-1", NOW), key.public_key(), "gate-1", 5_000)
    assert beacon is not None
    cfg = ClockConfig(beacon_max_age_s=3600, max_skew_s=60)
    common = {"run": outputs(), "sys_class_rtc": no_rtc(tmp_path), "beacon": beacon}
    # 10 minutes later by the monotonic clock, and the wall clock agrees.
    later = datetime.fromtimestamp((NOW + 600_000) / 1000, UTC)
    trust = assess_clock(cfg, now=later, mono_ms=605_000, **common)  # type: ignore[arg-type]
    assert (trust.trusted, trust.source) == (True, "beacon")
    # The wall clock jumped back a day (fake-hwclock after a power cut): not trusted.
    wrong = datetime.fromtimestamp((NOW - 86_400_000) / 1000, UTC)
    trust = assess_clock(cfg, now=wrong, mono_ms=605_000, **common)  # type: ignore[arg-type]
    assert not trust.trusted
    assert "off the cloud time beacon" in trust.detail
    # Too old a beacon does not count.
    stale = datetime.fromtimestamp((NOW + 7_200_000) / 1000, UTC)
    assert not assess_clock(cfg, now=stale, mono_ms=7_205_000, **common).trusted  # type: ignore[arg-type]


def test_forged_or_misdirected_beacons_are_refused() -> None:
    key, rogue = generate_key(), generate_key()
    assert verify_beacon(make_beacon(rogue, "gate-1", NOW), key.public_key(), "gate-1", 0) is None
    assert verify_beacon(make_beacon(key, "gate-2", NOW), key.public_key(), "gate-1", 0) is None
    assert verify_beacon(b"garbage", key.public_key(), "gate-1", 0) is None


PASS_HOLDER = Member(
    id="m1", name="Alice", tier="silver", passes=(Pass("swim", NOW - 1000, NOW + 86_400_000),)
)


def untrusted(s):  # type: ignore[no-untyped-def]
    return dataclasses.replace(s, clock_trusted=False)


def test_untrusted_clock_refuses_time_passes_without_charging_cash() -> None:
    s = untrusted(state(PASS_HOLDER, cash=Balance(10_000, 10_000)))
    d = decide(s, tap(), config())
    assert (d.approved, d.reason, d.debits) == (False, DenyReason.CLOCK_UNTRUSTED, ())
    # The same tap on a trusted clock lets the pass holder in.
    assert decide(dataclasses.replace(s, clock_trusted=True), tap(), config()).approved


def test_untrusted_clock_still_allows_paid_entry_within_rights() -> None:
    d = decide(untrusted(state(cash=Balance(10_000, 10_000))), tap(), config())
    assert d.approved
    assert [m.purse for m in d.debits] == ["cash"]


@pytest.mark.parametrize(
    ("policy", "approved"), [(UntrustedPolicy.DENY_ALL, False), (UntrustedPolicy.IGNORE, True)]
)
def test_the_other_policies(policy: UntrustedPolicy, approved: bool) -> None:
    cfg = config(clock={"untrusted_policy": policy.value})
    d = decide(untrusted(state(PASS_HOLDER, cash=Balance(10_000, 10_000))), tap(), cfg)
    assert d.approved is approved
