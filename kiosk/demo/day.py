"""`make demo`, the main part: a day at a pool. A gate kiosk and a top-up kiosk run the real
daemon on simulated readers, relay and display, beside an in-process cloud replica. Every tap's
decision and latency is printed, every OLED frame saved, and a contact sheet made of them all."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from PIL import Image, ImageDraw

from cloud_sync import admin
from cloud_sync.store import SqliteCloudStore
from edge.config import KioskConfig
from edge.daemon.daemon import KioskDaemon
from edge.daemon.sdnotify import Notifier
from edge.drivers.base import Token, TokenKind
from edge.drivers.gpio import SimulatedInputs
from edge.drivers.nfc import SimulatedReader, SiteKeys
from edge.drivers.nfc_cards import Ntag424Tag
from edge.drivers.wedge import SimulatedKeySource
from edge.feedback.catalog import tr
from edge.feedback.outputs import money, screen_for
from edge.feedback.screens import TopUpScreen
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes, save_private_key
from edge.ledger import records as rec
from edge.ledger.records import hash_pin
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.pipeline import Outcome
from edge.taps.tokens import card_ref
from edge.validation import load

SITE = "riverside-pool"


class InProcessCloud:
    """The cloud replica of the demo: holds unallocated rights and exchanges ops with the
    kiosks while the network is up. (Over MQTT in production: cloud_sync.)"""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.online = True
        self.last_contact_ms = time.time_ns() // 1_000_000

    def sync(self, kiosk: Ledger) -> None:
        if not self.online:
            return
        self.ledger.apply_many(list(kiosk.ops(kiosk.replica)))
        kiosk.apply_many(list(self.ledger.ops(self.ledger.replica)))
        self.last_contact_ms = time.time_ns() // 1_000_000


class KioskLink:
    """One kiosk's view of the cloud: the RightsSource its pipeline asks when short of rights."""

    def __init__(self, cloud: InProcessCloud) -> None:
        self.cloud = cloud
        self.kiosk: Ledger | None = None  # set once the daemon has opened its ledger

    @property
    def online(self) -> bool:
        return self.cloud.online and self.kiosk is not None

    @property
    def last_contact_ms(self) -> int:
        return self.cloud.last_contact_ms

    def denied(self, card_ref: str) -> str | None:
        return None  # in this demo, card status travels as register ops only

    def known_values(self, account: str) -> tuple[dict[str, int], int] | None:
        return None  # in this demo the cloud merges whole ledgers: the kiosk's values are true

    async def lookup(self, account: str) -> bool:
        return False  # one site: every kiosk knows every member

    async def request_rights(self, account: str, purse: str, amount: int) -> bool:
        kiosk = self.kiosk
        if kiosk is None or not self.cloud.online:
            return False
        cloud = self.cloud.ledger
        self.cloud.sync(kiosk)
        if cloud.purse(account, purse).rights(cloud.replica) < amount:
            return False
        cloud.append([Intent(Kind.XFER, account, purse, amount, counterpart=kiosk.replica)])
        self.cloud.sync(kiosk)
        return True


