"""The whole product on real parts: an operator registers a member and a card at the cloud, a
kiosk daemon (simulated readers, relay, display) linked to it through a real mosquitto with
mutual TLS asks for rights online at the first tap, and a lost-card report reaches it."""

from __future__ import annotations

import asyncio

import pytest

from cloud_sync import admin
from edge.config import KioskConfig
from edge.daemon.daemon import KioskDaemon
from edge.daemon.sdnotify import Notifier
from edge.ledger import Intent, Kind, generate_key, public_bytes, save_private_key
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.reasons import DenyReason
from edge.validation import dump, load
from kiosk.link import link_factory
from tests.daemon_helpers import kiosk_config, next_outcome, stop_daemon
from tests.mqtt_broker import eventually, world

pytestmark = pytest.mark.mqtt

UID = "04A1B2C3D4E5F6"


async def test_member_registered_at_the_cloud_taps_in_and_a_lost_report_stops_the_card(tmp_path):
    async with world(tmp_path, ["gate-1"]) as w:
        rec = w.cloud()
        create_site_key(tmp_path / "site.key")
        secrets = load_site_secrets(tmp_path / "site.key")
        token = admin.card_token(secrets, UID, "uid")  # plain UID tags: the site opted in
        admin.register_member(w.store, "m1", "Alice")
        admin.link_card(w.store, "m1", token)
        w.store.append([Intent(Kind.INC, "m1", "cash", 5000)], ref="counter-1")

        base = kiosk_config(tmp_path)
        device_key = generate_key()
        save_private_key(base.kiosk.key_file, device_key)
        w.store.trust("gate-1", public_bytes(device_key), "kiosk")
        w.store.enroll("gate-1", w.site)
        raw = dump(base)
        raw["kiosk"] |= {"site": w.site, "cloud_public_key": public_bytes(w.keys["cloud"]).hex()}
        raw["agent"] = {
            "broker": dump(w.broker.settings("gate-1")),
            "poll_interval_s": 0.02,
            "backoff_min_s": 0.05,
            "backoff_max_s": 0.5,
        }
        cfg = load(KioskConfig, raw)
        w.start_reconciler()

        daemon = KioskDaemon(cfg, notifier=Notifier({}), link=link_factory(cfg))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            async with asyncio.timeout(10):
                await daemon.ready.wait()
            outcomes: asyncio.Queue = asyncio.Queue()
            daemon.feedback.observers.append(outcomes.put_nowait)
            agent = daemon.agent
            await eventually(lambda: agent.synced, what="kiosk online")
            await eventually(
                lambda: daemon.ledger.register("card:" + token, "member") is not None,
                what="card known at the kiosk",
            )

            daemon.nfc.present_uid(UID)
            out = await next_outcome(outcomes)
            assert out.decision.approved, out.decision  # rights came online, within budget
            # The cloud's signed answers double as a time beacon for the kiosk's clock.
            await daemon._check_clock()
            assert daemon.clock.trusted
            assert daemon.clock.source in ("ntp", "chrony", "beacon")
            await eventually(
                lambda: w.store.head("gate-1")[0] == daemon.ledger.head()[0],
                what="the debit stored at the cloud",
            )
            assert w.store.purse("m1", "cash").value == 3000

            _, delta = admin.set_card_status(rec, w.site, token, "lost")
            await w.services[0].publish([delta])
            await eventually(lambda: agent.denied(token) == "lost", what="deny list at kiosk")
            await asyncio.sleep(cfg.rules.debounce_seconds)
            daemon.nfc.present_uid(UID)
            assert (await next_outcome(outcomes)).decision.reason is DenyReason.CARD_LOST
            assert w.store.purse("m1", "cash").value == 3000
        finally:
            await stop_daemon(task, stop)
