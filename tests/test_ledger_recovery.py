"""Recovery of a kiosk's own chain (DESIGN.md section 4 trap 2), batch apply in one commit."""

from __future__ import annotations

import shutil

import msgspec
import pytest

from edge.ledger import Intent, Kind, Ledger, Refusal, SpendRefused, public_bytes


def test_a_restored_kiosk_refuses_to_write_until_its_chain_is_recovered(cloud_and_kiosks, fleet):
    cloud, k1, _ = cloud_and_kiosks()
    (grant,) = cloud.append([Intent(Kind.INC, "m1", "cash", 500)])
    cloud.append([Intent(Kind.XFER, "m1", "cash", 300, counterpart="k1")])
    k1.apply_many(list(cloud.ops("cloud")))
    k1.append([Intent(Kind.DEC, "m1", "cash", 100)], ref="t1")
    image = fleet.root / "k1-image.db"
    k1.checkpoint()
    shutil.copy(fleet.root / "k1.db", image)  # the SD card image taken here
    k1.append([Intent(Kind.DEC, "m1", "cash", 150)], ref="t2")
    cloud.apply_many(list(k1.ops("k1")))
    acked = cloud.head("k1")[0]
    k1.close()

    restored = Ledger(image, replica="k1", key=fleet.keys["k1"])
    assert restored.head()[0] < acked
    restored.hold_until(acked)
    assert restored.recovering == acked
    with pytest.raises(SpendRefused) as refused:
        restored.append([Intent(Kind.DEC, "m1", "cash", 150)], ref="t3")
    assert refused.value.reason is Refusal.CHAIN_BEHIND
    # The cloud sends back our own ops; once applied, the rights already spent are gone.
    counts = restored.apply_many(list(cloud.ops("k1", after_seq=restored.head()[0])))
    assert counts["applied"] == 1
    assert restored.recovering == 0
    assert restored.purse("m1", "cash").rights("k1") == 50
    with pytest.raises(SpendRefused) as short:
        restored.append([Intent(Kind.DEC, "m1", "cash", 150)], ref="t3")
    assert short.value.reason is Refusal.INSUFFICIENT_RIGHTS
    restored.hold_until(1)  # a lower hold never lowers the stored one
    assert restored.recovering == 0
    restored.close()


def test_the_hold_survives_a_restart(fleet):
    k1 = fleet.add("k1")
    k1.hold_until(3)
    k1.close()
    again = Ledger(fleet.root / "k1.db", replica="k1", key=fleet.keys["k1"])
    assert again.recovering == 3
    with pytest.raises(SpendRefused):
        again.append([Intent(Kind.INC, "m1", "cash", 1)])
    again.close()


def test_apply_many_in_one_commit_still_refuses_only_the_bad_op(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    k1.append([Intent(Kind.INC, "m1", "cash", 1000)])
    for i in range(4):
        k1.append([Intent(Kind.DEC, "m1", "cash", 10)], ref=f"t{i}")
    ops = list(k1.ops("k1"))
    unlinked = msgspec.structs.replace(ops[2], prev=bytes(32))
    counts = cloud.apply_many([ops[0], ops[1], unlinked, ops[4], ops[0]])
    assert counts == {"applied": 2, "duplicate": 1, "pending": 1, "refused": 1}
    assert cloud.heads()["k1"] == 2
    # applied: the batch's two ops and the held op 5 they let through
    assert cloud.apply_many(ops[2:4]) == {"applied": 3, "duplicate": 0, "pending": 0, "refused": 0}
    assert cloud.pending_count() == 0
    assert cloud.heads()["k1"] == 5
    assert cloud.purse("m1", "cash").value == 960


def test_ops_after_a_seq_with_a_limit(fleet):
    k1 = fleet.add("k1")
    for i in range(5):
        k1.append([Intent(Kind.INC, "m1", "cash", 1)], ref=f"r{i}")
    assert [o.seq for o in k1.ops("k1", after_seq=1, limit=2)] == [2, 3]
    assert [o.seq for o in k1.ops("k1", after_seq=3)] == [4, 5]


def test_a_kiosk_applies_the_clouds_grant_to_a_kiosk_it_does_not_know(fleet):
    cloud = fleet.add("cloud", "cloud")
    k1 = fleet.add("k1")
    fleet.add("k2")
    k1_alone = Ledger(fleet.root / "k1b.db", replica="k1b", key=fleet.keys["k1"])
    k1_alone.trust("cloud", public_bytes(fleet.keys["cloud"]), "cloud")
    cloud.append([Intent(Kind.INC, "m1", "cash", 100)])
    cloud.append([Intent(Kind.XFER, "m1", "cash", 60, counterpart="k2")])
    counts = k1_alone.apply_many(list(cloud.ops("cloud")))
    assert counts["applied"] == 2
    assert k1_alone.purse("m1", "cash").rights("k2") == 60
    assert k1.apply_many(list(cloud.ops("cloud")))["applied"] == 2
    k1_alone.close()