def kiosk_config(root: Path, kiosk_id: str, role: str) -> KioskConfig:
    return load(
        KioskConfig,
        {
            "kiosk": {
                "id": kiosk_id,
                "site": SITE,
                "role": role,
                "product": "swim" if role == "gate" else "",
                "state_dir": str(root / kiosk_id),
                "key_file": str(root / "keys" / f"{kiosk_id}.key"),
                "site_key_file": str(root / "keys" / "site.key"),
                "currency": "¥" if role == "topup" else "",
            },
            "rules": {
                "products": {"swim": {"name": "Swim", "price": 2500}},
                "tiers": [
                    {"name": "Blue", "min_points": 0},
                    {
                        "name": "Gold",
                        "min_points": 200,
                        "discount_pct": 20,
                        "points_multiplier_pct": 150,
                    },
                ],
                "topup_bonus": [{"min_amount": 10000, "bonus": 1000}],
                "pin_above": 2000,
                "passback_minutes": 30,
                "low_balance": 3000,
                "near_tier_points": 60,
                "debounce_seconds": 1.0,
            },
            "nfc": {"backend": "sim"},
            "wedge": {"backend": "sim"},
            "keypad": {"backend": "sim", "mode": "pin"},
            "gpio": {
                "backend": "sim",
                "relay_pulse_s": 0.2,
                "coin_pin": 6,
                "coin_pulses": {1: 100, 2: 500, 3: 1000, 4: 5000},  # 4 pulses: a 50.00 note
                "lookup_pin": 5,  # the balance lookup button
            },
            "display": {
                "backend": "sim",
                "frames_dir": str(root / "frames" / kiosk_id),
                # the top-up kiosk speaks Chinese and shows prices in yuan
                "language": "zh" if role == "topup" else "en",
            },
        },
    )


MEMBERS = [
    # id, name, uid, cash, visits, tier, pin, status, grant to the gate
    ("m-alice", "Alice Chen", "04A1B2C3D4E501", 12000, 0, "Gold", "", "active", 8000),
    ("m-bob", "Bob Li", "04A1B2C3D4E502", 500, 5, "Blue", "", "active", 500),
    ("m-carol", "Carol Wu", "04A1B2C3D4E503", 9000, 0, "Blue", "", "lost", 9000),
    ("m-dave", "Dave Zhang", "04A1B2C3D4E504", 1200, 0, "Blue", "", "active", 1200),
    ("m-erin", "Erin Zhao", "04A1B2C3D4E505", 8000, 0, "Blue", "2468", "active", 8000),
    ("m-frank", "Frank Sun", "04A1B2C3D4E506", 6000, 0, "Blue", "", "active", 3000),
    ("m-grace", "Grace Ma", "04A1B2C3D4E507", 7000, 0, "Blue", "", "active", 0),
]
POINTS = {"m-frank": 230}  # past Gold's 200: the gate upgrades Frank at his tap


class Day:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.gate_cfg = kiosk_config(root, "gate-1", "gate")
        self.topup_cfg = kiosk_config(root, "topup-1", "topup")
        (root / "keys").mkdir(parents=True)
        create_site_key(root / "keys" / "site.key")
        self.secrets = load_site_secrets(root / "keys" / "site.key")
        self.sun_keys = SiteKeys(master=self.secrets.sun_master, system_id=SITE.encode()[:23])
        cloud_key = generate_key()
        save_private_key(root / "keys" / "cloud.key", cloud_key)
        self.store = SqliteCloudStore(root / "cloud.db", replica="cloud", key=cloud_key)
        self.cloud = self.store.ledger
        self.link = InProcessCloud(self.cloud)
        self.lines: list[str] = []
        for cfg in (self.gate_cfg, self.topup_cfg):
            key = generate_key()
            save_private_key(cfg.kiosk.key_file, key)
            self.cloud.trust(cfg.kiosk.id, public_bytes(key), "kiosk")
            cfg.kiosk.state_dir.mkdir(parents=True)
            led = Ledger(cfg.kiosk.state_dir / "ledger.db", replica=cfg.kiosk.id, key=key)
            led.trust("cloud", public_bytes(cloud_key), "cloud")
            led.close()

    def ref(self, uid: str) -> str:
        # The members' cards are NTAG 424 DNA: UID-only cards are off by default (clonable).
        return card_ref(self.secrets.card_ref_key, Token(TokenKind.NTAG424_SUN, uid, True))

    def enroll(self) -> None:
        version = 1
        for mid, name, uid, cash, visits, tier, pin, status, grant in MEMBERS:
            pin_hash = hash_pin(pin, mid.encode()) if pin else ""
            ops = [
                *rec.member_intents(mid, name, version, tier=tier, pin_hash=pin_hash),
                *rec.card_intents(self.ref(uid), mid, version, status=status),
                Intent(Kind.INC, mid, "cash", cash),
            ]
            if visits:
                ops.append(Intent(Kind.INC, mid, "visits:swim", visits))
                ops.append(Intent(Kind.XFER, mid, "visits:swim", visits, counterpart="gate-1"))
            if grant:
                ops.append(Intent(Kind.XFER, mid, "cash", grant, counterpart="gate-1"))
            if mid in POINTS:
                ops.append(Intent(Kind.INC, mid, "points", POINTS[mid]))
            self.cloud.append(ops, ref=f"enroll-{mid}")
        self.cloud.append(
            [
                Intent(Kind.INC, "coupon:FREE-SWIM-7", rec.COUPON_PURSE, 1),
                Intent(Kind.XFER, "coupon:FREE-SWIM-7", rec.COUPON_PURSE, 1, counterpart="gate-1"),
            ],
            ref="coupon-7",
        )


