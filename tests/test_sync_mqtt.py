"""Sync against a real mosquitto with mutual TLS and the generated ACL."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from cloud_sync.settings import EscrowPolicy
from edge.ledger import Intent, Kind, SpendRefused, verify
from tests.mqtt_broker import eventually, world

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None
        and not __import__("os").path.exists("/usr/sbin/mosquitto"),
        reason="no mosquitto",
    ),
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
        # The cloud's signed value after the spend, and the kiosk's view of it, are the truth.
        # (The snapshot travels on the grants topic after the ack: it arrives, soon.)
        await eventually(
            lambda: w.agents["k1"].snapshot("m1").values["cash"] == 9_700, what="snapshot 9700"
        )
        assert w.agents["k1"].known_values("m1")[0]["cash"] == 9_700
        k1.append([Intent(Kind.DEC, "m1", "cash", 2_400)], ref="tap-2")
        await w.settled()
        await eventually(
            lambda: w.agents["k1"].snapshot("m1").values["cash"] == 7_300, what="snapshot"
        )
        assert not await w.agents["k2"].request_rights("m1", "cash", 50_000)
        assert rec.refused == 0
        assert_converged(w)


def seed(w, members=("m1", "m2"), amount=20_000, floats=("k1", "k2"), each=4_000):
    for m in members:
        w.store.append([Intent(Kind.INC, m, "cash", amount)], ref=f"topup-{m}")
        for d in floats:
            w.store.grant(m, "cash", d, each, each, ref=f"seed-{m}-{d}")


def spend(led, member, amount, ref):
    try:
        led.append([Intent(Kind.DEC, member, "cash", amount)], ref=ref)
        return True
    except SpendRefused:
        return False


async def test_broker_killed_and_restarted_mid_batch(tmp_path):
    async with world(tmp_path, ["k1", "k2"]) as w:
        w.cloud()
        for d in ("k1", "k2"):
            w.kiosk(d, batch_size=20, window=40)
        seed(w)
        w.start_reconciler()
        w.start_agent("k1")
        w.start_agent("k2")
        await w.online("k1", "k2")
        k1 = w.ledgers["k1"]
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") == 4_000, what="seed")
        for i in range(300):
            spend(k1, "m1" if i % 2 else "m2", 7, f"a{i}")
        w.agents["k1"].notify()
        await eventually(lambda: w.agents["k1"].acked > 0, what="first ack")
        w.broker.stop()  # mid-upload: some batches stored, some in flight, some unsent
        assert w.agents["k1"].acked < k1.head()[0]
        for i in range(50):
            spend(w.ledgers["k2"], "m1", 11, f"b{i}")
        await eventually(lambda: not w.agents["k1"].online, what="k1 sees the outage")
        w.broker.start()
        await w.online("k1", "k2")
        await w.settled()
        assert w.store.purse("m1", "cash").value == 20_000 - 150 * 7 - 50 * 11
        assert w.store.purse("m2", "cash").value == 20_000 - 150 * 7
        assert_converged(w)


async def test_kiosk_offline_for_a_long_time_then_reconnects(tmp_path):
    async with world(tmp_path, ["k1", "k2"]) as w:
        w.cloud()
        w.kiosk("k1")
        w.kiosk("k2")
        seed(w, each=1_000)
        w.start_reconciler()
        w.start_agent("k1")
        w.start_agent("k2")
        await w.online("k1", "k2")
        k2 = w.ledgers["k2"]
        await eventually(lambda: k2.purse("m1", "cash").rights("k2") == 1_000, what="seed")
        await w.stop_task("k2")  # the kiosk's network goes away for a long scripted period
        approved = sum(spend(k2, "m1", 3, f"off{i}") for i in range(500))
        assert approved == 333  # strict: only the rights it holds (1000 // 3)
        # Meanwhile the online kiosk keeps working and asks for more when it needs it.
        k1 = w.ledgers["k1"]
        for i in range(20):
            if not spend(k1, "m1", 100, f"on{i}"):
                assert await w.agents["k1"].request_rights("m1", "cash", 100)
                assert spend(k1, "m1", 100, f"on{i}")
        w.start_agent("k2")
        await w.online("k2")
        await w.settled()
        assert w.store.purse("m1", "cash").value == 20_000 - 333 * 3 - 2_000
        assert_converged(w)


async def test_same_batch_twice_and_out_of_order_changes_nothing_twice(tmp_path):
    import aiomqtt

    from cloud_sync.protocol import OpsUpload, Topics, encode_ops, seal

    async with world(tmp_path, ["k1"]) as w:
        rec = w.cloud()
        w.kiosk("k1")
        seed(w, floats=("k1",), each=500)
        k1 = w.ledgers["k1"]
        k1.apply_many(w.store.ops("cloud"))
        for i in range(6):
            spend(k1, "m1", 10, f"t{i}")
        ops = list(k1.ops("k1"))
        w.start_reconciler()
        await eventually(lambda: w.services[0].connected.is_set())
        t = Topics("s1", "k1")

        def up(run):
            return seal(
                OpsUpload(batch=encode_ops(run)),
                topic=t.ops,
                sender="k1",
                key=w.keys["k1"],
                ts_ms=1,
            )

        settings = w.broker.settings("k1")
        async with aiomqtt.Client(**settings.client_kwargs(), identifier="/raw-k1") as c:
            for run in (ops[3:], ops[:3], ops[:3], ops[3:], ops):
                await c.publish(t.ops, up(run), qos=1)
        await eventually(lambda: w.services[0].handled >= 5, what="5 batches handled")
        assert w.store.head("k1") == k1.head()
        assert w.store.purse("m1", "cash").value == 20_000 - 60
        assert rec.refused == 0


async def test_forged_grant_with_a_valid_tls_cert_is_refused(tmp_path):
    from cloud_sync.protocol import ChainOps, Topics, encode_ops, seal
    from edge.ledger import Ledger, generate_key

    async with world(tmp_path, ["k1"]) as w:
        w.cloud()
        ag = w.kiosk("k1")
        seed(w, floats=("k1",), each=500)
        w.start_reconciler()
        w.start_agent("k1")
        await w.online("k1")
        k1 = w.ledgers["k1"]
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") == 500, what="seed")
        streams = w.reconciler.streams
        await eventually(lambda: k1.head("cloud") == streams.head("k1"), what="stream in")
        before = (k1.heads(), k1.purse("m1", "cash"))
        # An attacker with the cloud's id but not its key mints a big grant to k1.
        rogue = Ledger(tmp_path / "rogue.db", replica="cloud", key=generate_key(), role="cloud")
        rogue.append([Intent(Kind.INC, "m1", "cash", 10**9)])
        forged_ops = list(rogue.ops("cloud"))
        t = Topics("s1", "k1")
        payload = seal(
            ChainOps(batch=encode_ops(forged_ops)),
            topic=t.grants,
            sender="cloud",
            key=generate_key(),
            ts_ms=1,
        )
        f = tmp_path / "forged.bin"
        f.write_bytes(payload)
        pki = w.broker.pki
        subprocess_args = [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(w.broker.cloud_port),  # where the reconciler certificate has its rights
            "-i",
            "/forger",
            "-q",
            "1",
            "--cafile",
            str(pki / "ca.crt"),
            "--cert",
            str(pki / "reconciler.crt"),
            "--key",
            str(pki / "reconciler.key"),
            "-t",
            t.grants,
            "-f",
            str(f),
        ]
        import subprocess

        subprocess.run(subprocess_args, check=True, timeout=10)
        await eventually(lambda: ag.refused >= 1, what="forged grant refused")
        assert (k1.heads(), k1.purse("m1", "cash")) == before
        rogue.close()


async def test_a_device_cannot_publish_on_another_devices_topic(tmp_path):
    import aiomqtt

    from cloud_sync.protocol import OpsUpload, Topics, encode_ops, seal

    async with world(tmp_path, ["k1", "k2"]) as w:
        rec = w.cloud()
        w.kiosk("k1")
        w.kiosk("k2")
        seed(w, floats=("k1", "k2"), each=500)
        k2 = w.ledgers["k2"]
        k2.apply_many(w.store.ops("cloud"))
        spend(k2, "m1", 10, "t1")
        w.start_reconciler()
        await eventually(lambda: w.services[0].connected.is_set())
        t1, t2 = Topics("s1", "k1"), Topics("s1", "k2")
        ops = list(k2.ops("k2"))
        on_k1 = seal(
            OpsUpload(batch=encode_ops(ops)), topic=t1.ops, sender="k2", key=w.keys["k2"], ts_ms=1
        )
        resealed_for_k2 = on_k1  # signed for k1's topic, published on k2's own topic
        async with aiomqtt.Client(
            **w.broker.settings("k2").client_kwargs(),
            identifier="/raw-k2",
        ) as c:
            await c.publish(t1.ops, on_k1, qos=1)  # the ACL drops it
            await c.publish(t2.ops, resealed_for_k2, qos=1)  # our signature check refuses it
        await eventually(lambda: rec.refused >= 1, what="topic-bound signature refused")
        assert w.services[0].handled == 1  # only the one on k2's own topic got through
        assert w.store.heads().get("k1", 0) == 0 and w.store.heads().get("k2", 0) == 0
        assert w.store.purse("m1", "cash").value == 20_000


async def test_lost_card_delta_reaches_an_online_kiosk(tmp_path):
    import time

    from cloud_sync.protocol import DenyEntry

    async with world(tmp_path, ["k1", "k2"]) as w:
        rec = w.cloud()
        ag1, ag2 = w.kiosk("k1"), w.kiosk("k2")
        seen = []
        ag1.on_deny(seen.append)
        w.start_reconciler()
        w.start_agent("k1")
        await w.online("k1")
        t0 = time.monotonic()
        await w.services[0].publish(
            [rec.deny_delta("s1", [DenyEntry(token="tokA", status="lost")])]
        )
        await eventually(lambda: ag1.denied("tokA") == "lost", what="delta at k1")
        latency = time.monotonic() - t0
        print(f"deny-list delta latency {latency * 1000:.1f} ms")
        assert [d.version for d in seen] == [1]
        await w.services[0].publish(
            [rec.deny_delta("s1", [DenyEntry(token="tokB", status="frozen")])]
        )
        # A kiosk that was offline catches up from the retained head and the gap request.
        w.start_agent("k2")
        await w.online("k2")
        await eventually(
            lambda: ag2.denied("tokB") == "frozen" and ag2.denied("tokA") == "lost",
            what="k2 caught up",
        )
        assert ag2.denylist.version == 2
        await eventually(lambda: ag1.denylist.version == 2)
        assert len(seen) == 2


async def test_restored_kiosk_refuses_to_spend_until_it_recovers_its_chain(tmp_path):
    from edge.ledger import Ledger, Refusal

    async with world(tmp_path, ["k1"]) as w:
        w.cloud(escrow=EscrowPolicy(float_fraction=0.0))
        w.kiosk("k1")
        seed(w, floats=("k1",), each=1_000)
        w.start_reconciler()
        w.start_agent("k1")
        await w.online("k1")
        k1 = w.ledgers["k1"]
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") == 1_000, what="seed")
        spend(k1, "m1", 100, "t1")
        await w.settled()
        await w.stop_task("k1")
        k1.checkpoint()
        image = tmp_path / "k1-image.db"
        shutil.copy(tmp_path / "k1.db", image)
        for i in range(5):
            spend(k1, "m1", 100, f"t{i + 2}")
        w.start_agent("k1")
        await w.settled()
        await w.stop_task("k1")
        await w.agents["k1"].__aexit__(None, None, None)
        k1.close()
        shutil.copy(image, tmp_path / "k1.db")  # the SD card restored from the old image
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"k1.db{suffix}").unlink(missing_ok=True)
        restored = Ledger(tmp_path / "k1.db", replica="k1", key=w.keys["k1"])
        w.ledgers["k1"] = restored
        from cloud_sync.agent import SyncAgent

        agent = SyncAgent(restored, w.agents["k1"].settings, key=w.keys["k1"])
        w.agents["k1"] = agent
        assert restored.purse("m1", "cash").rights("k1") == 900  # what the old image believes
        w.start_agent("k1")
        await eventually(
            lambda: agent.acked == restored.head()[0] == 6 and not agent.recovering,
            what="recovered",
        )
        assert restored.purse("m1", "cash").rights("k1") == 400
        with pytest.raises(SpendRefused) as refused:
            restored.append([Intent(Kind.DEC, "m1", "cash", 500)], ref="t99")
        assert refused.value.reason is Refusal.INSUFFICIENT_RIGHTS
        assert spend(restored, "m1", 400, "t100")
        await w.settled()
        assert w.store.purse("m1", "cash").value == 20_000 - 1_000
        assert_converged(w)


async def test_each_op_is_uploaded_once_after_an_idle_spell(tmp_path, caplog):
    async with world(tmp_path, ["k1"]) as w:
        w.cloud()
        w.kiosk("k1")
        seed(w, floats=("k1",), each=4_000)
        w.start_reconciler()
        w.start_agent("k1")
        await w.online("k1")
        k1 = w.ledgers["k1"]
        await eventually(lambda: k1.purse("m1", "cash").rights("k1") == 4_000, what="seed")
        await asyncio.sleep(1.5)  # idle for longer than the ack timeout (1 s)
        caplog.clear()
        for i in range(3):
            k1.append([Intent(Kind.DEC, "m1", "cash", 100)], ref=f"tap-{i}")
            w.agents["k1"].notify()
            await w.settled()
            await asyncio.sleep(1.2)
        assert not [r for r in caplog.records if "resending" in r.getMessage()]
        assert w.store.purse("m1", "cash").value == 20_000 - 300
