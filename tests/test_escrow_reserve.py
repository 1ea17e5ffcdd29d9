"""The escrow reserve (docs/escrow-policy.md): rights placed at kiosks beyond what a tap asks
never leave the cloud with less than the reserve free, idle recalls take standing floats back
when the cloud is short, and a spend elsewhere that leaves the cloud short moves rights back
from the online kiosks holding them."""

from __future__ import annotations

from cloud_sync import escrow
from cloud_sync.protocol import (
    ChainOps,
    OpsUpload,
    Recall,
    Snapshot,
    Topics,
    encode_ops,
    open_envelope,
    seal,
)
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import EscrowPolicy
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.ledger.purse import PurseState, Share

POLICY = EscrowPolicy(standing={"cash": 1500}, reserve={"cash": 5000}, float_fraction=0.5)


def purse(cloud: int, **kiosks: int) -> PurseState:
    """A cash purse credited at the cloud and moved to kiosks (`cloud` stays there)."""
    total = cloud + sum(kiosks.values())
    shares = [Share("cloud", inc=total, xout=sum(kiosks.values()))]
    shares += [Share(k, xin=v) for k, v in kiosks.items()]
    return PurseState("m1", "cash", tuple(shares), cloud="cloud")


def test_a_standing_float_is_placed_only_while_the_reserve_stays_free():
    assert escrow.standing_grant(purse(6_500), "g1", POLICY, 6_500) == 1_500
    assert escrow.standing_grant(purse(6_499), "g1", POLICY, 6_499) == 0  # all or nothing
    assert escrow.standing_grant(purse(5_000, g1=1_500), "g1", POLICY, 5_000) == 0  # has it


def test_floats_and_headroom_stay_within_the_spare():
    state = purse(8_000)
    # Half the pool would be 4000: only 3000 may go, the cloud keeps 5000.
    assert escrow.float_top_up(state, "g1", "cloud", POLICY) == 3_000
    # A request for 1500 gets it, and 1500 more at most.
    assert escrow.headroom(state, "g1", "cloud", POLICY, 1_500) == 1_500
    assert escrow.headroom(purse(5_500), "g1", "cloud", POLICY, 1_500) == 0


def test_an_idle_recall_takes_a_standing_float_back_when_the_cloud_is_short():
    state = purse(3_000, g1=1_500, g2=1_500, p1=400)
    idle = [escrow.Idle("g1", 1_500, True), escrow.Idle("g2", 1_500, True)]
    idle.append(escrow.Idle("p1", 400, False))
    # p1's 400 first (not at home), then 1600 more of the standing floats: 5000 free again.
    assert escrow.idle_recalls(state, idle, "cloud", POLICY) == {"p1": 400, "g1": 1_500, "g2": 100}
    rich = purse(9_000, g1=1_500)
    assert escrow.idle_recalls(rich, [escrow.Idle("g1", 1_500, True)], "cloud", POLICY) == {}


def test_a_spend_elsewhere_that_leaves_the_cloud_short_recalls_from_online_holders(tmp_path):
    now = [1_000_000]
    cloud_key, k2_key = generate_key(), generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=cloud_key)
    store.ledger.clock = store.ledger.clock.__class__(wall_ms=lambda: now[0])
    for device, site, key in (("k1", "s1", generate_key()), ("k2", "s2", k2_key)):
        store.trust(device, public_bytes(key), "kiosk")
        store.enroll(device, site)
        store.seen(device, online=True, last_seen_ms=now[0])
    store.append([Intent(Kind.INC, "m1", "cash", 7_000)], ref="topup")
    store.grant("m1", "cash", "k1", 1_500, 1_500, ref="standing-k1")  # 5500 free
    k2 = Ledger(tmp_path / "k2.db", replica="k2", key=k2_key)
    k2.trust("cloud", public_bytes(cloud_key), "cloud")
    k2.apply_many(store.ops("cloud"))
    store.grant("m1", "cash", "k2", 2_000, 2_000, ref="rq-k2")
    k2.apply_many(store.ops("cloud", k2.head("cloud")[0]))
    k2.append([Intent(Kind.DEC, "m1", "cash", 2_000)], ref="tap-1")  # 3500 free at the cloud
    reconciler = Reconciler(store, cloud_key, escrow=POLICY, clock=lambda: now[0])
    t = Topics("s2", "k2")
    payload = seal(
        OpsUpload(batch=encode_ops(list(k2.ops("k2")))),
        topic=t.ops,
        sender="k2",
        key=k2_key,
        ts_ms=now[0],
    )
    recalls = {}
    for o in reconciler.handle(t.ops, payload):
        if o.topic == Topics("s1", "k1").grants:
            opened = open_envelope(
                o.payload,
                topic=o.topic,
                keys=lambda s: cloud_key.public_key(),
                allowed=(Recall, Snapshot, ChainOps),
            )
            if isinstance(opened.message, Recall):
                recalls[opened.message.account] = opened.message.amount
    assert store.purse("m1", "cash").value == 5_000
    assert recalls == {"m1": 1_500}  # all of k1's float, the cloud is still short of 5000
    store.close()
    k2.close()