def _name(mid: str) -> str:
    return next(m[1] for m in MEMBERS if m[0] == mid)


def describe(outcome: Outcome) -> str:
    d = outcome.decision
    if d.needs_pin:
        return "PIN asked"
    if not d.approved:
        return f"DENIED   {d.reason.en if d.reason else ''}"
    if d.repeated:
        return "same result shown again (double tap: nothing debited)"
    if outcome.lookup_armed:
        return "LOOKUP   tap your card to see your balance"
    if outcome.lookup is not None:
        found = outcome.lookup
        moves = " ".join(f"{m.amount:+d} {m.purse}" for m in found.movements)
        return (
            f"BALANCE  cash {money(found.cash)}, {found.points} points, nothing spent;"
            f" last: {moves or '-'}"
        )
    if outcome.topup_open and not outcome.topup_total:
        return "TOP-UP   open: insert coins or notes, tap again to finish"
    if outcome.topup_open:
        return f"TOP-UP   {money(outcome.topup_total)} so far"
    if outcome.topup_total:
        return f"TOP-UP   done: {money(outcome.topup_total)} credited, bonus included"
    taken = (
        ", ".join(
            f"{m.purse} -{money(m.amount) if m.purse == 'cash' else m.amount}" for m in d.debits
        )
        or "no charge"
    )
    left = d.remaining.get("cash")
    extra = f"; cash left {money(left)}" if left is not None else ""
    notes = "".join(f" [{n.value[0]}]" for n in d.notices)
    if d.upgraded_from:
        notes += f" [tier upgraded at the tap: {d.upgraded_from} -> {d.tier}]"
    return f"APPROVED {taken}{extra}{notes}"


def latency(outcome: Outcome) -> str:
    if outcome.decision.repeated or not outcome.latency_ns:
        return "      -"
    return f"{outcome.latency_ns / 1e6:6.2f} ms"


