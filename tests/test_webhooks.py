"""Webhooks: signatures (HMAC over timestamp and body, old timestamps refused), events derived
from the ops the store received (a kiosk's tap, a top-up, a refund, a card status, a low balance,
a kiosk going offline), at-least-once delivery with exponential backoff to a real local HTTP
receiver that fails twice first, a replay from the console's admin, and the worked POS example
(examples/pos_client.py) against the console served by its real command."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloud_sync import admin
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Intent, Kind, Ledger, generate_key, load_private_key, public_bytes
from tests.console_helpers import Console, write_cloud
from tests.mqtt_broker import free_port

pytest.importorskip("rest_framework")
ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """A real HTTP server on loopback that answers `codes` in turn (then 204) and keeps bodies."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.got: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((dict(self.headers), body))
                self.send_response(outer.codes.pop(0) if outer.codes else 204)
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict]:
        return [json.loads(b) for _, b in self.got]

    def close(self) -> None:
        self.server.shutdown()


def test_signature_verifies_and_refuses_old_timestamps_and_changed_bodies():
    from backoffice.webhooks.signing import sign, verify

    body = b'{"event":"topup"}'
    header = sign("whsec_x", 1_800_000_000, body)
    assert verify("whsec_x", header, body, now=1_800_000_010)
    assert not verify("whsec_x", header, body, now=1_800_000_000 + 301)  # a replay, later
    assert not verify("whsec_x", header, body + b" ", now=1_800_000_010)
    assert not verify("whsec_y", header, body, now=1_800_000_010)
    assert not verify("whsec_x", "t=abc,v1=00", body, now=1_800_000_010)
    # the POS example's own verifier (standard library only) agrees
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import pos_client
    finally:
        sys.path.pop(0)
    assert pos_client.verify("whsec_x", header, body, now=1_800_000_010)
    assert not pos_client.verify("whsec_x", header, body, now=1_800_000_400)


@pytest.fixture
def site(tmp_path):
    """A console database (migrated) and cloud store with one kiosk, in this process."""
    console = Console(write_cloud(tmp_path / "cloud"))
    with console.config.open("a") as f:
        f.write("[webhooks]\nbackoff_s = 0.05\nattempts = 4\nlow_balance = 1000\n")
    console.cfg = __import__("cloud_sync.settings").settings.load_config(console.config)
    console.django()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from backoffice.cloud import Cloud

    cloud = Cloud(console.cfg)
    key = generate_key()
    kiosk = Ledger(tmp_path / "k1.db", replica="k1", key=key, role="kiosk")
    cloud.store.trust("k1", public_bytes(key), "kiosk")
    cloud.store.enroll("k1", "s1")
    kiosk.trust("cloud", public_bytes(load_private_key(console.cfg.reconciler.key_file)), "cloud")
    admin.register_member(cloud.store, "m1", "Alice")
    yield console, cloud, kiosk
    kiosk.close()
    cloud.store.close()


def _sync(cloud, kiosk):
    cloud.store.ingest(list(kiosk.ops("k1", cloud.store.head("k1")[0])))
    kiosk.apply_many(cloud.store.ops("cloud", kiosk.head("cloud")[0]))


def test_events_come_from_the_ops_and_are_delivered_at_least_once_with_backoff(site):
    console, cloud, kiosk = site
    from backoffice.webhooks.models import Delivery, Subscription
    from backoffice.webhooks.worker import Worker

    hook = Receiver([500, 503])  # the receiver fails twice, then takes it
    try:
        every = ["tap.approved", "topup", "refund", "card.status", "balance.low", "kiosk.offline",
                 "kiosk.alert"]  # fmt: skip
        Subscription.objects.create(name="pos", url=hook.url, events=every)
        worker = Worker(cloud, console.cfg.webhooks)
        assert worker.scan() == 0  # the first scan starts at now: history is not replayed
        admin.top_up(cloud.store, "m1", "cash", 2500, "R-1")
        cloud.store.grant("m1", "cash", "k1", 2000, 1, "g1")
        _sync(cloud, kiosk)
        kiosk.append(
            [Intent(Kind.DEC, "m1", "cash", 2000), Intent(Kind.INC, "m1", "points", 20)], "tap-1"
        )
        _sync(cloud, kiosk)
        worker.scan()  # the worker's round after the tap (the balance it reports is now's)
        admin.refund(cloud.store, "tap-1", amount=300, reason="cold", account="m1")
        token = "f" * 32
        admin.link_card(cloud.store, "m1", token)
        admin.set_card_status(cloud.reconciler, "s1", token, "lost")
        cloud.store.seen("k1", online=True)
        worker.scan()
        cloud.store.seen("k1", online=False)
        # an alert the reconciler's fleet watch stores (another process) becomes an event too
        cloud.fleet.raise_alert("disk_low", "k1", "90 MB free", 1)
        worker.scan()
        queued = sorted(Delivery.objects.values_list("event", flat=True))
        assert queued == sorted(["topup", "tap.approved", "balance.low", "refund", "card.status",
                                 "card.status", "kiosk.offline", "kiosk.alert"])  # fmt: skip
        alert = Delivery.objects.get(event="kiosk.alert").payload["data"]
        assert (alert["type"], alert["kiosk"], alert["open"]) == ("disk_low", "k1", True)
        tap = Delivery.objects.get(event="tap.approved").payload["data"]
        assert tap["kiosk"] == "k1" and tap["ref"] == "tap-1" and tap["account"] == "m1"
        low = Delivery.objects.get(event="balance.low").payload["data"]
        assert low["cash"] == 500 <= low["threshold"]
        for _ in range(200):  # deliver until nothing is due; retries wait their backoff
            worker.deliver_due()
            if not Delivery.objects.filter(status=Delivery.PENDING).exists():
                break
            time.sleep(0.02)
        assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.DELIVERED}
        retried = [d for d in Delivery.objects.all() if d.attempts > 1]
        assert sum(d.attempts for d in Delivery.objects.all()) == 8 + 2 == len(hook.got)
        codes = sorted(e["code"] for d in retried for e in d.log)
        assert codes in ([204, 500, 503], [204, 204, 500, 503])  # each retried one got through
        from backoffice.webhooks.signing import verify

        sub = Subscription.objects.get()
        for headers, body in hook.got:
            assert verify(sub.secret, headers["Kiosk-Signature"], body, time.time())
        # a retried event keeps its id: the receiver can drop a duplicate
        ids = [h["Kiosk-Event-Id"] for h, _ in hook.got]
        assert all(ids.count(d.event_id) == d.attempts for d in retried)
        assert worker.backoff(1) <= 0.05 < worker.backoff(3) <= 0.2
    finally:
        hook.close()


