"""The idle-rights sweep recalls every idle purse of a kiosk, not one per sweep."""

from __future__ import annotations

from cloud_sync.agent import SyncAgent
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import AgentSettings, EscrowPolicy
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes


def test_one_sweep_recalls_every_idle_purse_of_a_kiosk(tmp_path):
    now = [1_000_000]
    cloud_key, kiosk_key = generate_key(), generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=cloud_key)
    store.ledger.clock = store.ledger.clock.__class__(wall_ms=lambda: now[0])
    store.trust("k1", public_bytes(kiosk_key), "kiosk")
    store.enroll("k1", "s1")
    for m in ("m1", "m2", "m3"):
        store.append([Intent(Kind.INC, m, "cash", 1_000)], ref=f"topup-{m}")
        store.grant(m, "cash", "k1", 400, 400, ref=f"float-{m}")
    led = Ledger(tmp_path / "k1.db", replica="k1", key=kiosk_key)
    led.trust("cloud", public_bytes(cloud_key), "cloud")
    led.apply_many(store.ops("cloud"))
    agent = SyncAgent(led, AgentSettings(site="s1", device="k1"), key=kiosk_key)
    rec = Reconciler(store, cloud_key, escrow=EscrowPolicy(idle_recall_s=60), clock=lambda: now[0])
    now[0] += 120_000
    outs = rec.sweep()
    assert len(outs) == 3
    for o in outs:
        agent.handle(o.topic, o.payload)
    assert agent.refused == 0
    assert [led.purse(m, "cash").rights("k1") for m in ("m1", "m2", "m3")] == [0, 0, 0]
    store.ingest(list(led.ops("k1")))
    assert [store.purse(m, "cash").rights("cloud") for m in ("m1", "m2", "m3")] == [1_000] * 3
    store.close()
    led.close()


def test_an_idle_recall_leaves_a_standing_float_at_the_members_usual_venue(tmp_path):
    from cloud_sync.protocol import Recall, open_envelope
    from cloud_sync.streams import HOME
    from edge.ledger import records as rec

    now = [1_000_000]
    cloud_key = generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=cloud_key)
    store.ledger.clock = store.ledger.clock.__class__(wall_ms=lambda: now[0])
    for device, site in (("k1", "s1"), ("k2", "s2")):
        store.trust(device, public_bytes(generate_key()), "kiosk")
        store.enroll(device, site)
    store.append(rec.register_writes("m1", 1, **{HOME: "s1"}))
    store.append([Intent(Kind.INC, "m1", "cash", 10_000)], ref="topup")
    store.grant("m1", "cash", "k1", 4_000, 4_000, ref="float-k1")
    store.grant("m1", "cash", "k2", 4_000, 4_000, ref="float-k2")
    escrow = EscrowPolicy(idle_recall_s=60, standing={"cash": 3_000})
    reconciler = Reconciler(store, cloud_key, escrow=escrow, clock=lambda: now[0])
    reconciler.route()  # the reconciler learns m1's home
    now[0] += 120_000
    recalled = {}
    for o in reconciler.sweep():
        device = o.topic.split("/")[3]
        opened = open_envelope(
            o.payload, topic=o.topic, keys=lambda s: cloud_key.public_key(), allowed=(Recall,)
        )
        assert isinstance(opened.message, Recall)
        recalled[device] = opened.message.amount
    # At home 3000 stay for an outage; at the other venue everything idle comes back.
    assert recalled == {"k1": 1_000, "k2": 4_000}
    store.close()