async def play(root: Path) -> tuple[bool, list[Path]]:
    day = Day(root)
    day.enroll()
    echo = click.echo
    gate_link, topup_link = KioskLink(day.link), KioskLink(day.link)
    gate = KioskDaemon(day.gate_cfg, notifier=Notifier({}), rights=gate_link)
    topup = KioskDaemon(day.topup_cfg, notifier=Notifier({}), rights=topup_link)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop), name=d.cfg.kiosk.id) for d in (gate, topup)]
    async with asyncio.timeout(15):
        await gate.ready.wait()
        await topup.ready.wait()
    assert gate.ledger is not None
    assert topup.ledger is not None
    gate_link.kiosk, topup_link.kiosk = gate.ledger, topup.ledger
    day.link.sync(gate.ledger)
    day.link.sync(topup.ledger)
    outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
    for d in (gate, topup):
        assert d.feedback is not None
        d.feedback.observers.append(outcomes.put_nowait)

    async def step(clock: str, who: str, what: str, act: Callable[[], Any]) -> Outcome:
        result = act()
        if isinstance(result, Awaitable):
            await result
        async with asyncio.timeout(10):
            out = await outcomes.get()
        echo(f"  {clock}  {who:<11} {what:<26} {latency(out)}  {describe(out)}")
        await asyncio.sleep(0.05)
        return out

    nfc = gate.nfc
    assert isinstance(nfc, SimulatedReader)
    assert gate.wedge is not None
    assert gate.keypad is not None
    scanner, keypad = gate.wedge.source, gate.keypad.source
    assert isinstance(scanner, SimulatedKeySource)
    assert isinstance(keypad, SimulatedKeySource)

    cards: dict[str, Ntag424Tag] = {}

    def card_of(uid: str) -> Ntag424Tag:
        # One card per member: its SUN read counter goes up at every tap, as a real one's does.
        return cards.setdefault(uid, Ntag424Tag.for_site(bytes.fromhex(uid), day.sun_keys))

    def tap(uid: str) -> Callable[[], None]:
        return lambda: nfc.present(card_of(uid))

    def uid_of(mid: str) -> str:
        return next(m[2] for m in MEMBERS if m[0] == mid)

    echo("== A day at the pool: gate-1 (entry, Swim 25.00) and topup-1, simulated devices")
    echo("   time   member      what                        latency  result (latency: read to gate")
    echo(
        "                                                              signal, or to the decision)"
    )
    alice = tap(uid_of("m-alice"))
    first = await step("08:00", "Alice", "taps NTAG 424 card", alice)
    await step("08:00", "Alice", "taps again at once", alice)
    await step("08:05", "Bob", "taps (5-visit pass)", tap(uid_of("m-bob")))
    await step("08:10", "Carol", "taps (card reported lost)", tap(uid_of("m-carol")))
    await step("08:15", "Dave", "taps (12.00 left)", tap(uid_of("m-dave")))
    await step("08:20", "visitor", "scans coupon QR", lambda: scanner.scan("C:FREE-SWIM-7"))
    await step("08:21", "visitor", "scans the same coupon", lambda: scanner.scan("C:FREE-SWIM-7"))
    erin = tap(uid_of("m-erin"))
    await step("08:30", "Erin", "taps (PIN above 20.00)", erin)
    await step("08:30", "Erin", "types PIN 1111", lambda: keypad.type_text("1111"))
    await step("08:31", "Erin", "taps again", erin)
    await step("08:31", "Erin", "types PIN 2468", lambda: keypad.type_text("2468"))
    await asyncio.sleep(day.gate_cfg.rules.debounce_seconds)
    await step("08:40", "Alice", "comes back in (passback)", alice)
    for d in (gate, topup):
        assert d.ledger is not None
        day.link.sync(d.ledger)

    echo("  09:00  -- network down: the kiosks decide alone (strict mode) --")
    day.link.online = False
    await step("09:05", "Frank", "taps (gate holds 30.00)", tap(uid_of("m-frank")))
    grace = tap(uid_of("m-grace"))
    await step("09:20", "Grace", "taps (balance at cloud)", grace)
    echo("  10:00  -- network back: kiosks and cloud exchange ops --")
    day.link.online = True
    for d in (gate, topup):
        assert d.ledger is not None
        day.link.sync(d.ledger)
    await asyncio.sleep(day.gate_cfg.rules.debounce_seconds)
    await step("10:05", "Grace", "taps again (online)", grace)
    assert gate.gpio is not None
    button = SimulatedInputs(gate.gpio)
    await step("10:10", "Dave", "presses the lookup button", button.press_lookup)
    await step("10:10", "Dave", "taps to see his balance", tap(uid_of("m-dave")))

    echo("== The counter: Alice's 08:00 swim is refunded (lane closed), by its tap id")
    refunded = admin.refund(day.store, first.tap_id, amount=None, reason="lane 3 closed")
    day.link.sync(gate.ledger)
    echo(
        f"  10:30  counter     kiosk cloud refund --ref {first.tap_id}  REFUND   "
        f"{money(refunded.cash)} back to {refunded.member}, signed cloud ops every kiosk applies"
    )

    echo("== topup-1 (screens in Chinese, ¥): Bob tops up with coins (top up 100.00, get 10.00)")
    tnfc = topup.nfc
    assert isinstance(tnfc, SimulatedReader)
    assert topup.gpio is not None
    coins = SimulatedInputs(topup.gpio)
    bob = card_of(uid_of("m-bob"))
    await step("11:00", "Bob", "taps to start", lambda: tnfc.present(bob))
    for _ in range(2):
        await step("11:00", "Bob", "inserts a 50.00 note", lambda: coins.insert_coin(4))
    await asyncio.sleep(day.topup_cfg.rules.debounce_seconds)
    done = await step("11:01", "Bob", "taps to finish", lambda: tnfc.present(bob))
    bonus_ok = done.topup_total == 11000
    shown = screen_for(done, day.topup_cfg)
    assert isinstance(shown, TopUpScreen)
    added = tr("Added {amount}", "zh", amount=shown.inserted)
    echo(f"           screen (zh): {tr('Top-up done', 'zh')} | {added} | 余额: {shown.balance}")

    stop.set()
    await asyncio.gather(*tasks)
    ok = reconcile(day, echo) and bonus_ok
    frames = sorted((root / "frames").rglob("*.png"))
    return ok, frames


