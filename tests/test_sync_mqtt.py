"""Sync against a real mosquitto with mutual TLS and the generated ACL."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from edge.ledger import Intent, Kind, SpendRefused, verify

from tests.mqtt_broker import eventually, world

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(shutil.which("mosquitto") is None and not __import__("os").path.exists("/usr/sbin/mosquitto"), reason="no mosquitto"),
]


def assert_converged(w, *, strict: bool = True) -> None:
    """All replicas agree, nothing lost or doubled, no purse below its bound."""
    store = w.store
    for d, led in w.ledgers.items():
        assert store.head(d) == led.head(), f"{d} chain differs at the cloud"
        assert verify(led).ok
        for op in led.ops(d):
            assert store.ops(d, op.seq - 1, 1)[0] == op
    for state in store.purses():
        if strict:
            assert state.value >= state.lower_bound, state
        assert state.debt == 0 or not strict
    # Each kiosk agrees with the cloud on its own rights.
    for d, led in w.ledgers.items():
        for st in led.purses():
            if led.head("cloud")[0] == store.head("cloud")[0]:
                assert st.rights(d) == store.purse(st.account, st.purse).rights(d)


async def test_ops_upload_ack_float_and_online_rights(tmp_path):
    async with world(tmp_path, ["k1", "k2"]) as w:
        rec = w.cloud()
        w.store.append([Intent(Kind.INC, "m1", "cash", 10_000)], ref="topup-1")
        for d in ("k1", "k2"):
            w.kiosk(d)
        w.start_reconciler()
        w.start_agent("k1")
        w.start_agent("k2")
        await w.online("k1", "k2")
        k1 = w.ledgers["k1"]
        assert await w.agents["k1"].request_rights("m1", "cash", 300)
        k1.append([Intent(Kind.DEC, "m1", "cash", 300)], ref="tap-1")
        w.agents["k1"].notify()
        await w.settled()
        # The cloud topped k1's working float up after the spend.
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") > 0, what="float")
        assert w.agents["k1"].snapshots["m1"].values["cash"] == 10_000  # sent with the grant
        k1.append([Intent(Kind.DEC, "m1", "cash", 2_400)], ref="tap-2")
        await w.settled()
        await eventually(
            lambda: w.agents["k1"].snapshots["m1"].values["cash"] == 7_300, what="snapshot"
        )
        assert not await w.agents["k2"].request_rights("m1", "cash", 50_000)
        assert rec.refused == 0
        assert_converged(w)
