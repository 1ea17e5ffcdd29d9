"""Trust per device (issue 12 item 2), attacked as a thief with one kiosk's keys would: on the real
broker, reconciler service and sync agents, and on the reconciler's message handling with
sealed messages. What a stolen kiosk can cost: the rights it held, plus its bounded credits."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiomqtt
import pytest

from cloud_sync import ca, trust
from cloud_sync.protocol import OpsUpload, RightsRequest, Topics, encode_ops, seal
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import TrustPolicy
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.ledger.chain import MAX_AMOUNT
from edge.ledger.errors import OpRefused
from edge.ledger.op import Op
from tests.mqtt_broker import eventually, world

# -- on the real broker ------------------------------------------------------------------------


async def test_a_stolen_gate_cannot_mint_money_and_honest_kiosks_are_never_granted_it(tmp_path):
    async with world(tmp_path, ["g1", "g2"]) as w:
        w.cloud()
        assert w.store is not None
        w.store.append([Intent(Kind.INC, "m1", "cash", 1_000)], ref="counter-1")
        w.start_reconciler()
        w.kiosk("g1", role="gate")
        w.kiosk("g2", role="gate")
        # The thief's code on g1's SD card: credit a million and hand it to the cloud.
        w.ledgers["g1"].append(
            [
                Intent(Kind.INC, "m1", "cash", 1_000_000),
                Intent(Kind.XFER, "m1", "cash", 1_000_000, counterpart="cloud"),
            ],
            ref="forged",
        )
        w.ledgers["g1"].append([Intent(Kind.INC, "m1", "points", 50)], ref="later")
        w.start_agent("g1")
        w.start_agent("g2")
        await w.online("g1", "g2")
        store = w.store
        await eventually(lambda: len(store.held("g1")) == 3, what="the forged ops held for review")
        dev = store.device("g1")
        assert dev is not None and dev.trust == "quarantined"
        assert "gate kiosk never credits cash" in dev.trust_reason
        assert store.purse("m1", "cash").value == 1_000
        assert store.head("g1")[0] == 0
        # The honest gate is granted what is really there, never the forged million.
        assert not await w.agents["g2"].request_rights("m1", "cash", 5_000)
        assert await w.agents["g2"].request_rights("m1", "cash", 500)
        # The quarantined kiosk gets no more rights at all.
        assert not await w.agents["g1"].request_rights("m1", "cash", 100)
        assert store.purse("m1", "cash").rights("g1") == 0


async def test_a_revoked_certificate_cannot_connect_to_the_generated_broker(tmp_path):
    async with world(tmp_path, ["k1", "k2"]) as w:
        pki = w.broker.pki
        assert "crlfile" in w.broker.conf.read_text()
        assert await _connects(w.broker.settings("k1"))
        assert ca.revoke(pki, "k1") == 1
        assert ca.revoke(pki, "k1") == 0  # once
        with pytest.raises(Exception, match="cloud's own"):
            ca.revoke(pki, ca.RECONCILER)
        w.broker.stop()
        w.broker.start()  # mosquitto reads its CRL at start (and on reload)
        assert not await _connects(w.broker.settings("k1"))
        assert await _connects(w.broker.settings("k2"))
        assert await _connects(w.broker.settings(ca.RECONCILER))


async def _connects(settings: object) -> bool:
    try:
        async with asyncio.timeout(5):
            async with aiomqtt.Client(
                identifier=f"/probe-{id(settings)}",
                **settings.client_kwargs(),  # type: ignore[attr-defined]
            ) as client:
                await client.publish("kiosk/v1/probe", b"x", qos=0)
    except (aiomqtt.MqttError, ssl.SSLError, OSError, TimeoutError):
        return False
    return True


# -- the reconciler's handling, with sealed messages ---------------------------------------------


class Site:
    """A cloud store and reconciler, and kiosk ledgers whose ops are uploaded as sealed
    messages (what the broker would deliver)."""

    def __init__(self, root: Path, policy: TrustPolicy | None = None) -> None:
        self.now = 1_700_000_000_000
        self.cloud_key = generate_key()
        self.store = SqliteCloudStore(root / "cloud.db", replica="cloud", key=self.cloud_key)
        self.rec = Reconciler(self.store, self.cloud_key, trust=policy, clock=lambda: self.now)
        self.root = root
        self.keys: dict[str, object] = {}
        self.ledgers: dict[str, Ledger] = {}
        self.sent: dict[str, int] = {}

    def kiosk(self, name: str, role: str) -> Ledger:
        key = generate_key()
        self.keys[name] = key
        self.store.trust(name, public_bytes(key), "kiosk")
        self.store.enroll(name, "s1", role)
        led = Ledger(self.root / f"{name}.db", replica=name, key=key, durable=False)
        led.trust("cloud", public_bytes(self.cloud_key), "cloud")
        self.ledgers[name] = led
        self.sent[name] = 0
        return led

    def upload(self, name: str) -> None:
        ops = list(self.ledgers[name].ops(name, self.sent[name]))
        self.sent[name] = ops[-1].seq
        topic = Topics("s1", name).ops
        msg = OpsUpload(batch=encode_ops(ops))
        payload = seal(msg, topic=topic, sender=name, key=self.keys[name], ts_ms=self.now)
        self.rec.handle(topic, payload)

    def forge(self, name: str, **fields: object) -> Op:
        """A signed op appended to the kiosk's chain behind its ledger's back (stolen key)."""
        led = self.ledgers[name]
        seq, prev = led.head()
        base = {
            "replica": name,
            "seq": seq + 1,
            "wall_ms": self.now,
            "mono_ms": 0,
            "kind": Kind.SET,
            "account": "",
            "purse": "",
            "amount": 0,
            "counterpart": "",
            "ref": "",
            "data": "",
            "prev": prev,
        }
        op = Op(**{**base, **fields}).signed(self.keys[name])  # type: ignore[arg-type]
        return op

    def close(self) -> None:
        for led in self.ledgers.values():
            led.close()
        self.store.close()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path, TrustPolicy(credit_per_op=5_000, credit_per_day=12_000))
    yield s
    s.close()


def test_a_topup_kiosk_credits_within_its_bounds_and_above_them_waits_for_review(site):
    t1 = site.kiosk("t1", "topup")
    t1.append([Intent(Kind.INC, "m1", "cash", 5_000)], ref="coin-1")  # at the per-op bound
    t1.append([Intent(Kind.INC, "m1", "cash", 5_000)], ref="coin-2")
    site.upload("t1")
    assert site.store.purse("m1", "cash").value == 10_000
    t1.append([Intent(Kind.INC, "m1", "cash", 5_001)], ref="coin-3")  # above one op's bound
    site.upload("t1")
    assert site.store.purse("m1", "cash").value == 10_000
    dev = site.store.device("t1")
    assert dev is not None and dev.trust == "quarantined" and "per-op bound" in dev.trust_reason
    # An operator reviews and releases: the held op is applied, the kiosk trusted again.
    assert trust.release(site.store, "t1", site.now)["applied"] == 1
    assert site.store.purse("m1", "cash").value == 15_001
    assert site.store.device("t1").trust == "ok"  # type: ignore[union-attr]
    # The day's bound counts every credit of the cloud's day: 15,001 > 12,000 already.
    t1.append([Intent(Kind.INC, "m1", "cash", 100)], ref="coin-4")
    site.upload("t1")
    assert site.store.device("t1").trust == "quarantined"  # type: ignore[union-attr]
    assert "day's bound" in site.store.held("t1")[0].reason
    site.now += 86_400_000  # the next day starts from 0
    trust.release(site.store, "t1", site.now)
    t1.append([Intent(Kind.INC, "m1", "cash", 4_000)], ref="coin-5")
    site.upload("t1")
    assert site.store.device("t1").trust == "ok"  # type: ignore[union-attr]
    assert site.store.purse("m1", "cash").value == 15_001 + 100 + 4_000


def test_a_gate_accrues_points_only_within_what_the_tap_paid(site):
    g1 = site.kiosk("g1", "gate")
    site.store.append([Intent(Kind.INC, "m1", "cash", 5_000)], ref="counter")
    site.store.grant("m1", "cash", "g1", 5_000, 5_000, "float")
    g1.apply_many(site.store.ops("cloud"))
    g1.append(
        [Intent(Kind.DEC, "m1", "cash", 2_500), Intent(Kind.INC, "m1", "points", 25)], ref="tap1"
    )
    site.upload("g1")
    assert site.store.purse("m1", "points").value == 25
    g1.append(
        [Intent(Kind.DEC, "m1", "cash", 100), Intent(Kind.INC, "m1", "points", 10_000)],
        ref="tap2",
    )
    site.upload("g1")
    assert site.store.purse("m1", "points").value == 25
    assert site.store.purse("m1", "cash").value == 2_400  # the debit before it stands
    assert "points for a purchase of 100" in site.store.held("g1")[0].reason


def test_a_kiosk_debit_beyond_the_rights_it_held_is_held(site):
    g1 = site.kiosk("g1", "gate")
    site.store.append([Intent(Kind.INC, "m1", "cash", 1_000)], ref="counter")
    # A thief's ledger lets itself spend rights the cloud never granted (rights via a forged
    # credit are held; here a debit recorded as debt beyond any allowance).
    op = site.forge("g1", kind=Kind.DEBT, account="m1", purse="cash", amount=900, ref="x")
    g1.apply(op)
    site.upload("g1")
    assert site.store.purse("m1", "cash").value == 1_000
    assert "beyond the 0 rights" in site.store.held("g1")[0].reason


def test_a_kiosk_may_not_write_card_status_at_any_version_and_a_lost_report_still_wins(site):
    g1 = site.kiosk("g1", "gate")
    site.store.append([Intent(Kind.SET, "card:c1", "status", 1, data="active")], ref="link")
    for version in (2**63 - 1, 2**53 - 1, 10):
        forged = site.forge("g1", account="card:c1", purse="status", amount=version, data="active")
        with pytest.raises(OpRefused):  # its own ledger refuses it too
            g1.apply(forged)
        ops = [forged]
        topic = Topics("s1", "g1").ops
        payload = seal(
            OpsUpload(batch=encode_ops(ops)),
            topic=topic,
            sender="g1",
            key=site.keys["g1"],
            ts_ms=site.now,
        )
        site.rec.handle(topic, payload)
        assert site.store.head("g1")[0] == 0
    site.store.append([Intent(Kind.SET, "card:c1", "status", 2, data="lost")], ref="lost")
    reg = site.store.register("card:c1", "status")
    assert reg is not None and reg.value == "lost"


def test_a_kiosk_lock_register_far_ahead_of_the_clouds_clock_is_held(site):
    g1 = site.kiosk("g1", "gate")
    g1.append([Intent(Kind.SET, "m1", "pin_locked_until", MAX_AMOUNT, data="9" * 15)], ref="lock")
    site.upload("g1")
    assert site.store.register("m1", "pin_locked_until") is None
    assert "ahead of the cloud's clock" in site.store.held("g1")[0].reason


def test_a_register_the_chain_refuses_is_never_relayed_to_the_scope(site):
    """A lockout op that fails its signature, uploaded after a good op of the same batch, is
    refused by the ledger, and the cloud does not sign it on to the scope's kiosks."""
    g1 = site.kiosk("g1", "gate")
    g1.append([Intent(Kind.SET, "m1", "last_entry", 1, data=str(site.now))], ref="entry")
    (good,) = list(g1.ops("g1", site.sent["g1"]))
    bad = Op(
        replica="g1",
        seq=good.seq + 1,
        wall_ms=site.now,
        mono_ms=0,
        kind=Kind.SET,
        account="m1",
        purse="pin_locked_until",
        amount=1,
        counterpart="",
        ref="lock",
        data=str(site.now + 600_000),
        prev=good.hash(),
    ).signed(generate_key())  # not g1's key
    topic = Topics("s1", "g1").ops
    batch = OpsUpload(batch=encode_ops([good, bad]))
    site.rec.handle(
        topic, seal(batch, topic=topic, sender="g1", key=site.keys["g1"], ts_ms=site.now)
    )
    assert site.store.head("g1")[0] == good.seq
    assert site.store.register("m1", "last_entry") is not None  # the good one travels on
    assert site.store.register("m1", "pin_locked_until") is None


