"""What a kiosk knows (docs/knowledge-model.md), on the real reconciler, cloud store, agents,
ledgers and pipelines, with every message sealed and delivered at once: each kiosk receives its
own stream (its scope, nothing of other scopes), shows the member's true balance online, marks
its best knowledge offline, and holds PIN lockouts and anti-passback across its scope."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cloud_sync.agent import SyncAgent
from cloud_sync.protocol import Hello, OpsUpload, Topics, encode_ops, parse_device_topic
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import AgentSettings, EscrowPolicy
from cloud_sync.store import SqliteCloudStore
from cloud_sync.streams import HOME
from edge.config import KioskConfig
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.ledger import records as rec
from edge.taps.pipeline import TapPipeline
from edge.taps.reasons import DenyReason
from edge.taps.tokens import card_ref
from edge.validation import load
from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, nfc


@dataclass
class Kiosk:
    ledger: Ledger
    agent: SyncAgent
    pipeline: TapPipeline
    topics: Topics
    online: bool = True


class Bus:
    """The network: each uplink reaches the reconciler at once, each downlink its kiosk (if it
    is online); a kiosk's ops are uploaded after every tap."""

    def __init__(self, fleet: Fleet, device: str) -> None:
        self.fleet, self.device = fleet, device

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.fleet.deliver(self.fleet.reconciler.handle(topic, payload))


class Fleet:
    def __init__(self, tmp: Path, kiosks: dict[str, tuple[str, KioskConfig]]) -> None:
        self.cloud_key = generate_key()
        self.store = SqliteCloudStore(tmp / "cloud.db", replica="cloud", key=self.cloud_key)
        # No standing floats here: these tests are about knowledge, not escrow.
        self.reconciler = Reconciler(self.store, self.cloud_key, escrow=EscrowPolicy(standing={}))
        self.kiosks: dict[str, Kiosk] = {}
        for device, (site, cfg) in kiosks.items():
            key = generate_key()
            self.store.trust(device, public_bytes(key), "kiosk")
            self.store.enroll(device, site)
            led = Ledger(tmp / f"{device}.db", replica=device, key=key)
            led.trust("cloud", public_bytes(self.cloud_key), "cloud")
            agent = SyncAgent(led, AgentSettings(site=site, device=device), key=key)
            fx = RecordingFeedback()
            pipe = TapPipeline(cfg, led, SITE_KEY, fx, rights=agent)
            self.kiosks[device] = Kiosk(led, agent, pipe, Topics(site, device))

    def member(self, member: str, home: str, uid: str, **purses: int) -> str:
        ref = card_ref(SITE_KEY, nfc(uid))
        intents = rec.register_writes(member, 1, **{HOME: home})
        intents += rec.member_intents(member, member.title(), 1)
        intents += rec.card_intents(ref, member, 1)
        intents += [Intent(Kind.INC, member, p.replace("_", ":"), n) for p, n in purses.items()]
        self.store.append(intents, ref=f"enrol:{member}")
        return ref

    def deliver(self, outs: list) -> None:  # type: ignore[type-arg]
        for o in outs:
            parsed = parse_device_topic(o.topic)
            k = self.kiosks.get(parsed[1]) if parsed else None
            if k is not None and k.online:
                k.agent.handle(o.topic, o.payload)

    def connect(self, device: str) -> None:
        k = self.kiosks[device]
        k.online = True
        k.agent.attach(Bus(self, device))
        hello = Hello(
            id=f"hello-{device}-{time.monotonic_ns()}",
            head=k.ledger.head()[0],
            cloud_head=k.ledger.head("cloud")[0],
            deny_version=0,
        )
        self.deliver(
            self.reconciler.handle(k.topics.rpc_req, k.agent.seal(k.topics.rpc_req, hello))
        )
        self.upload(device)

    def disconnect(self, device: str) -> None:
        self.kiosks[device].online = False
        self.kiosks[device].agent.detach()

    def upload(self, device: str) -> None:
        k = self.kiosks[device]
        if not k.online or k.ledger.head()[0] <= k.agent.acked:
            return
        ops = list(k.ledger.ops(device, k.agent.acked))
        payload = k.agent.seal(k.topics.ops, OpsUpload(batch=encode_ops(ops)))
        self.deliver(self.reconciler.handle(k.topics.ops, payload))

    def operator(self) -> None:
        """The reconciler's stream tick (operator actions written by another process)."""
        self.deliver(self.reconciler.publish_new())

    async def tap(self, device: str, uid: str, pin: str | None = None):  # type: ignore[no-untyped-def]
        k = self.kiosks[device]
        out = await k.pipeline.card(nfc(uid))
        if pin is not None:
            out = await k.pipeline.keyed(pin)
        self.upload(device)
        return out

    def cash(self, member: str) -> int:
        return self.store.purse(member, "cash").value


