"""A few weeks of a small chain, written through the real ledgers and cloud store on a clock the
test moves: counter top-ups, grants, paid taps earning points, visit passes, coupons, vouchers,
coin top-ups, refunds, corrections and a risk-mode kiosk running into debt. Reports are then
checked against `Walk`, the same figures computed here by reading every op one by one."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from cloud_sync import admin
from cloud_sync.store import CloudStore
from edge.ledger import Intent, Kind, Ledger, RiskLimit, RiskPolicy, generate_key, public_bytes
from edge.ledger.op import Op
from edge.ledger.store import Clock

TZ = "Asia/Shanghai"
START = dt.date(2026, 2, 20)  # the scenario runs 40 local days from here


@dataclass
class Chain:
    store: CloudStore
    kiosks: dict[str, Ledger]
    now: list[int]
    synced: dict[str, int] = field(default_factory=dict)
    cloud_seen: dict[str, int] = field(default_factory=dict)
    taps: list[tuple[str, str]] = field(default_factory=list)  # (member, tap id)

    def sync(self) -> None:
        for name, k in self.kiosks.items():
            new = list(k.ops(name, self.synced.get(name, 0)))
            if new:
                self.store.ingest(new)
                self.synced[name] = new[-1].seq
            cloud = self.store.ops(self.store.replica, self.cloud_seen.get(name, 0))
            if cloud:
                k.apply_many(cloud)
                self.cloud_seen[name] = cloud[-1].seq

    def grant(self, kiosk: str, member: str, purse: str, amount: int) -> None:
        self.store.grant(member, purse, kiosk, amount, 1, uuid.uuid4().hex)
        self.sync()


def local_ms(day: dt.date, hour: float) -> int:
    base = dt.datetime.combine(day, dt.time(), ZoneInfo(TZ))
    return int(base.timestamp() * 1000 + hour * 3_600_000)


def build(store: CloudStore, root: Path, clock_of_store: list[int], seed: int = 7) -> Chain:
    """`clock_of_store` is the list the store's own clock reads (ms), moved by the scenario."""
    now = clock_of_store
    kiosks: dict[str, Ledger] = {}
    risk = RiskPolicy({"cash": RiskLimit(per_tap=3000, total=20_000)})
    for name, site, policy in (("k1", "s1", None), ("k2", "s1", None), ("k3", "s2", risk)):
        key = generate_key()
        led = Ledger(
            root / f"{name}.db",
            replica=name,
            key=key,
            role="kiosk",
            durable=False,
            clock=Clock(wall_ms=lambda: now[0], mono_ms=lambda: now[0]),
            **({"risk": policy} if policy else {}),
        )
        store.trust(name, public_bytes(key), "kiosk")
        store.enroll(name, site)
        led.trust(store.replica, public_bytes_of(store), "cloud")
        kiosks[name] = led
    chain = Chain(store, kiosks, now)
    rnd = random.Random(seed)
    members: list[str] = []
    for day_n in range(40):
        day = START + dt.timedelta(days=day_n)
        for _ in range(rnd.randint(0, 2)):  # new members
            now[0] = local_ms(day, rnd.uniform(8, 22))
            m = f"m{len(members):03d}"
            admin.register_member(store, m, f"Member {m}")
            admin.set_member(store, m, category=rnd.choice(["adult", "child"]))
            members.append(m)
            admin.top_up(store, m, "cash", rnd.choice([5000, 10_000]), f"R-{m}")
        if not members:
            continue
        for _ in range(rnd.randint(2, 6)):
            now[0] = local_ms(day, rnd.uniform(0, 24))  # midnight-adjacent taps too
            m = rnd.choice(members)
            _event(chain, rnd, m, day)
    chain.sync()
    return chain