def test_a_quarantined_kiosk_gets_no_rights_and_its_ops_wait_for_release(site):
    g1 = site.kiosk("g1", "gate")
    site.store.append([Intent(Kind.INC, "m1", "cash", 1_000)], ref="counter")
    site.store.grant("m1", "cash", "g1", 500, 500, "float")
    g1.apply_many(site.store.ops("cloud"))
    trust.quarantine(site.store, "g1", "reported stolen")
    g1.append([Intent(Kind.DEC, "m1", "cash", 300)], ref="tap")
    site.upload("g1")
    assert site.store.purse("m1", "cash").value == 1_000
    topic = Topics("s1", "g1").rpc_req
    req = RightsRequest(id="r1", account="m1", purse="cash", amount=100, cloud_head=2)
    outs = site.rec.handle(
        topic, seal(req, topic=topic, sender="g1", key=site.keys["g1"], ts_ms=site.now)
    )
    assert len(outs) == 1 and b"quarantined" in outs[0].payload
    trust.revoke(site.store, "g1", "stolen")
    assert trust.release(site.store, "g1", site.now)["applied"] == 1  # its held debit is accounted
    assert site.store.device("g1").trust == "revoked"  # type: ignore[union-attr]
    assert site.store.purse("m1", "cash").value == 700


