"""A forked kiosk's set-aside branch at the cloud (the reconciler over a real SQLite store, no
broker): checked as the kiosk's own signed chain forking from the one the cloud kept, each
purse's overspend recorded as debt bounded by the rights the kiosk held, once however often
it is uploaded; and what is not a fork, or not the kiosk's, is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cloud_sync.alerts import KioskView, kiosk_alerts
from cloud_sync.protocol import Answer, ForkOps, Topics, encode_ops, open_envelope, seal
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import AlertSettings
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Intent, Kind, Ledger, RiskLimit, RiskPolicy, generate_key, public_bytes
from edge.ledger.chain import ForkDebt, fork_debts, rights_at_fork
from edge.ledger.op import Op

T = Topics("s1", "k1")


class Fleet:
    """The cloud, and kiosk k1 whose ledger file was copied (an SD card image) once it held
    3000 of member m1's 10000: the original and the copy then write two branches."""

    def __init__(self, root: Path) -> None:
        self.cloud_key, self.key = generate_key(), generate_key()
        self.store = SqliteCloudStore(root / "cloud.db", replica="cloud", key=self.cloud_key)
        self.store.trust("k1", public_bytes(self.key), "kiosk")
        self.store.enroll("k1", "s1")
        self.store.append([Intent(Kind.INC, "m1", "cash", 10_000)], ref="topup")
        self.store.append([Intent(Kind.XFER, "m1", "cash", 3_000, counterpart="k1")])
        self.rec = Reconciler(self.store, self.cloud_key)
        self.kept = self._ledger(root / "k1.db")
        self.kept.apply_many(self.store.ops("cloud"))
        self.kept.checkpoint()
        shutil.copy(root / "k1.db", root / "image.db")
        self.image = self._ledger(root / "image.db", RiskPolicy({"cash": RiskLimit(5000, 5000)}))

    def _ledger(self, path: Path, risk: RiskPolicy | None = None) -> Ledger:
        led = Ledger(path, replica="k1", key=self.key, risk=risk or RiskPolicy())
        led.trust("cloud", public_bytes(self.cloud_key), "cloud")
        return led

    def spend(self, led: Ledger, amount: int, tap: str) -> None:
        led.append([Intent(Kind.DEC, "m1", "cash", amount)], ref=tap)

    def upload_kept(self) -> None:
        assert self.store.ingest(list(self.kept.ops("k1")))["refused"] == 0

    def branch(self) -> list[Op]:
        return list(self.image.ops("k1"))

    def report(self, fork_seq: int, ops: list[Op], key: object = None) -> Answer:
        msg = ForkOps(id="f1", fork_seq=fork_seq, batch=encode_ops(ops))
        signer = key or self.key
        payload = seal(msg, topic=T.rpc_req, sender="k1", key=signer, ts_ms=self.rec.clock())
        (out,) = self.rec.handle(T.rpc_req, payload)
        keys = {"cloud": self.store.public_key("cloud")}
        opened = open_envelope(out.payload, topic=out.topic, keys=keys.get, allowed=[Answer])
        assert isinstance(opened.message, Answer)
        return opened.message

    def close(self) -> None:
        self.kept.close()
        self.image.close()
        self.store.close()


@pytest.fixture
def fleet(tmp_path: Path):
    f = Fleet(tmp_path)
    yield f
    f.close()


def test_the_branch_spend_is_recorded_as_debt_once_however_often_it_is_uploaded(fleet):
    fleet.spend(fleet.kept, 1000, "tap-a")  # the branch the cloud keeps: #1
    fleet.upload_kept()
    fleet.spend(fleet.image, 1500, "tap-b")  # the restored copy, offline: another #1, and #2
    fleet.spend(fleet.image, 500, "tap-c")
    answer = fleet.report(1, fleet.branch())
    assert answer.ok and answer.granted == 2
    (row,) = fleet.store.fork_debts("k1")
    assert (row.fork_seq, row.debt) == (1, ForkDebt("m1", "cash", 2000, 3000, 2000))
    again = fleet.report(1, fleet.branch())  # a resend (a lost answer, a restart)
    assert again.ok and again.granted == 2
    assert fleet.store.fork_debts("k1") == [row]
    view = KioskView(fleet.store.device("k1"), None, tuple(fleet.store.fork_debts("k1")))
    assert "2000 owed" in (kiosk_alerts(view, 0, AlertSettings())["fork_debt"] or "")


def test_a_branch_reported_in_parts_adds_up_and_a_part_out_of_order_is_refused(fleet):
    fleet.spend(fleet.kept, 1000, "tap-a")
    fleet.upload_kept()
    for i in range(3):
        fleet.spend(fleet.image, 700, f"tap-{i}")
    ops = fleet.branch()
    assert not fleet.report(1, ops[1:2]).ok  # does not start at the fork
    assert fleet.report(1, ops[:1]).granted == 1
    assert not fleet.report(1, ops[2:]).ok  # skips #2
    assert fleet.report(1, ops[1:]).granted == 3
    (row,) = fleet.store.fork_debts("k1")
    assert row.debt == ForkDebt("m1", "cash", 2100, 3000, 2100)


def test_debt_is_bounded_by_the_rights_the_kiosk_held(fleet):
    fleet.spend(fleet.kept, 1000, "tap-a")
    fleet.upload_kept()
    fleet.spend(fleet.image, 3000, "tap-b")  # all it held
    fleet.spend(fleet.image, 2000, "tap-c")  # offline risk allowance: beyond its rights
    assert fleet.report(1, fleet.branch()).ok
    (row,) = fleet.store.fork_debts("k1")
    assert row.debt == ForkDebt("m1", "cash", 5000, 3000, 3000)
    assert row.debt.beyond == 2000
    view = KioskView(fleet.store.device("k1"), None, (row,))
    assert "beyond the rights it held" in (
        kiosk_alerts(view, 0, AlertSettings())["fork_debt"] or ""
    )


def test_what_is_not_a_fork_or_not_the_kiosks_is_refused(fleet):
    fleet.spend(fleet.kept, 1000, "tap-a")
    fleet.upload_kept()
    kept = list(fleet.kept.ops("k1"))
    assert not fleet.report(1, kept).ok  # the op the cloud stored: no fork
    fleet.spend(fleet.image, 1500, "tap-b")
    forged = [o.signed(generate_key()) for o in fleet.branch()]
    assert not fleet.report(1, forged).ok  # not signed by the kiosk
    assert fleet.store.fork_debts() == []
    assert fleet.store.flags()["k1"].refused == 2


def test_the_same_tap_on_both_branches_is_spent_once():
    """Pure rule: a branch op the kept chain also holds (same tap) is no overspend."""
    key = generate_key()
    tap = Op("k1", 1, 1, 1, Kind.DEC, "m1", "cash", 400, "", "tap-a", "", bytes(32)).signed(key)
    other = Op("k1", 2, 1, 1, Kind.DEC, "m1", "cash", 600, "", "tap-b", "", tap.hash()).signed(key)
    (debt,) = fork_debts([tap, other], kept=[tap], held={("m1", "cash"): 5000})
    assert debt == ForkDebt("m1", "cash", 600, 5000, 600)
    assert rights_at_fork(4000, "k1", [tap]) == 4400  # the kept spend undone