def gate(device: str, site: str, **rules: object) -> tuple[str, KioskConfig]:
    cfg = load(
        KioskConfig,
        {
            "kiosk": {"id": device, "site": site, "role": "gate", "product": "swim"},
            "rules": {
                "products": {"swim": {"name": "Swim", "price": 2000}},
                "debounce_seconds": 0,
                **rules,
            },
        },
    )
    return site, cfg


def test_a_kiosk_holds_its_scope_and_nothing_of_other_scopes(tmp_path):
    f = Fleet(tmp_path, {"a1": gate("a1", "sa"), "b1": gate("b1", "sb")})
    ann = f.member("ann", "sa", "04AA", cash=10_000)
    bob = f.member("bob", "sb", "04BB", cash=10_000)
    f.connect("a1")
    f.connect("b1")
    a1 = f.kiosks["a1"].ledger
    assert a1.register(rec.card_account(ann), rec.CARD_MEMBER) is not None
    assert a1.register(rec.card_account(bob), rec.CARD_MEMBER) is None
    assert a1.register("bob", rec.MEMBER_NAME) is None
    accounts = {op.account for op in a1.ops("cloud")}
    assert accounts == {"ann", rec.card_account(ann)}
    # Its stream is a chain of its own: gap-free, linked, signed by the cloud.
    assert a1.head("cloud")[0] == f.reconciler.streams.head("a1")[0] == len(list(a1.ops("cloud")))


async def test_a_visitor_from_another_venue_is_looked_up_online(tmp_path):
    f = Fleet(tmp_path, {"a1": gate("a1", "sa"), "b1": gate("b1", "sb")})
    f.member("bob", "sb", "04BB", cash=10_000)
    f.connect("a1")
    out = await f.tap("a1", "04BB")
    assert out.decision.approved, out.decision
    assert out.decision.remaining["cash"] == f.cash("bob") == 8_000
    # From now on the visiting account's changes reach this kiosk too.
    f.store.append([Intent(Kind.INC, "bob", "cash", 500)], ref="counter-1")
    f.operator()
    assert f.kiosks["a1"].agent.known_values("bob")[0]["cash"] == 8_500  # type: ignore[index]


async def test_online_the_screen_shows_the_clouds_value_less_this_kiosks_spends(tmp_path):
    f = Fleet(tmp_path, {"a1": gate("a1", "sa"), "a2": gate("a2", "sa")})
    f.member("ann", "sa", "04AA", cash=10_000)
    f.connect("a1")
    f.connect("a2")
    assert (await f.tap("a2", "04AA")).decision.remaining["cash"] == f.cash("ann") == 8_000
    out = await f.tap("a1", "04AA")  # a1 never saw a2's spend in its own ledger
    assert out.decision.remaining["cash"] == f.cash("ann") == 6_000
    assert out.as_of_ms == 0


async def test_no_visits_left_means_cash_is_used(tmp_path):
    f = Fleet(tmp_path, {"a1": gate("a1", "sa"), "a2": gate("a2", "sa")})
    f.member("ann", "sa", "04AA", cash=10_000, visits_swim=1)
    f.connect("a1")
    f.connect("a2")
    used = await f.tap("a2", "04AA")
    assert [m.purse for m in used.decision.debits] == ["visits:swim"]
    # a1's own ledger still holds the cloud's credit of one visit; the truth is none left.
    out = await f.tap("a1", "04AA")
    assert out.decision.approved, out.decision
    assert [m.purse for m in out.decision.debits] == ["cash"]
    assert f.cash("ann") == 8_000
    assert f.store.purse("ann", "visits:swim").value == 0


