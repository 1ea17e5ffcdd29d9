"""The kiosk daemon end to end on simulated drivers: reader -> rules -> durable op -> relay and
frame; READY/WATCHDOG to systemd; SIGTERM-style stop shows out of service; bad config refused."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from edge.daemon.sdnotify import Notifier
from edge.drivers.gpio import SimulatedInputs
from edge.ledger import Ledger
from edge.taps.reasons import DenyReason
from kiosk.cli import cli
from tests.daemon_helpers import Site, kiosk_config, next_outcome, running


def relay_went_high(daemon) -> bool:
    states = [s.state for s in daemon.gpio.pin_of("relay").states]
    return True in states


async def test_nfc_tap_debits_durably_then_pulses_the_relay_and_draws_the_frame(tmp_path):
    cfg = kiosk_config(tmp_path)
    site = Site(tmp_path, cfg)
    site.enroll("m1", "Alice", "04A1B2C3D4E5F6", cash=5000)
    site.push()
    async with running(cfg) as (daemon, outcomes):
        daemon.nfc.present_uid("04A1B2C3D4E5F6")
        out = await next_outcome(outcomes)
        assert out.decision.approved
        assert out.durable_ns <= out.gate_ns
        assert relay_went_high(daemon)
        assert daemon.feedback.shown[-1] == "ApprovedScreen"
    with Ledger(cfg.kiosk.state_dir / "ledger.db") as led:
        assert led.purse("m1", "cash").value == 3000
    frames = sorted((tmp_path / "frames").glob("*.png"))
    assert len(frames) >= 3  # idle, approved, out of service
    assert Image.open(frames[-1]).size == (128, 64)


async def test_unknown_card_is_denied_and_the_gate_stays_shut(tmp_path):
    cfg = kiosk_config(tmp_path)
    Site(tmp_path, cfg).push()
    async with running(cfg) as (daemon, outcomes):
        daemon.nfc.present_uid("04FFFFFFFFFFFF")
        out = await next_outcome(outcomes)
        assert out.decision.reason is DenyReason.UNKNOWN_CARD
        assert not relay_went_high(daemon)
        assert daemon.feedback.shown[-1] == "DeniedScreen"


async def test_bank_card_and_garbled_swipe_are_refused_with_their_reason(tmp_path):
    cfg = kiosk_config(tmp_path)
    Site(tmp_path, cfg).push()
    async with running(cfg) as (daemon, outcomes):
        daemon.wedge.source.swipe("%B4111111111111111^DOE/JOHN^2812101000000000000?")
        assert (await next_outcome(outcomes)).decision.reason is DenyReason.BANK_CARD
        daemon.wedge.source.type_text("%M60123456")
        assert (await next_outcome(outcomes)).decision.reason is DenyReason.COULD_NOT_READ
    with Ledger(cfg.kiosk.state_dir / "ledger.db") as led:
        reasons = [d["reason"] for d in led.denials()]
        assert reasons == ["BANK_CARD", "COULD_NOT_READ"]
        assert all("4111" not in str(d) for d in led.denials())


async def test_coins_at_a_topup_kiosk_credit_the_member(tmp_path):
    cfg = kiosk_config(tmp_path, role="topup", topup_bonus=[{"min_amount": 500, "bonus": 50}])
    site = Site(tmp_path, cfg)
    site.enroll("m1", "Alice", "04A1B2C3")
    site.push()
    async with running(cfg) as (daemon, outcomes):
        daemon.nfc.present_uid("04A1B2C3")
        assert (await next_outcome(outcomes)).decision.approved
        await SimulatedInputs(daemon.gpio).insert_coin(5)
        coin = await next_outcome(outcomes)
        assert coin.topup_total == 500
        await asyncio.sleep(cfg.rules.debounce_seconds + 0.1)
        daemon.nfc.present_uid("04A1B2C3")
        done = await next_outcome(outcomes)
        assert done.topup_total == 550
    with Ledger(cfg.kiosk.state_dir / "ledger.db") as led:
        assert led.purse("m1", "cash").value == 550


async def test_ready_watchdog_and_clean_stop(tmp_path):
    cfg = kiosk_config(tmp_path)
    Site(tmp_path, cfg).push()
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    async with running(cfg, notifier) as (daemon, _):
        await asyncio.sleep(0.3)
        assert daemon.feedback.shown[0] == "IdleScreen"
    got = []
    while True:
        try:
            got.append(server.recv(256).decode())
        except BlockingIOError:
            break
    assert got[0].startswith("READY=1")
    assert "WATCHDOG=1" in got
    assert got[-1] == "STOPPING=1"
    assert daemon.feedback.shown[-1] == "OutOfServiceScreen"
    server.close()


def test_run_refuses_a_bad_config_with_the_place_of_the_fault(tmp_path):
    bad = tmp_path / "kiosk.toml"
    bad.write_text('[kiosk]\nid = "g1"\nsite = "pool"\nrole = "gate"\nproduct = "gym"\n')
    result = CliRunner().invoke(cli, ["run", "--config", str(bad)])
    assert result.exit_code == 1
    assert "kiosk.product 'gym' is not in [rules.products]" in result.output
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("[kiosk\n")
    result = CliRunner().invoke(cli, ["run", "--config", str(garbage)])
    assert result.exit_code == 1
    assert "not valid TOML" in result.output


def test_run_names_a_missing_key_file(tmp_path):
    cfg_path = tmp_path / "kiosk.toml"
    cfg_path.write_text(
        f'[kiosk]\nid = "t1"\nsite = "pool"\nrole = "topup"\nstate_dir = "{tmp_path}"\n'
        f'key_file = "{tmp_path}/nope.key"\nsite_key_file = "{tmp_path}/nope-site.key"\n'
    )
    result = CliRunner().invoke(cli, ["run", "--config", str(cfg_path)])
    assert result.exit_code == 1
    assert "nope-site.key" in result.output


async def test_console_asks_for_service_mode_and_it_is_audited(tmp_path):
    from edge.daemon.service_mode import request_service

    cfg = kiosk_config(tmp_path)
    Site(tmp_path, cfg).push()
    async with running(cfg) as (daemon, _):
        request_service(cfg.kiosk.state_dir, 5, "console:tech")
        for _ in range(40):
            if daemon.kiosk.in_service:
                break
            await asyncio.sleep(0.1)
        assert daemon.kiosk.in_service
        assert daemon.feedback.shown[-1] == "ServiceScreen"
        assert not (cfg.kiosk.state_dir / "service.request").exists()
    with Ledger(cfg.kiosk.state_dir / "ledger.db") as led:
        audit = [o.data for o in led.ops("gate-1") if o.purse == "service"]
    assert audit[0].endswith("by console:tech")


def test_provision_service_refuses_unbounded_time(tmp_path):
    cfg_path = tmp_path / "kiosk.toml"
    cfg_path.write_text(
        f'[kiosk]\nid = "t1"\nsite = "pool"\nrole = "topup"\nstate_dir = "{tmp_path}"\n'
    )
    bad = CliRunner().invoke(
        cli, ["provision", "service", "--config", str(cfg_path), "--minutes", "600"]
    )
    assert bad.exit_code == 2
    ok = CliRunner().invoke(
        cli, ["provision", "service", "--config", str(cfg_path), "--minutes", "10"]
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "service.request").stat().st_mode & 0o777 == 0o600


def _ops_in_main_file_alone(db: Path, tmp: Path) -> int:
    """Ops a copy of the ledger's main file holds without its write-ahead log (an SD image)."""
    copy = tmp / "image.db"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM ops").fetchone()[0])
    finally:
        conn.close()


async def test_an_idle_kiosk_folds_its_ledger_log_into_the_file(tmp_path):
    """Between taps the daemon folds the write-ahead log into the ledger file (so taps seldom
    pay for a checkpoint in their commit): a second after a tap, the file alone holds it."""
    cfg = kiosk_config(tmp_path)
    site = Site(tmp_path, cfg)
    site.enroll("m1", "Alice", "04A1B2C3D4E5F6", cash=5000)
    site.push()
    db = cfg.kiosk.state_dir / "ledger.db"
    async with running(cfg) as (daemon, outcomes):
        before = _ops_in_main_file_alone(db, tmp_path)
        daemon.nfc.present_uid("04A1B2C3D4E5F6")
        assert (await next_outcome(outcomes)).decision.approved
        for _ in range(100):  # the fold runs after a second without events
            if _ops_in_main_file_alone(db, tmp_path) > before:
                break
            await asyncio.sleep(0.05)
        assert _ops_in_main_file_alone(db, tmp_path) > before