def reconcile(day: Day, echo: Callable[[str], None]) -> bool:
    from edge.ledger import verify

    echo("== End of day: every op reaches the cloud, and the money adds up")
    kiosks = [Ledger(cfg.kiosk.state_dir / "ledger.db") for cfg in (day.gate_cfg, day.topup_cfg)]
    for led in kiosks:
        day.cloud.apply_many(list(led.ops(led.replica)))
    ok = True
    for led in (day.cloud, *kiosks):
        report = verify(led)
        ok = ok and report.ok
        echo(
            f"   verify {led.replica:<8} {'ok' if report.ok else 'FAILED'}: {report.total_ops} ops"
        )
    echo(f"   {'member':<12}{'cash':>9}{'visits':>8}  (as the cloud sees it)")
    for mid, name, *_ in MEMBERS:
        cash = day.cloud.purse(mid, "cash")
        visits = day.cloud.purse(mid, "visits:swim").value
        ok = ok and cash.value >= cash.lower_bound
        echo(f"   {name:<12}{money(cash.value):>9}{visits:>8}")
    denials = sum(len(led.denials()) for led in kiosks)
    echo(f"   {denials} denials audited with their reason on the kiosks")
    for led in kiosks:
        led.close()
    day.store.close()
    return ok


def contact_sheet(frames: list[Path], out: Path, columns: int = 4, scale: int = 2) -> Path:
    """All frames on one image, in order, each with its name under it."""
    w, h, label = 128 * scale, 64 * scale, 14
    rows = max(1, -(-len(frames) // columns))
    sheet = Image.new("L", (columns * (w + 8) + 8, rows * (h + label + 8) + 8), 40)
    draw = ImageDraw.Draw(sheet)
    for i, path in enumerate(frames):
        x = 8 + (i % columns) * (w + 8)
        y = 8 + (i // columns) * (h + label + 8)
        frame = Image.open(path).convert("L").resize((w, h), Image.Resampling.NEAREST)
        sheet.paste(frame, (x, y))
        draw.text((x, y + h + 2), f"{path.parent.name}/{path.stem}", fill=220)
    sheet.save(out)
    return out


def run_day(out: Path) -> bool:
    root = out / "day"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ok, frames = asyncio.run(play(root))
    sheet = contact_sheet(frames, out / "day-contact-sheet.png")
    click.echo("== Files")
    click.echo(f"   {len(frames)} OLED frames: {root / 'frames'}/<kiosk>/frame-NNNN.png")
    click.echo(f"   contact sheet of them all: {sheet}")
    click.echo(f"   ledgers: {root / 'cloud.db'}, {root}/<kiosk>/ledger.db")
    return ok