def public_bytes_of(store: CloudStore) -> bytes:
    key = store.public_key(store.replica)
    assert key is not None
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _event(chain: Chain, rnd: random.Random, m: str, day: dt.date) -> None:
    store = chain.store
    what = rnd.choices(
        ["tap", "visit", "coupon", "coins", "voucher", "refund", "correct", "debt", "pass"],
        [8, 2, 1, 2, 1, 1, 1, 2, 1],
    )[0]
    tap = uuid.uuid4().hex[:16]
    if what == "tap":
        k = rnd.choice(["k1", "k2"])
        price = rnd.choice([1500, 2500])
        if store.purse(m, "cash").value < price:
            return
        chain.grant(k, m, "cash", price)
        led = chain.kiosks[k]
        if led.purse(m, "cash").rights(k) < price:
            return
        led.append(
            [Intent(Kind.DEC, m, "cash", price), Intent(Kind.INC, m, "points", price // 100)], tap
        )
        chain.taps.append((m, tap))
    elif what == "pass":
        admin.top_up(store, m, "visits:swim", 5, f"P-{tap}")
    elif what == "visit":
        if store.purse(m, "visits:swim").value < 1:
            return
        chain.grant("k1", m, "visits:swim", 1)
        chain.kiosks["k1"].append([Intent(Kind.DEC, m, "visits:swim", 1)], tap)
    elif what == "coupon":
        code = tap[:8]
        admin.issue_single_use(store, "coupon", code)
        chain.grant("k2", f"coupon:{code}", "use", 1)
        chain.kiosks["k2"].append([Intent(Kind.DEC, f"coupon:{code}", "use", 1)], tap)
    elif what == "coins":
        led = chain.kiosks["k2"]
        led.append(
            [
                Intent(Kind.INC, m, "cash", 1000),
                Intent(Kind.XFER, m, "cash", 1000, counterpart="cloud"),
            ],
            tap,
        )
    elif what == "voucher":
        code = tap[:8]
        admin.issue_single_use(store, "voucher", code, 2000)
        chain.grant("k2", f"voucher:{code}", "cash", 2000)
        chain.kiosks["k2"].append(
            [Intent(Kind.DEC, f"voucher:{code}", "cash", 2000), Intent(Kind.INC, m, "cash", 2000)],
            tap,
        )
    elif what == "refund":
        chain.sync()
        mine = [t for who, t in chain.taps if who == m]
        if mine:
            with contextlib.suppress(admin.ActionRefused):  # refunded in full already
                admin.refund(store, mine[-1], amount=500, reason="cold water", account=m)
    elif what == "correct":
        admin.correct(store, m, "cash", rnd.choice([300, -200]), reason="till", ref=tap)
    elif what == "debt":
        # the risk-mode kiosk holds no rights: within its allowance the tap is written as debt
        try:
            chain.kiosks["k3"].append([Intent(Kind.DEC, m, "cash", 1200)], tap)
        except Exception:  # the allowance is used up: refused, nothing written
            return
    chain.sync()


# -- the independent walk ------------------------------------------------------------------------


def all_ops(store: CloudStore) -> list[Op]:
    return [o for r in store.heads() for o in store.ops(r)]


def period(wall_ms: int, by: str) -> str:
    local = dt.datetime.fromtimestamp(wall_ms / 1000, ZoneInfo(TZ)).date()
    if by == "week":
        local -= dt.timedelta(days=local.weekday())
    elif by == "month":
        local = local.replace(day=1)
    return local.isoformat()


def is_member(account: str) -> bool:
    return ":" not in account


class Walk:
    """Every figure the reports give, from the ops one at a time (no SQL)."""

    def __init__(self, ops: list[Op], cloud: str, by: str, start_ms: int, end_ms: int) -> None:
        self.sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.taps: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.active: dict[str, set[str]] = defaultdict(set)
        self.products: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.outstanding = {"cash": 0, "points": 0}
        self.before = {"cash": 0, "points": 0}
        first_name: dict[str, int] = {}
        for o in ops:
            signed = o.amount if o.kind is Kind.INC else -o.amount
            if o.kind is Kind.SET and o.purse == "name" and is_member(o.account):
                first_name[o.account] = min(first_name.get(o.account, o.wall_ms), o.wall_ms)
            if o.kind not in (Kind.INC, Kind.DEC, Kind.DEBT):
                continue
            if is_member(o.account) and o.purse in self.outstanding:
                self.outstanding[o.purse] += signed
                if o.wall_ms < start_ms:
                    self.before[o.purse] += signed
            if not start_ms <= o.wall_ms < end_ms:
                continue
            p = period(o.wall_ms, by)
            s = self.sums[p]
            at_cloud = o.replica == cloud
            if is_member(o.account) and o.purse in ("cash", "points"):
                if at_cloud and o.ref.startswith("refund:"):
                    s[f"{o.purse}.refund"] += signed
                elif at_cloud and o.ref.startswith("correct:"):
                    s[f"{o.purse}.correct"] += signed
                elif o.kind is Kind.INC:
                    s[f"{o.purse}.in"] += o.amount
                else:
                    s[f"{o.purse}.out"] += o.amount
            if (
                not at_cloud
                and o.kind is not Kind.INC
                and (is_member(o.account) or o.purse == "use")
            ):
                self.taps[p].add((o.replica, o.ref))
                if is_member(o.account) and o.purse == "cash":
                    s["sales.cash"] += o.amount
                if o.kind is Kind.DEBT:
                    s["debt"] += o.amount
            if not at_cloud and is_member(o.account):
                self.active[p].add(o.account)
            if o.purse.startswith("visits:") and is_member(o.account):
                s["visits.sold" if o.kind is Kind.INC else "visits.used"] += o.amount
            if o.account.startswith("coupon:"):
                s["coupons.issued" if o.kind is Kind.INC else "coupons.used"] += o.amount
            if o.account.startswith("voucher:"):
                s["vouchers.issued" if o.kind is Kind.INC else "vouchers.used"] += o.amount
            if not at_cloud and o.kind is not Kind.INC and is_member(o.account):
                self.products[(o.replica, o.purse)].add(o.ref)
        self.new: dict[str, int] = defaultdict(int)
        for t in first_name.values():
            if start_ms <= t < end_ms:
                self.new[period(t, by)] += 1
