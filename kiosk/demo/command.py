"""`kiosk demo`: the core promise on embedded defaults. A cloud and two kiosks in separate SQLite
ledgers; both kiosks go offline; strict mode refuses what would overspend; the kiosks reconcile in
a shuffled order with duplicates, and every replica ends with the same values, none below its bound.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import click

from edge.feedback.outputs import money as cash_text
from edge.ledger import (
    Intent,
    Kind,
    Ledger,
    SpendRefused,
    generate_key,
    public_bytes,
    save_private_key,
    verify,
)
from edge.ledger.store import Role

MEMBERS = {
    "alice": {"cash": 5000, "points": 300, "visits:swim": 6},
    "bob": {"cash": 1200, "visits:gym": 3},
    "chen": {"cash": 800},
}
# The working float the cloud grants each kiosk while it is online.
FLOAT = {"cash": 0.4, "points": 0.5, "visits:swim": 0.5, "visits:gym": 0.34}
# The offline hour: (kiosk, member, purse, amount). Some of these must be refused.
OFFLINE_TAPS = [
    ("kiosk-a", "alice", "cash", 1500),
    ("kiosk-b", "alice", "cash", 1800),
    ("kiosk-a", "alice", "cash", 800),
    ("kiosk-a", "alice", "visits:swim", 1),
    ("kiosk-b", "alice", "visits:swim", 1),
    ("kiosk-b", "alice", "visits:swim", 1),
    ("kiosk-b", "alice", "visits:swim", 1),
    ("kiosk-a", "bob", "visits:gym", 1),
    ("kiosk-a", "bob", "visits:gym", 1),
    ("kiosk-b", "bob", "visits:gym", 1),
    ("kiosk-b", "bob", "visits:gym", 1),
    ("kiosk-a", "chen", "cash", 320),
    ("kiosk-b", "chen", "cash", 320),
    ("kiosk-b", "chen", "cash", 1),
    ("kiosk-a", "alice", "points", 150),
    ("kiosk-b", "alice", "points", 151),
]


def money(purse: str, amount: int) -> str:
    """Cash as the kiosk screens show it; other purses as plain counts."""
    return cash_text(amount) if purse == "cash" else str(amount)


@dataclass
class Fleet:
    cloud: Ledger
    kiosks: dict[str, Ledger]

    @property
    def all(self) -> list[Ledger]:
        return [self.cloud, *self.kiosks.values()]


def build_fleet(out: Path) -> Fleet:
    keys_dir = out / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    names: dict[str, Role] = {"cloud": "cloud", "kiosk-a": "kiosk", "kiosk-b": "kiosk"}
    keys = {n: generate_key() for n in names}
    ledgers: dict[str, Ledger] = {}
    for name, role in names.items():
        save_private_key(keys_dir / f"{name}.key", keys[name])
        led = Ledger(out / f"{name}.db", replica=name, key=keys[name], role=role)
        for other, other_role in names.items():
            if other != name:
                led.trust(other, public_bytes(keys[other]), other_role)
        ledgers[name] = led
    cloud = ledgers.pop("cloud")
    return Fleet(cloud, ledgers)


def run_ledger_demo(out: Path, seed: int = 7) -> bool:
    """Play the scenario; print what happens; return True when every check holds."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("cloud", "kiosk-a", "kiosk-b"):
        for suffix in (".db", ".db-wal", ".db-shm"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(out / "keys", ignore_errors=True)
    fleet = build_fleet(out)
    cloud = fleet.cloud
    echo = click.echo

    echo("== 1. The cloud registers members and tops them up (it holds all rights)")
    for member, purses in MEMBERS.items():
        cloud.append(
            [Intent(Kind.INC, member, p, n) for p, n in purses.items()], ref=f"reg-{member}"
        )
        echo(f"   {member:<6} " + ", ".join(f"{p} {money(p, n)}" for p, n in purses.items()))

    echo("== 2. While online, the cloud grants each kiosk a working float of rights")
    for member, purses in MEMBERS.items():
        for purse, total in purses.items():
            share = int(total * FLOAT[purse])
            grants = [Intent(Kind.XFER, member, purse, share, counterpart=k) for k in fleet.kiosks]
            cloud.append(grants)
    for kiosk in fleet.kiosks.values():
        kiosk.apply_many(list(cloud.ops("cloud")))
    for name, kiosk in fleet.kiosks.items():
        held = ", ".join(
            f"{p.account}/{p.purse} {money(p.purse, p.rights(name))}" for p in kiosk.purses()
        )
        echo(f"   {name} holds: {held}")

    echo("== 3. Network down: both kiosks decide alone (strict mode: spend only rights held)")
    echo(f"   {'kiosk':<8}{'member':<7}{'purse':<12}{'amount':>8}  result")
    refused = 0
    for i, (kname, member, purse, amount) in enumerate(OFFLINE_TAPS):
        kiosk = fleet.kiosks[kname]
        try:
            kiosk.append([Intent(Kind.DEC, member, purse, amount)], ref=f"tap-{i}")
            left = kiosk.purse(member, purse).rights(kname)
            result = f"APPROVED  (kiosk still holds {money(purse, left)})"
        except SpendRefused as exc:
            refused += 1
            kiosk.record_denial(
                ref=f"tap-{i}", account=member, purse=purse, amount=amount, reason=exc.reason.name
            )
            result = f"REFUSED   {exc.reason.value} (holds {money(purse, exc.rights)})"
        echo(f"   {kname:<8}{member:<7}{purse:<12}{money(purse, amount):>8}  {result}")

    echo("== 4. Back online: every replica receives every op, shuffled, some twice")
    rng = random.Random(seed)
    every = [op for led in fleet.all for op in led.ops(led.replica)]
    for led in fleet.all:
        delivery = every + rng.sample(every, k=len(every) // 3)
        rng.shuffle(delivery)
        counts = led.apply_many(delivery)
        echo(
            f"   {led.replica:<8} delivered {len(delivery):>3}: applied {counts['applied']},"
            f" duplicate {counts['duplicate']}, held until an earlier op came {counts['pending']},"
            f" refused {counts['refused']}"
        )

    echo("== 5. Every replica agrees, and no purse is below its bound")
    ok = True
    echo(
        f"   {'member':<7}{'purse':<12}{'cloud':>9}{'kiosk-a':>9}{'kiosk-b':>9}{'bound':>7}  check"
    )
    for st in cloud.purses():
        values = [led.purse(st.account, st.purse).value for led in fleet.all]
        same = len(set(values)) == 1
        bounded = min(values) >= st.lower_bound
        ok = ok and same and bounded
        cells = "".join(f"{money(st.purse, v):>9}" for v in values)
        verdict = "ok" if same and bounded else "MISMATCH"
        echo(f"   {st.account:<7}{st.purse:<12}{cells}{st.lower_bound:>7}  {verdict}")
    heads = {led.replica: led.heads() for led in fleet.all}
    agree = len({tuple(sorted(h.items())) for h in heads.values()}) == 1
    ok = ok and agree
    echo(f"   chains held everywhere: {heads['cloud']} ({'identical' if agree else 'DIFFER'})")
    for led in fleet.all:
        report = verify(led)
        ok = ok and report.ok
        echo(
            f"   verify {led.replica:<8} {'ok' if report.ok else 'FAILED'}: {report.total_ops} ops"
        )
    echo(f"   {refused} taps refused offline; nothing overspent, nothing lost, nothing doubled")
    echo("== Files")
    for led in fleet.all:
        echo(f"   {led.path}   (kiosk ledger verify --db {led.path})")
        led.close()
    echo(f"   {out / 'keys'}/  (Ed25519 keys, mode 0600)")
    return ok


def run_sync(out: Path) -> bool:
    """The real protocol on embedded defaults: mosquitto with mutual TLS when installed, else
    an in-process broker; the SQLite cloud store; two kiosk agents; an outage; reconciliation."""
    import asyncio
    import logging

    from kiosk.demo.two_kiosks import run_sync_demo

    # The outage's reconnect warnings (and the embedded broker's complaints about the clients
    # it lost) are the point of the scene, not news: keep them out unless asked for with -v.
    noisy = [logging.getLogger(name) for name in ("cloud_sync", "amqtt")]
    levels = [lg.level for lg in noisy]
    if not logging.getLogger().isEnabledFor(logging.INFO):
        for lg in noisy:
            lg.setLevel(logging.CRITICAL)
    try:
        lines = asyncio.run(run_sync_demo(out))
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)
    for line in lines:
        click.echo(f"   {line}")
    return any("every chain verified: True" in line for line in lines)


@click.command()
@click.option(
    "--out",
    default="demo-out",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the demo's ledgers, keys and frames.",
)
def demo(out: Path) -> None:
    """A day at a pool on simulated devices, then the offline no-overspend promise across two
    kiosks, then the drivers on their own (no hardware, no broker, no database to install)."""
    from kiosk.demo.day import run_day
    from kiosk.demo.drivers import run_drivers_demo

    out.mkdir(parents=True, exist_ok=True)
    day_ok = run_day(out)
    click.echo()
    click.echo("== Two kiosks offline at once: strict mode never overspends")
    ledger_ok = run_ledger_demo(out / "offline")
    click.echo()
    click.echo("== Over MQTT: two kiosks, the cloud reconciler, a broker outage and the healing")
    sync_ok = run_sync(out / "sync")
    click.echo()
    click.echo("== The drivers on their own: scanner, gate, coin acceptor, display")
    for line in run_drivers_demo(out / "drivers"):
        click.echo(f"   {line}")
    if not (day_ok and ledger_ok and sync_ok):
        raise click.ClickException("the money did not add up: see the tables above")
