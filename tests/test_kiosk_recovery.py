"""Issue 12 item 8 on a real daemon (simulated drivers, mock pins, dummy panel): a ledger restored
from an older copy is seen offline and spends nothing; an entry paid for but never opened (a
stop between commit and gate pulse) is given on the re-tap without a second debit; a full disk
shows "out of service" with its reason and writes nothing."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
from pathlib import Path

from edge.ledger import Ledger, chain
from edge.ledger.head_record import read_head_record
from edge.taps.reasons import DenyReason
from tests.daemon_helpers import Site, kiosk_config, next_outcome, running

UID = "04A1B2C3D4E5F6"


def relay_pulses(daemon) -> int:
    states = [s.state for s in daemon.gpio.pin_of("relay").states]
    return sum(1 for a, b in itertools.pairwise(states) if b and not a)


def cash(cfg) -> int:
    with Ledger(cfg.kiosk.state_dir / "ledger.db") as led:
        return led.purse("m1", "cash").value


def ledger_files(cfg) -> list[Path]:
    db = cfg.kiosk.state_dir / "ledger.db"
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm")]


def enrolled(tmp_path: Path, **rules):
    cfg = kiosk_config(tmp_path, **rules)
    site = Site(tmp_path, cfg)
    site.enroll("m1", "Alice", UID, cash=5000)
    site.push()
    return cfg, site


async def test_a_ledger_restored_from_an_older_copy_spends_nothing_offline(tmp_path):
    cfg, _ = enrolled(tmp_path, debounce_seconds=0)
    async with running(cfg) as (daemon, outcomes):
        pass  # first start: the head record is written
    copy = tmp_path / "old-ledger.db"
    shutil.copy(cfg.kiosk.state_dir / "ledger.db", copy)  # the owner's "backup"
    async with running(cfg) as (daemon, outcomes):
        for _ in range(2):
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.approved
    assert cash(cfg) == 1000
    record = read_head_record(cfg.kiosk.state_dir / "head.json")
    assert record is not None
    with Ledger(copy) as old:
        restored_seq = old.head("gate-1")[0]
    assert record.seq > restored_seq
    for f in ledger_files(cfg):
        f.unlink(missing_ok=True)
    shutil.copy(copy, cfg.kiosk.state_dir / "ledger.db")  # restored: 5000 again on file
    async with running(cfg) as (daemon, outcomes):
        assert daemon.ledger.restored_behind == (record.seq, restored_seq)
        daemon.nfc.present_uid(UID)
        out = await next_outcome(outcomes)
        assert not out.decision.approved
        assert out.decision.reason is DenyReason.LEDGER_RECOVERING
        assert relay_pulses(daemon) == 0
        assert daemon.feedback.shown[-1] == "DeniedScreen"
    assert cash(cfg) == 5000  # the restored file spent nothing
    # Still held at the next start: the hold is in the ledger, not in memory.
    async with running(cfg) as (daemon, outcomes):
        assert daemon.ledger.recovering == record.seq


async def test_a_member_whose_gate_never_opened_enters_on_the_retap_without_a_second_debit(
    tmp_path,
):
    cfg, _ = enrolled(tmp_path, debounce_seconds=0)
    async with running(cfg) as (daemon, outcomes):
        crashed = asyncio.Event()

        async def stop_before_the_pulse() -> None:  # the power goes between commit and pulse
            crashed.set()
            await asyncio.Event().wait()

        daemon.feedback.open_gate = stop_before_the_pulse
        daemon.nfc.present_uid(UID)
        async with asyncio.timeout(5):
            await crashed.wait()
        assert relay_pulses(daemon) == 0
    assert cash(cfg) == 3000  # the entry was paid
    async with running(cfg) as (daemon, outcomes):
        daemon.nfc.present_uid(UID)
        out = await next_outcome(outcomes)
        assert out.decision.approved
        assert out.gate_ns > 0
        assert relay_pulses(daemon) == 1
        assert cash(cfg) == 3000  # no second debit
        daemon.nfc.present_uid(UID)  # the next entry is paid again
        assert (await next_outcome(outcomes)).decision.approved
    assert cash(cfg) == 1000
    # The owed entry was given once: after a restart nothing more is owed.
    async with running(cfg) as (daemon, outcomes):
        assert daemon.kiosk._owed == {}


async def test_an_entry_already_given_is_not_owed_after_a_restart(tmp_path):
    cfg, _ = enrolled(tmp_path, debounce_seconds=0)
    async with running(cfg) as (daemon, outcomes):
        daemon.nfc.present_uid(UID)
        assert (await next_outcome(outcomes)).decision.approved
    async with running(cfg) as (daemon, outcomes):
        daemon.nfc.present_uid(UID)
        assert (await next_outcome(outcomes)).decision.approved
    assert cash(cfg) == 1000  # two entries, two debits


async def test_a_full_disk_shows_out_of_service_with_the_reason_and_writes_nothing(
    tmp_path, monkeypatch
):
    cfg, _ = enrolled(tmp_path, debounce_seconds=0)

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    async with running(cfg) as (daemon, outcomes):
        monkeypatch.setattr(chain, "write", disk_full)  # the ledger's write, under its lock
        daemon.nfc.present_uid(UID)
        out = await next_outcome(outcomes)
        assert out.decision.reason is DenyReason.DISK_FULL
        assert relay_pulses(daemon) == 0
        await asyncio.sleep(0.05)
        assert daemon.feedback.shown[-1] == "OutOfServiceScreen"
        assert daemon.disk_full
        assert daemon.health()["refusals"] == {"DISK_FULL": 1}
        monkeypatch.undo()
    assert cash(cfg) == 5000
    with Ledger(cfg.kiosk.state_dir / "ledger.db") as led:
        assert not led.denials() or all(d["reason"] != "DISK_FULL" for d in led.denials())


def test_the_disk_full_reason_reads_in_both_languages():
    from edge.feedback.catalog import tr_reason

    assert "full" in tr_reason(DenyReason.DISK_FULL, "en")
    assert "已满" in tr_reason(DenyReason.DISK_FULL, "zh")
    assert "恢复" in tr_reason(DenyReason.LEDGER_RECOVERING, "zh")


def test_disk_full_refusals_raise_the_fleet_disk_alert():
    from cloud_sync.alerts import KioskView, kiosk_alerts
    from cloud_sync.protocol import Health
    from cloud_sync.settings import AlertSettings
    from cloud_sync.store import Device

    device = Device("gate-1", "pool", True, 1, 1, 0, 0, 0, 0)
    healthy = kiosk_alerts(KioskView(device, Health(disk_free_bytes=10**12)), 0, AlertSettings())
    assert healthy["disk_low"] is None
    full = Health(refusals={"DISK_FULL": 2}, disk_free_bytes=10**12)
    alerts = kiosk_alerts(KioskView(device, full), 0, AlertSettings())
    assert alerts["disk_low"] == "disk full: 2 taps refused"
