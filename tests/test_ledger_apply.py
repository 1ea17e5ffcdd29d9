"""Remote ops: idempotent apply, gap buffering, and refusal of forged or conflicting ops."""

from __future__ import annotations

import msgspec
import pytest

from edge.ledger import (
    Intent,
    Kind,
    Ledger,
    OpRefused,
    SpendRefused,
    generate_key,
    public_bytes,
)


def kiosk_history(k1, n=5):
    k1.append([Intent(Kind.INC, "m1", "cash", 1000)])
    for i in range(n - 1):
        k1.append([Intent(Kind.DEC, "m1", "cash", 10)], ref=f"t{i}")
    return list(k1.ops("k1"))


def test_apply_twice_is_a_duplicate_and_changes_nothing(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    ops = kiosk_history(k1)
    assert [cloud.apply(o) for o in ops] == ["applied"] * 5
    assert [cloud.apply(o) for o in ops] == ["duplicate"] * 5
    assert cloud.purse("m1", "cash").value == 960
    assert cloud.heads()["k1"] == 5


def test_op_after_a_gap_waits_and_is_applied_when_the_gap_fills(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    ops = kiosk_history(k1)
    assert cloud.apply(ops[0]) == "applied"
    assert cloud.apply(ops[3]) == "pending"
    assert cloud.apply(ops[2]) == "pending"
    assert cloud.purse("m1", "cash").value == 1000
    assert cloud.pending_count() == 2
    assert cloud.apply(ops[1]) == "applied"
    assert cloud.heads()["k1"] == 4
    assert cloud.pending_count() == 0
    assert cloud.purse("m1", "cash").value == 970


def test_forged_signature_is_refused(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    (op,) = kiosk_history(k1, 1)
    forged = msgspec.structs.replace(op, amount=999_999)
    with pytest.raises(OpRefused, match="bad signature"):
        cloud.apply(forged)
    assert cloud.heads() == {}


def test_op_signed_by_an_untrusted_key_is_refused(cloud_and_kiosks, tmp_path):
    cloud, _, _ = cloud_and_kiosks()
    rogue = Ledger(tmp_path / "rogue.db", replica="k1", key=generate_key())
    (op,) = rogue.append([Intent(Kind.INC, "m1", "cash", 10**6)])
    with pytest.raises(OpRefused, match="bad signature"):
        cloud.apply(op)
    stranger = Ledger(tmp_path / "stranger.db", replica="k9", key=generate_key())
    (op9,) = stranger.append([Intent(Kind.INC, "m1", "cash", 5)])
    with pytest.raises(OpRefused, match="unknown replica"):
        cloud.apply(op9)
    rogue.close()
    stranger.close()


def test_conflicting_history_for_a_stored_seq_is_refused(cloud_and_kiosks, fleet, tmp_path):
    cloud, k1, _ = cloud_and_kiosks()
    ops = kiosk_history(k1, 2)
    cloud.apply(ops[0])
    # Same key, same seq, different content: a kiosk restored from an old image equivocating.
    twin = Ledger(tmp_path / "twin.db", replica="k1", key=fleet.keys["k1"])
    (alt,) = twin.append([Intent(Kind.INC, "m1", "cash", 7)])
    with pytest.raises(OpRefused, match="conflicts"):
        cloud.apply(alt)
    twin.close()


def test_op_that_does_not_link_to_its_predecessor_is_refused(cloud_and_kiosks, fleet):
    cloud, k1, _ = cloud_and_kiosks()
    ops = kiosk_history(k1, 2)
    cloud.apply(ops[0])
    unlinked = msgspec.structs.replace(ops[1], prev=bytes(32)).signed(fleet.keys["k1"])
    with pytest.raises(OpRefused, match="does not link"):
        cloud.apply(unlinked)
    assert cloud.heads()["k1"] == 1


def test_apply_many_counts_and_logs_refusals(cloud_and_kiosks, caplog):
    cloud, k1, _ = cloud_and_kiosks()
    ops = kiosk_history(k1, 3)
    bad = msgspec.structs.replace(ops[2], amount=1)
    counts = cloud.apply_many([ops[0], ops[0], bad, ops[1]])
    assert counts == {"applied": 2, "duplicate": 1, "pending": 0, "refused": 1}
    assert "k1#3 refused: bad signature" in caplog.text


def test_a_kiosk_applies_cloud_transfers_to_kiosks_it_does_not_know(fleet):
    cloud = fleet.add("cloud", "cloud")
    k1 = fleet.add("k1")
    cloud.append([Intent(Kind.INC, "m1", "cash", 100)])
    # k2 is enrolled with the cloud only: k1 has never heard of it.
    cloud.trust("k2", public_bytes(generate_key()), "kiosk")
    cloud.append([Intent(Kind.XFER, "m1", "cash", 40, counterpart="k2")])
    counts = k1.apply_many(list(cloud.ops("cloud")))
    assert counts == {"applied": 2, "duplicate": 0, "pending": 0, "refused": 0}
    assert k1.purse("m1", "cash").rights("k2") == 40
    # but a kiosk's own transfer to anything but the cloud is still refused
    with pytest.raises(SpendRefused):
        k1.append([Intent(Kind.XFER, "m1", "cash", 10, counterpart="k3")])
