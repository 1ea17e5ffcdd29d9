"""Rights move back to the cloud: a recall when another kiosk needs them, and a sweep of rights
left idle; the kiosk answers each with a transfer back, once, and the money still adds up."""

from __future__ import annotations

import time

import pytest

from cloud_sync.settings import EscrowPolicy
from edge.ledger import Intent, Kind
from tests.mqtt_broker import eventually, world
from tests.test_sync_mqtt import assert_converged

pytestmark = pytest.mark.mqtt


async def test_rights_held_by_one_kiosk_are_recalled_within_anothers_request(tmp_path):
    async with world(tmp_path, ["k1", "k2"]) as w:
        w.cloud()
        w.store.append([Intent(Kind.INC, "m1", "cash", 1000)], ref="topup-1")
        for d in ("k1", "k2"):
            w.kiosk(d)
        w.store.grant("m1", "cash", "k1", 1000, 1000, ref="float-k1")  # k1 holds everything
        w.start_reconciler()
        w.start_agent("k1")
        w.start_agent("k2")
        await w.online("k1", "k2")
        k1, k2 = w.ledgers["k1"], w.ledgers["k2"]
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") == 1000, what="k1 float")
        # k2 asks: the cloud holds nothing free, so it recalls k1's idle rights and answers
        # k2 once they are back, within the same request (no refusal an always-online server
        # would not give).
        assert await w.agents["k2"].request_rights("m1", "cash", 600)
        assert k1.purse("m1", "cash").rights("k1") == 0
        assert k2.purse("m1", "cash").rights("k2") >= 600
        k2.append([Intent(Kind.DEC, "m1", "cash", 600)], ref="tap-1")
        w.agents["k2"].notify()
        await w.settled()
        assert w.store.purse("m1", "cash").value == 400
        recalls = [o for o in k1.ops("k1") if o.ref.startswith("recall:")]
        assert len(recalls) == 1  # answered once, however often the recall was delivered
        assert_converged(w)


async def test_idle_rights_are_swept_back_to_the_cloud(tmp_path):
    async with world(tmp_path, ["k1"]) as w:
        now = [time.time_ns() // 1_000_000]
        rec = w.cloud(escrow=EscrowPolicy(idle_recall_s=60))
        rec.clock = lambda: now[0]
        w.store.append([Intent(Kind.INC, "m1", "cash", 500)], ref="topup-1")
        w.kiosk("k1")
        w.store.grant("m1", "cash", "k1", 500, 500, ref="float-k1")
        w.start_reconciler()
        w.start_agent("k1")
        await w.online("k1")
        k1 = w.ledgers["k1"]
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") == 500, what="float")
        assert rec.sweep() == []  # not idle yet
        now[0] += 61_000
        await w.services[0].publish(rec.sweep())
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") == 0, what="swept")
        await w.settled()
        assert w.store.purse("m1", "cash").rights("cloud") == 500
        assert_converged(w)
