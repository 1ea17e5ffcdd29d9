"""Poison on the real broker (issue 12 item 1): a poisoned retained status and a poisoned QoS 1
ops message waiting in the reconciler's session, a poisoned retained deny list for a kiosk.
The reconciler (ReconcilerService) and the kiosk's agent start, are restarted, refuse and count
the poison each time it arrives, and go on serving: later honest messages are acked."""

from __future__ import annotations

import aiomqtt
import pytest

from cloud_sync import ca
from cloud_sync.protocol import (
    OpsUpload,
    Topics,
    denylist_topic,
    device_client_id,
    seal,
    secret_client_id,
)
from edge.ledger import Intent, Kind
from tests.mqtt_broker import eventually, world
from tests.test_hostile_input import DEEP, deny, sealed_raw, signed_op_batch

pytestmark = pytest.mark.mqtt
T = Topics("s1", "k1")


def _refusals(caplog: pytest.LogCaptureFixture, leaf: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.getMessage().startswith(f"refused from k1: message on {T.base}/{leaf}")
    )


async def test_the_reconciler_survives_retained_and_queued_poison_across_restarts(tmp_path, caplog):
    async with world(tmp_path, ["k1"]) as w:
        rec = w.cloud()
        w.kiosk("k1")
        dev = w.keys["k1"]
        rec_id = secret_client_id("reconciler")
        # A first run makes the reconciler's persistent session (its subscriptions), then stops.
        svc = w.start_reconciler(client_id=rec_id)
        await eventually(svc.connected.is_set, what="reconciler connected")
        await w.stop_task("reconciler1")

        # While it is away, a stolen k1 key: a retained poisoned status, and a QoS 1 ops batch
        # with an amount of 2^63 that waits in the reconciler's session.
        poison_ops = seal(
            OpsUpload(batch=signed_op_batch(dev, amount=1 << 63)),
            topic=T.ops,
            sender="k1",
            key=dev,
            ts_ms=1,
        )
        k1 = w.broker.settings("k1")
        async with aiomqtt.Client(**k1.client_kwargs(), identifier=device_client_id("k1")) as c:
            await c.publish(T.status, sealed_raw(T.status, DEEP, dev), qos=1, retain=True)
            await c.publish(T.ops, poison_ops, qos=1)

        # Back (same session): both arrive, both are refused and counted, it stays connected.
        svc = w.start_reconciler(client_id=rec_id)
        # (The status twice: queued in the session, and again as retained at subscribe.)
        await eventually(
            lambda: _refusals(caplog, "ops") == 1 and _refusals(caplog, "status") >= 1,
            what="both poison messages refused",
        )
        assert svc.connected.is_set() and not w.tasks["reconciler2"].done()
        before = rec.refused

        # Restarted again: the retained status comes back (retained) and is refused again; the
        # ops message was acked the first time, so it is not redelivered.
        await w.stop_task("reconciler2")
        svc = w.start_reconciler(client_id=rec_id)
        await eventually(lambda: rec.refused > before, what="the retained status refused again")
        await eventually(svc.connected.is_set, what="reconciler connected")
        assert _refusals(caplog, "ops") == 1

        # And it serves: the kiosk's honest ops are stored and acked.
        led = w.ledgers["k1"]
        led.append([Intent(Kind.INC, "m1", "cash", 500)], ref="topup-1")
        w.start_agent("k1")
        await w.online("k1")
        await w.settled()
        assert led.head()[0] == 1
        assert w.store is not None and w.store.head("k1")[0] == 1
        assert _refusals(caplog, "ops") == 1  # the honest batch was not refused
        assert w.store.flags()["k1"].refused == rec.refused >= 3


async def test_a_kiosk_survives_a_retained_poisoned_deny_list_across_restarts(tmp_path):
    async with world(tmp_path, ["k1"]) as w:
        rec = w.cloud()
        agent = w.kiosk("k1")
        w.start_reconciler()
        await eventually(lambda: w.services[0].connected.is_set(), what="reconciler")
        cloud_key = w.keys["cloud"]
        rec_settings = w.broker.settings(ca.RECONCILER)
        async with aiomqtt.Client(
            **rec_settings.client_kwargs(), identifier=secret_client_id("test")
        ) as c:
            # What a stolen cloud-side credential could park: a signed but poisoned head.
            await c.publish(
                denylist_topic("s1"),
                sealed_raw(T.denylist, DEEP, cloud_key),
                qos=1,
                retain=True,
            )
        for run in (1, 2):  # the kiosk starts, and restarts, with the poison retained
            w.start_agent("k1")
            await w.online("k1")
            await eventually(lambda run=run: agent.refused == run, what=f"poison refused #{run}")
            await w.stop_task("k1")
        w.start_agent("k1")
        await w.online("k1")
        # An honest delta still applies, and the kiosk's ops still reach the cloud.
        async with aiomqtt.Client(
            **rec_settings.client_kwargs(), identifier=secret_client_id("test")
        ) as c:
            now = rec.clock()
            await c.publish(denylist_topic("s1"), deny(1, cloud_key, now), qos=1, retain=True)
        await eventually(lambda: agent.denied("tok") == "lost", what="the honest delta applied")
        w.ledgers["k1"].append([Intent(Kind.INC, "m1", "cash", 300)], ref="topup-2")
        await w.settled()