def test_a_delivery_that_keeps_failing_is_marked_failed_and_replayed_from_the_console(site):
    console, cloud, _kiosk = site
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from backoffice.webhooks.models import Delivery, Subscription
    from backoffice.webhooks.worker import Worker, emit

    hook = Receiver([500] * 4)
    try:
        Subscription.objects.create(name="pos", url=hook.url, events=["topup"])
        assert emit("topup", {"account": "m1", "amount": 1}) == 1
        worker = Worker(cloud, console.cfg.webhooks)
        for _ in range(200):
            worker.deliver_due()
            if not Delivery.objects.filter(status=Delivery.PENDING).exists():
                break
            time.sleep(0.02)
        failed = Delivery.objects.get()
        assert failed.status == Delivery.FAILED and failed.attempts == 4
        boss = User.objects.create_user("boss", password="x", is_staff=True)
        boss.groups.add(Group.objects.get(name="venue manager"))
        client = Client()
        client.force_login(boss)
        done = client.post(
            "/admin/webhooks/delivery/",
            {"action": "replay_deliveries", "_selected_action": [failed.pk]},
        )
        assert done.status_code == 302
        again = Delivery.objects.exclude(pk=failed.pk).get()
        assert again.event_id == failed.event_id and again.status == Delivery.PENDING
        worker.deliver_due()
        assert Delivery.objects.get(pk=again.pk).status == Delivery.DELIVERED
        assert console.actions(actor="boss", action="webhook_replay", allowed=True)
    finally:
        hook.close()


@pytest.mark.slow
def test_the_pos_example_tops_up_through_the_api_and_receives_the_signed_webhook(tmp_path):
    console = Console(write_cloud(tmp_path / "cloud"))
    with console.config.open("a") as f:
        f.write("[webhooks]\npoll_s = 0.2\nbackoff_s = 0.2\n")
    s = console.cfg.reconciler
    store = SqliteCloudStore(
        s.store.removeprefix("sqlite:///"), replica="cloud", key=load_private_key(s.key_file)
    )
    admin.register_member(store, "m1", "Alice")
    store.close()
    console.start()
    try:
        console.django()
        from backoffice.api.tokens import issue
        from backoffice.webhooks.models import Subscription

        token = issue("pos-1", ["cashier"])
        port = free_port()
        sub = Subscription.objects.create(
            name="pos-1", url=f"http://127.0.0.1:{port}/hook", events=["topup"]
        )
        run = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "pos_client.py"), "--api", console.url,
             "--token", token, "--secret", sub.secret, "--listen", str(port),
             "--account", "m1", "--amount", "2500", "--receipt", "POS-0001", "--wait", "60"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert "balance 2500" in run.stdout
        assert "webhook topup" in run.stdout and '"receipt": "POS-0001"' in run.stdout
        assert console.actions(actor="api:pos-1", action="top_up", allowed=True)
    finally:
        console.stop()


def _kiosk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from kiosk.cli import main; main()", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_integration_and_webhook_commands(tmp_path):
    config = str(write_cloud(tmp_path / "cloud"))
    made = _kiosk("cloud", "integration", "add", "pos-9", "--config", config, "--group", "cashier")
    assert made.returncode == 0, made.stderr
    assert "token (shown once): kt_" in made.stdout
    bad = _kiosk("cloud", "integration", "add", "pos-9", "--config", config, "--group", "boss")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "unknown group 'boss'" in bad.stderr
    hook = Receiver()
    try:
        sub = _kiosk("cloud", "webhooks", "add", "--config", config, "--name", "pos-9",
                     "--url", hook.url, "--event", "topup")  # fmt: skip
        assert sub.returncode == 0 and "signing secret (shown once): whsec_" in sub.stdout
        wrong = _kiosk("cloud", "webhooks", "add", "--config", config, "--name", "x",
                       "--url", hook.url, "--event", "tap.refused")  # fmt: skip
        assert wrong.returncode == 2 and "unknown event 'tap.refused'" in wrong.stderr
        first = _kiosk("cloud", "webhooks", "run", "--config", config, "--once")
        assert first.returncode == 0 and "0 event(s) queued" in first.stdout
        cfg = __import__("cloud_sync.settings").settings.load_config(Path(config))
        store = SqliteCloudStore(
            cfg.reconciler.store.removeprefix("sqlite:///"),
            replica="cloud",
            key=load_private_key(cfg.reconciler.key_file),
        )
        admin.register_member(store, "m1", "Alice")
        admin.top_up(store, "m1", "cash", 900, "R-9")
        store.close()
        second = _kiosk("cloud", "webhooks", "run", "--config", config, "--once")
        assert "1 event(s) queued, 1 delivery attempt(s)" in second.stdout, second.stderr
        assert [e["data"]["receipt"] for e in hook.events()] == ["R-9"]
    finally:
        hook.close()