async def test_offline_the_screen_says_as_of_and_is_off_only_by_spends_elsewhere(tmp_path):
    f = Fleet(tmp_path, {"a1": gate("a1", "sa"), "a2": gate("a2", "sa")})
    f.member("ann", "sa", "04AA", cash=10_000)
    f.connect("a1")
    f.connect("a2")
    await f.tap("a1", "04AA")  # a1 now holds a working float for Ann
    f.disconnect("a1")
    await f.tap("a2", "04AA")  # spent elsewhere during the partition
    out = await f.tap("a1", "04AA")
    assert out.decision.approved, out.decision
    assert out.as_of_ms > 0
    true_now = 10_000 - 3 * 2_000
    assert out.decision.remaining["cash"] - true_now == 2_000
    f.connect("a1")
    assert f.cash("ann") == true_now
    assert f.kiosks["a1"].agent.known_values("ann")[0]["cash"] == true_now  # type: ignore[index]


async def test_a_coupon_used_at_another_gate_is_already_used(tmp_path):
    f = Fleet(tmp_path, {"a1": gate("a1", "sa"), "a2": gate("a2", "sa")})
    coupon = rec.COUPON_PREFIX + "X1"
    f.store.append(rec.register_writes(coupon, 1, **{HOME: "sa"}))
    f.store.append([Intent(Kind.INC, coupon, rec.COUPON_PURSE, 1)], ref="issue:X1")
    f.connect("a1")
    f.connect("a2")
    assert (await f.kiosks["a2"].pipeline.code("C:X1")).decision.approved
    f.upload("a2")
    out = await f.kiosks["a1"].pipeline.code("C:X1")
    assert out.decision.reason is DenyReason.COUPON_USED


async def test_a_card_reported_lost_once_is_refused_at_every_venue_that_knows_it(tmp_path):
    f = Fleet(tmp_path, {"a1": gate("a1", "sa"), "b1": gate("b1", "sb")})
    ann = f.member("ann", "sa", "04AA", cash=10_000)
    f.connect("a1")
    f.connect("b1")
    assert (await f.tap("b1", "04AA")).decision.approved  # a visitor at b1: b1 knows her now
    # One operator action (the status register), no site named: both venues refuse the card.
    f.store.append(rec.register_writes(rec.card_account(ann), 2, status="lost"))
    f.operator()
    for device in ("a1", "b1"):
        assert (await f.tap(device, "04AA")).decision.reason is DenyReason.CARD_LOST
    assert f.cash("ann") == 8_000


async def test_a_pin_lockout_and_an_entry_hold_across_the_scope(tmp_path):
    pin = rec.hash_pin("1234", b"salt")
    rules = {"pin_above": 1000, "pin_max_tries": 2, "passback_minutes": 10}
    f = Fleet(tmp_path, {"a1": gate("a1", "sa", **rules), "a2": gate("a2", "sa", **rules)})
    f.member("ann", "sa", "04AA", cash=10_000)
    f.store.append(rec.register_writes("ann", 2, pin=pin))
    f.member("cat", "sa", "04CC", cash=10_000)
    f.connect("a1")
    f.connect("a2")
    assert (await f.tap("a1", "04AA", pin="0000")).decision.reason is DenyReason.PIN_WRONG
    assert (await f.tap("a1", "04AA", pin="0000")).decision.reason is DenyReason.PIN_LOCKED
    assert (await f.tap("a2", "04AA")).decision.reason is DenyReason.PIN_LOCKED
    # Anti-passback: in at a1, then at once in at a2 is refused; a restart forgets nothing.
    assert (await f.tap("a1", "04CC")).decision.approved  # no PIN set: none asked
    assert (await f.tap("a2", "04CC")).decision.reason is DenyReason.PASSBACK
    a2 = f.kiosks["a2"]
    again = TapPipeline(a2.pipeline.cfg, a2.ledger, SITE_KEY, RecordingFeedback(), rights=a2.agent)
    assert (await again.card(nfc("04CC"))).decision.reason is DenyReason.PASSBACK
