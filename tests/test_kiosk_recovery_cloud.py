"""A kiosk whose ledger file was restored from an older copy, on real parts (daemon, mosquitto
with mutual TLS, the real reconciler): it recovers its chain from the cloud before it spends
again; ops that never reached the cloud are declared lost and the kiosk goes on. A kiosk whose
clock is 30 days behind connects and takes the cloud's signed time as soon as the link is up."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud_sync import admin
from cloud_sync.alerts import FleetWatch, KioskView, kiosk_alerts
from cloud_sync.fleet import FleetRecords
from cloud_sync.settings import AlertSettings
from edge import clock as clock_module
from edge.config import KioskConfig
from edge.daemon import daemon as daemon_module
from edge.ledger import Intent, Kind, Ledger, chain, generate_key, public_bytes, save_private_key
from edge.ledger.head_record import read_head_record
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.reasons import DenyReason
from edge.validation import dump, load
from kiosk.cli import cli
from tests.daemon_helpers import kiosk_config, next_outcome, running
from tests.mqtt_broker import World, eventually, world
from tests.test_fleet_status import cloud_toml

pytestmark = pytest.mark.mqtt

UID = "04A1B2C3D4E5F6"


def linked_kiosk(tmp_path: Path, w: World, cash: int, held: int) -> tuple[KioskConfig, str]:
    """Member m1 with `cash` at the cloud, `held` of it granted to gate-1 ahead of taps."""
    rec = w.cloud()
    del rec
    create_site_key(tmp_path / "site.key")
    secrets = load_site_secrets(tmp_path / "site.key")
    token = admin.card_token(secrets, UID, "uid")
    assert w.store is not None
    admin.register_member(w.store, "m1", "Alice")
    admin.link_card(w.store, "m1", token)
    w.store.append([Intent(Kind.INC, "m1", "cash", cash)], ref="counter-1")
    base = kiosk_config(tmp_path, debounce_seconds=0)
    device_key = generate_key()
    save_private_key(base.kiosk.key_file, device_key)
    w.store.trust("gate-1", public_bytes(device_key), "kiosk")
    w.store.enroll("gate-1", w.site)
    if held:
        w.store.append([Intent(Kind.XFER, "m1", "cash", held, counterpart="gate-1")])
    raw = dump(base)
    raw["kiosk"] |= {"site": w.site, "cloud_public_key": public_bytes(w.keys["cloud"]).hex()}
    raw["agent"] = {
        "broker": dump(w.broker.settings("gate-1")),
        "poll_interval_s": 0.02,
        "backoff_min_s": 0.05,
        "backoff_max_s": 0.5,
        "ack_timeout_s": 1.0,
        "sync_interval_s": 2.0,
    }
    return load(KioskConfig, raw), token


def restore(cfg: KioskConfig, copy: Path) -> None:
    db = cfg.kiosk.state_dir / "ledger.db"
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        f.unlink(missing_ok=True)
    shutil.copy(copy, db)


async def test_a_restored_kiosk_recovers_its_chain_before_it_spends_again(tmp_path):
    async with world(tmp_path, ["gate-1"]) as w:
        cfg, token = linked_kiosk(tmp_path, w, cash=5000, held=0)
        w.start_reconciler()
        async with running(cfg) as (daemon, _):
            await eventually(lambda: daemon.agent.synced, what="kiosk online")
            await eventually(
                lambda: daemon.ledger.register("card:" + token, "member") is not None,
                what="card known at the kiosk",
            )
        copy = tmp_path / "backup.db"
        shutil.copy(cfg.kiosk.state_dir / "ledger.db", copy)
        async with running(cfg) as (daemon, outcomes):
            await eventually(lambda: daemon.agent.synced, what="kiosk online")
            for _ in range(2):
                daemon.nfc.present_uid(UID)
                assert (await next_outcome(outcomes)).decision.approved
            await eventually(
                lambda: w.store.head("gate-1")[0] == daemon.ledger.head()[0],
                what="the debits stored at the cloud",
            )
        assert w.store.purse("m1", "cash").value == 1000
        record = read_head_record(cfg.kiosk.state_dir / "head.json")
        assert record is not None
        restore(cfg, copy)
        async with running(cfg) as (daemon, outcomes):
            assert daemon.ledger.restored_behind is not None
            await eventually(lambda: not daemon.ledger.recovering, what="own chain recovered")
            assert daemon.ledger.head() == (record.seq, record.hash)
            assert daemon.ledger.purse("m1", "cash").value == 1000
            daemon.nfc.present_uid(UID)
            out = await next_outcome(outcomes)
            assert out.decision.reason is DenyReason.INSUFFICIENT_BALANCE  # spent, not again
        assert w.store.purse("m1", "cash").value == 1000


async def test_ops_that_never_reached_the_cloud_are_declared_lost_and_the_kiosk_goes_on(
    tmp_path,
):
    async with world(tmp_path, ["gate-1"]) as w:
        cfg, token = linked_kiosk(tmp_path, w, cash=10000, held=6000)
        w.start_reconciler()
        async with running(cfg) as (daemon, _):
            await eventually(
                lambda: daemon.ledger.purse("m1", "cash").rights("gate-1") == 6000,
                what="rights held at the kiosk",
            )
        copy = tmp_path / "backup.db"
        shutil.copy(cfg.kiosk.state_dir / "ledger.db", copy)
        await w.stop_task("reconciler1")  # the cloud is out of reach: the taps stay here
        async with running(cfg) as (daemon, outcomes):
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.approved
        restore(cfg, copy)
        w.start_reconciler()
        async with running(cfg) as (daemon, outcomes):
            assert daemon.ledger.recovering
            await eventually(lambda: not daemon.ledger.recovering, what="hold lifted")
            assert daemon.ledger.restored_behind is None
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.approved  # not frozen for good
            await eventually(
                lambda: w.store.head("gate-1")[0] == daemon.ledger.head()[0],
                what="the new ops stored at the cloud",
            )


class _ClockBehind:
    """The `time` module as the daemon sees it, with the wall clock 30 days behind."""

    def __init__(self, behind_ms: int) -> None:
        self.behind_ns = behind_ms * 1_000_000

    def time_ns(self) -> int:
        return time.time_ns() - self.behind_ns

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


async def test_a_kiosk_30_days_behind_connects_and_takes_the_clouds_time_at_once(
    tmp_path, monkeypatch
):
    behind_ms = 30 * 86_400_000
    monkeypatch.setattr(daemon_module, "time", _ClockBehind(behind_ms))
    # The host's NTP would vouch for the real clock; this kiosk has none.
    monkeypatch.setattr(clock_module, "ntp_synchronized", lambda run: False)
    monkeypatch.setattr(clock_module, "chrony_synchronized", lambda run: False)
    async with world(tmp_path, ["gate-1"]) as w:
        cfg, token = linked_kiosk(tmp_path, w, cash=5000, held=0)
        w.start_reconciler()
        async with running(cfg) as (daemon, outcomes):
            assert daemon.wall_ms() < time.time_ns() // 1_000_000 - behind_ms + 60_000
            # Trusted within seconds of the link coming up, not after the 60 s re-check.
            await eventually(lambda: daemon.clock.trusted, timeout=10, what="clock trusted")
            assert daemon.clock.source == "beacon"
            assert abs(daemon.wall_ms() - time.time_ns() // 1_000_000) < 10_000
            await eventually(
                lambda: daemon.ledger.register("card:" + token, "member") is not None,
                what="card known at the kiosk",
            )
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.approved
            newest = next(daemon.ledger.ops("gate-1", daemon.ledger.head()[0] - 1))
            assert abs(newest.wall_ms - time.time_ns() // 1_000_000) < 10_000  # stamped right


async def test_a_forked_kiosk_sets_its_branch_aside_tells_the_operator_and_goes_on(tmp_path):
    async with world(tmp_path, ["gate-1"]) as w:
        cfg, token = linked_kiosk(tmp_path, w, cash=10000, held=6000)
        w.start_reconciler()
        state = cfg.kiosk.state_dir
        async with running(cfg) as (daemon, _):
            await eventually(
                lambda: daemon.ledger.purse("m1", "cash").rights("gate-1") == 6000,
                what="rights held at the kiosk",
            )
        # The whole state folder copied (ledger and head record): the head record cannot see it.
        shutil.copytree(state, tmp_path / "image")
        async with running(cfg) as (daemon, outcomes):
            await eventually(lambda: daemon.agent.synced, what="kiosk online")
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.approved
            await eventually(
                lambda: w.store.head("gate-1")[0] == daemon.ledger.head()[0],
                what="the debit stored at the cloud",
            )
            cloud_head = w.store.head("gate-1")
        shutil.rmtree(state)
        shutil.copytree(tmp_path / "image", state)
        await w.stop_task("reconciler1")
        async with running(cfg) as (daemon, outcomes):  # offline: the other branch
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.approved
            assert daemon.ledger.head()[0] == cloud_head[0]  # same seqs, other ops
            assert daemon.ledger.head()[1] != cloud_head[1]
        w.start_reconciler()
        async with running(cfg) as (daemon, outcomes):
            agent = daemon.agent
            requests = 0
            call = agent._rpc_call

            async def counted(msg):
                nonlocal requests
                requests += 1
                return await call(msg)

            agent._rpc_call = counted
            await eventually(lambda: agent.forked, what="fork detected")
            await eventually(lambda: not daemon.ledger.recovering, what="cloud's branch adopted")
            assert daemon.ledger.head() == cloud_head
            aside = Path(daemon.ledger.fork_set_aside)
            assert aside.exists()  # our branch, kept for the accounting
            with Ledger(aside) as old:
                assert old.head("gate-1")[0] == cloud_head[0]
            # The operator is told: the health the kiosk reports raises the fleet's fork alert.
            health = agent._status(True).health
            assert health is not None
            assert health.forked
            device = w.store.device("gate-1")
            assert kiosk_alerts(KioskView(device, health), 0, AlertSettings())["fork"]
            # It goes on, with new seqs after the cloud's.
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.approved
            assert daemon.ledger.head()[0] > cloud_head[0]
            await eventually(
                lambda: w.store.head("gate-1")[0] == daemon.ledger.head()[0],
                what="the new ops stored at the cloud",
            )
            await asyncio.sleep(2.0)
            assert requests < 20  # no request storm (it was ~58 a second)
            # Both branches reach the cloud: the set-aside one's tap is accounted as the
            # member's debt, bounded by the rights the kiosk held, and the operator told.
            await eventually(lambda: w.store.fork_debts("gate-1") != [], what="branch accounted")
            (row,) = w.store.fork_debts("gate-1")
            assert (row.fork_seq, row.debt.account, row.debt.purse) == (1, "m1", "cash")
            assert row.debt.spent == row.debt.debt == 2000  # the swim on the other branch
            assert row.debt.held >= 6000
            branch_head = daemon.ledger.fork_reported
            assert branch_head == cloud_head[0]
            # Uploaded again (its answer lost, say): recorded once.
            daemon.ledger.fork_reported_through(0)
            await eventually(
                lambda: daemon.ledger.fork_reported == branch_head, what="branch uploaded again"
            )
            assert w.store.fork_debts("gate-1") == [row]
        assert w.reconciler is not None
        fleet = FleetRecords(str(tmp_path / "cloud.db"))
        try:
            raised = FleetWatch(w.reconciler, fleet, AlertSettings()).check()
        finally:
            fleet.close()
        debt_alert = next(e for e in raised if e.type == "fork_debt")
        assert debt_alert.device == "gate-1" and "2000 owed" in debt_alert.detail
        out = CliRunner().invoke(
            cli, ["cloud", "kiosks", "--config", str(cloud_toml(tmp_path, w.keys["cloud"]))]
        )
        assert out.exit_code == 0, out.output
        assert "gate-1: forked branch from #1: m1/cash spent 2000 there" in out.output


async def test_a_full_disk_shows_in_the_fleet_view_with_the_reason(tmp_path, monkeypatch):
    def disk_full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async with world(tmp_path, ["gate-1"]) as w:
        cfg, token = linked_kiosk(tmp_path, w, cash=5000, held=3000)
        assert w.reconciler is not None
        fleet = w.reconciler.fleet = FleetRecords(str(tmp_path / "cloud.db"))
        w.start_reconciler()
        try:
            async with running(cfg) as (daemon, outcomes):
                await eventually(
                    lambda: daemon.ledger.register("card:" + token, "member") is not None,
                    what="card known at the kiosk",
                )
                monkeypatch.setattr(chain, "write", disk_full)  # the ledger's write fails
                daemon.nfc.present_uid(UID)
                out = await next_outcome(outcomes)
                assert out.decision.reason is DenyReason.DISK_FULL  # the member is told why
                await eventually(
                    lambda: "DISK_FULL" in getattr(fleet.healths().get("gate-1"), "refusals", {}),
                    what="the refusal in the kiosk's health at the cloud",
                )
                monkeypatch.undo()
            raised = FleetWatch(w.reconciler, fleet, AlertSettings()).check()
        finally:
            fleet.close()
        alert = next(e for e in raised if e.type == "disk_low")
        assert (alert.device, alert.detail) == ("gate-1", "disk full: 1 taps refused")
        out = CliRunner().invoke(
            cli, ["cloud", "kiosks", "--config", str(cloud_toml(tmp_path, w.keys["cloud"]))]
        )
        assert out.exit_code == 0, out.output
        row = next(line for line in out.output.splitlines() if " gate-1 " in line)
        assert "disk_full 1" in row