# -- PINs (issue 12 item 6) ----------------------------------------------------------------------


def test_a_pin_hash_is_memory_hard_salted_per_member_and_old_hashes_still_verify():
    import hashlib

    from edge.ledger.records import hash_pin, pin_matches

    a, b = hash_pin("1234", b"salt-of-m1"), hash_pin("1234", b"salt-of-m2")
    assert a.startswith("scrypt$16384$8$1$") and a != b  # no table serves two members
    assert pin_matches("1234", a) and not pin_matches("1235", a)
    legacy = "pbkdf2$20000$73$" + hashlib.pbkdf2_hmac("sha256", b"1234", b"s", 20000).hex()
    assert pin_matches("1234", legacy) and not pin_matches("4321", legacy)
    # A register crafted to stall a tap (huge cost parameters) never matches.
    assert not pin_matches("1234", "scrypt$1073741824$8$1$00$00")
    assert not pin_matches("1234", "pbkdf2$999999999$00$00")


# -- clock (issue 12 item 8, part) ---------------------------------------------------------------


def test_a_kiosk_whose_clock_is_30_days_behind_still_holds_a_valid_certificate(tmp_path):
    import datetime as dt

    from cryptography import x509

    pki = tmp_path / "pki"
    ca.init_ca(pki)
    issued = ca.issue(pki, "k1", site="s1")
    behind = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    for path in (issued.cert, pki / ca.CA_CERT):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        assert cert.not_valid_before_utc <= behind <= cert.not_valid_after_utc
