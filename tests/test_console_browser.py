"""The back office in a real browser (Debian's chromium through Playwright) against the console
served by `kiosk cloud console`: login and lockout, a cashier's top-up and a refused delete in
the audit trail, a member registered and carded in the console then approved by a real kiosk
daemon on mosquitto and refused within 2 s of a lost report, an import with one bad row, and
screenshots of the main pages in both languages (docs/console/)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from backoffice.money import parse_money
from cloud_sync import admin
from edge.ledger import load_private_key
from edge.validation import dump, load
from tests.console_helpers import SHOTS, Console, browser, login, running_console, write_cloud

playwright = pytest.importorskip("playwright.async_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium"),
]


@pytest.fixture
def console(tmp_path):
    yield from running_console(tmp_path / "cloud")


async def test_login_works_and_three_wrong_passwords_lock_the_account(console):
    console.operator("cashier1", "cashier")
    async with playwright.async_playwright() as pw:
        b = await browser(pw)
        page = await b.new_page()
        await login(page, console.url, "cashier1")
        assert "/admin/login" not in page.url
        await page.click("#logout-form button")
        for _ in range(3):
            await login(page, console.url, "cashier1", "wrong")
        assert await page.locator("#locked-out").count() == 1
        await login(page, console.url, "cashier1")  # the right password no longer helps
        assert await page.locator("#locked-out").count() == 1
        await b.close()
    failed = console.actions(actor="cashier1", action="login", allowed=False)
    assert len(failed) >= 3
    assert console.actions(action="lockout", allowed=False)


async def test_cashier_tops_up_once_per_receipt_and_is_refused_deleting_a_member(console):
    console.operator("cashier1", "cashier")
    async with playwright.async_playwright() as pw:
        b = await browser(pw)
        page = await b.new_page()
        await login(page, console.url, "cashier1")
        for _ in range(2):  # the same receipt twice (a double click, a retry): credited once
            await page.goto(console.url + "/members/m1/")
            await page.fill("#topup-form input[name=amount]", "12.50")
            await page.fill("#topup-form input[name=receipt]", "R-1001")
            await page.click("#topup-form input[type=submit]")
        assert (await page.inner_text(".balance-cash")).strip() == "12.50"
        await page.goto(console.url + "/members/m2/")
        await page.fill("#topup-form input[name=amount]", "12.50")
        await page.fill("#topup-form input[name=receipt]", "R-1001")
        await page.click("#topup-form input[type=submit]")
        assert "used already" in await page.inner_text(".messagelist")
        # No delete permission: Django refuses, and the refusal is recorded.
        from backoffice.members.models import Member

        pk = Member.objects.get(account="m2").pk
        resp = await page.goto(f"{console.url}/admin/members/member/{pk}/delete/")
        assert resp is not None and resp.status == 403
        assert await page.locator("#forbidden").count() == 1
        await b.close()
    store = console.store()
    try:
        assert store.purse("m1", "cash").value == 1250
        assert store.purse("m2", "cash").value == 0
    finally:
        store.close()
    assert Member.objects.filter(account="m2").exists()
    (delete,) = console.actions(actor="cashier1", allowed=False, action__contains="delete")
    assert delete.target == str(pk) and delete.address == "127.0.0.1"
    (reuse,) = console.actions(actor="cashier1", action="top_up", allowed=False)
    assert reuse.target == "m2" and "R-1001" in reuse.reason
    assert len(console.actions(actor="cashier1", action="top_up", allowed=True)) == 2
    ok = console.actions(actor="cashier1", action="top_up", allowed=True)[-1]
    assert ok.before["balances"] == {} and ok.after["balances"] == {"cash": 1250}


async def test_an_import_with_one_bad_row_shows_it_and_imports_nothing_until_fixed(
    console, tmp_path
):
    console.operator("manager1", "venue manager", site="s1")
    secrets = console.secrets()
    bad = tmp_path / "members.csv"
    bad.write_text(
        "account,name,phone,site,card_number\n"
        "m10,Carol Chen,13800000010,s1,6001000000000014\n"
        "m11,,13800000011,s1,6001000000000022\n"
        "m12,Dan Zhou,13800000012,s1,6001000000000030\n"
    )
    good = tmp_path / "members-fixed.csv"
    good.write_text(bad.read_text().replace("m11,,", "m11,Erin Xu,"))
    async with playwright.async_playwright() as pw:
        b = await browser(pw)
        page = await b.new_page()
        await login(page, console.url, "manager1")
        await page.goto(console.url + "/admin/members/member/import/")
        await page.set_input_files("input[type=file]", str(bad))
        await page.select_option("select[name=format]", label="csv")
        await page.click("input[type=submit]")
        await page.wait_for_load_state()
        errors = await page.inner_text("body")
        assert "every row needs an account and a name" in errors
        assert await page.locator("form input[name=import_file_name]").count() == 0  # no confirm
        await page.screenshot(path=str(SHOTS / "import-errors-en.png"), full_page=True)
        store = console.store()
        assert not admin.is_member(store, "m10")
        await page.goto(console.url + "/admin/members/member/import/")
        await page.set_input_files("input[type=file]", str(good))
        await page.select_option("select[name=format]", label="csv")
        await page.click("input[type=submit]")
        await page.wait_for_load_state()
        await page.click("input[name=confirm]")
        await page.wait_for_load_state()
        await b.close()
    try:
        for account in ("m10", "m11", "m12"):
            assert admin.is_member(store, account)
        token = admin.card_token(secrets, "6001000000000022")
        assert admin.card_owner(store, token) == "m11"
        assert admin.card_status(store, token) == "active"
    finally:
        store.close()


def test_money_typed_at_the_counter_is_parsed_exactly():
    assert parse_money("12.50") == 1250
    assert parse_money("0.01") == 1
    for bad in ("12.505", "-1", "0", "abc", ""):
        with pytest.raises(ValueError):
            parse_money(bad)


@pytest.mark.mqtt
async def test_console_member_and_card_pass_a_real_kiosk_and_a_lost_report_stops_it_in_2s(
    tmp_path,
):
    from cloud_sync.reconciler import Reconciler
    from edge.config import KioskConfig
    from edge.daemon.daemon import KioskDaemon
    from edge.daemon.sdnotify import Notifier
    from edge.ledger import public_bytes, save_private_key
    from edge.ledger.keys import generate_key
    from edge.taps.reasons import DenyReason
    from kiosk.link import link_factory
    from tests.daemon_helpers import kiosk_config, next_outcome, stop_daemon
    from tests.mqtt_broker import eventually, world

    uid = "04A1B2C3D4E5F6"
    async with world(tmp_path, ["gate-1"]) as w:
        config = write_cloud(tmp_path / "cloud", w.broker.pki, w.broker.port)
        console = Console(config)
        cloud_key = load_private_key(console.cfg.reconciler.key_file)
        w.keys["cloud"] = cloud_key
        w.store = console.store()
        w.reconciler = Reconciler(w.store, cloud_key, chain_chunk=50)
        base = kiosk_config(tmp_path)
        device_key = generate_key()
        save_private_key(base.kiosk.key_file, device_key)
        # The kiosk's site key is the cloud's: the same card references on both sides.
        base.kiosk.site_key_file.write_bytes(console.cfg.reconciler.site_key_file.read_bytes())
        base.kiosk.site_key_file.chmod(0o600)
        w.store.trust("gate-1", public_bytes(device_key), "kiosk")
        w.store.enroll("gate-1", w.site)
        raw = dump(base)
        raw["kiosk"] |= {"site": w.site, "cloud_public_key": public_bytes(cloud_key).hex()}
        raw["agent"] = {
            "broker": dump(w.broker.settings("gate-1")),
            "poll_interval_s": 0.02,
            "sync_interval_s": 0.5,
            "backoff_min_s": 0.05,
            "backoff_max_s": 0.5,
        }
        cfg = load(KioskConfig, raw)
        w.start_reconciler()
        await asyncio.to_thread(console.start)
        console.django()
        console.operator("manager1", "venue manager", site="s1")
        daemon = KioskDaemon(cfg, notifier=Notifier({}), link=link_factory(cfg))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            async with asyncio.timeout(10):
                await daemon.ready.wait()
            outcomes: asyncio.Queue = asyncio.Queue()
            daemon.feedback.observers.append(outcomes.put_nowait)
            await eventually(lambda: daemon.agent.synced, what="kiosk online")
            async with playwright.async_playwright() as pw:
                b = await browser(pw)
                page = await b.new_page()
                await login(page, console.url, "manager1")
                await page.goto(console.url + "/admin/members/member/add/")
                await page.fill("#id_account", "m7")
                await page.fill("#id_name", "Grace Lin")
                await page.fill("#id_phone", "13900000007")
                await page.click("input[name=_save]")
                await page.goto(console.url + "/members/m7/")
                await page.fill("#link-form input[name=number]", uid)
                await page.select_option("#link-form select[name=kind]", "uid")
                await page.click("#link-form input[type=submit]")
                await page.fill("#topup-form input[name=amount]", "50.00")
                await page.fill("#topup-form input[name=receipt]", "R-7")
                await page.click("#topup-form input[type=submit]")
                assert (await page.inner_text(".balance-cash")).strip() == "50.00"

                token = admin.card_token(console.secrets(), uid, "uid")
                await eventually(
                    lambda: daemon.ledger.register("card:" + token, "member") is not None,
                    what="the console's card known at the kiosk",
                )
                daemon.nfc.present_uid(uid)
                out = await next_outcome(outcomes)
                assert out.decision.approved, out.decision
                assert out.decision.member_name == "Grace Lin"

                await page.goto(console.url + "/members/m7/")
                clicked = time.monotonic()
                await page.click("#cards button[name=move][value=lost]")
                await eventually(
                    lambda: daemon.agent.denied(token) == "lost", timeout=2.0, what="lost in 2 s"
                )
                took = time.monotonic() - clicked
                await asyncio.sleep(cfg.rules.debounce_seconds)
                daemon.nfc.present_uid(uid)
                assert (await next_outcome(outcomes)).decision.reason is DenyReason.CARD_LOST
                assert took <= 2.0
                await b.close()
        finally:
            await stop_daemon(task, stop)
            console.stop()
    (lost,) = console.actions(action="card_lost", allowed=True)
    assert lost.actor == "manager1" and lost.target == "m7" and lost.site == "s1"


def test_every_console_string_has_a_chinese_translation():
    po = Path(__file__).resolve().parent.parent / "backoffice/locale/zh_Hans/LC_MESSAGES/django.po"
    text = po.read_text()
    blocks = [b for b in text.split("\n\n") if "\nmsgid " in "\n" + b]
    untranslated = [b for b in blocks[1:] if b.rstrip().endswith('msgstr ""')]
    assert not untranslated, untranslated
    assert po.with_suffix(".mo").stat().st_mtime >= po.stat().st_mtime - 1  # compiled


async def test_screenshots_of_the_main_pages_in_english_and_chinese(console):
    store = console.store()
    try:
        admin.top_up(store, "m1", "cash", 8800, "R-1")
        store.enroll("gate-1", "s1")
        store.enroll("topup-1", "s1")
        store.seen("gate-1", online=True, head=12, last_seen_ms=int(time.time() * 1000))
        from cloud_sync.fleet import FleetRecords
        from cloud_sync.protocol import Health

        fleet = FleetRecords(console.cfg.reconciler.store)
        health = {"version": "0.1.0", "disk_free_bytes": 3_200_000_000, "tap_p50_ms": 3.1}
        health |= {"tap_p95_ms": 6.4, "taps": 40, "refusals": {"CARD_LOST": 2}}
        fleet.record_health("gate-1", msgspec.convert(health, type=Health), 1)
        fleet.raise_alert("kiosk_offline", "topup-1", "offline for 420 s", int(time.time() * 1000))
        fleet.close()
    finally:
        store.close()
    console.operator("admin1", "chain admin")
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "home": "/",
        "members": "/admin/members/member/",
        "member": "/members/m1/",
        "fleet": "/fleet/",
        "audit": "/admin/audit/action/",
        "groups": "/admin/auth/group/",
    }
    async with playwright.async_playwright() as pw:
        b = await browser(pw)
        page = await b.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(console.url + "/admin/login/")
        await page.screenshot(path=str(SHOTS / "login-en.png"))
        await login(page, console.url, "admin1")
        for lang in ("en", "zh-hans"):
            if lang != "en":
                # The menu submits a form: wait for that navigation, not for the page already
                # loaded (wait_for_load_state alone can return before the switch, under load).
                async with page.expect_navigation():
                    await page.select_option("#language", lang)
                assert "会员后台" in await page.inner_text("#site-name")
            for name, path in pages.items():
                await page.goto(console.url + path)
                await page.screenshot(path=str(SHOTS / f"{name}-{lang}.png"), full_page=True)
        await page.goto(console.url + "/fleet/")
        assert "在线" in await page.inner_text("#fleet")
        assert "6.4" in await page.inner_text("#fleet")
        assert "card_lost 2" in await page.inner_text("#fleet")
        assert "offline for 420 s" in await page.inner_text("#alerts")
        await b.close()
    for name in pages:
        for lang in ("en", "zh-hans"):
            assert (SHOTS / f"{name}-{lang}.png").stat().st_size > 5000


def test_cli_commands_are_recorded_in_the_console_audit_trail(console):
    import subprocess
    import sys

    def kiosk(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", "from kiosk.cli import main; main()", "cloud", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    cfg = ["--config", str(console.config)]
    assert (
        kiosk("topup", *cfg, "--account", "m1", "--amount", "500", "--ref", "R-9").returncode == 0
    )
    reused = kiosk("topup", *cfg, "--account", "m2", "--amount", "500", "--ref", "R-9")
    assert reused.returncode == 1 and "used already" in reused.stderr
    assert (
        kiosk("card", "link", *cfg, "--account", "m1", "--card", "6001000000000097").returncode == 0
    )
    rows = [a for a in console.actions() if a.actor.startswith("cli:")]
    by_what = {(a.action, a.allowed): a for a in rows}
    ok = by_what[("kiosk cloud topup", True)]
    assert ok.target == "m1" and ok.before["params"]["ref"] == "R-9"
    assert "used already" in by_what[("kiosk cloud topup", False)].reason
    link = by_what[("kiosk cloud card link", True)]
    assert "6001000000000097" not in str(link.before)  # the card number never reaches the trail
    assert link.before["params"]["number"].startswith("ref:")
