"""A kiosk daemon on simulated drivers in a temporary folder, with a cloud ledger that enrolled
its members: the same code as a real kiosk, above gpiozero's mock pins and luma's dummy panel."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.config import KioskConfig
from edge.daemon.daemon import KioskDaemon
from edge.daemon.sdnotify import Notifier
from edge.drivers.base import Token, TokenKind
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes, save_private_key
from edge.ledger import records as rec
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.pipeline import Outcome
from edge.taps.tokens import card_ref
from edge.validation import load
from kiosk.link import link_factory


def kiosk_config(tmp: Path, role: str = "gate", **rules: Any) -> KioskConfig:
    return load(
        KioskConfig,
        {
            "kiosk": {
                "id": "gate-1",
                "site": "pool",
                "role": role,
                "product": "swim" if role == "gate" else "",
                "state_dir": str(tmp / "state"),
                "key_file": str(tmp / "device.key"),
                "site_key_file": str(tmp / "site.key"),
            },
            # The simulated taps are plain UID tags: this test site opts in to UID-only cards.
            "rules": {
                "products": {"swim": {"name": "Swim", "price": 2000}},
                "accept_uid_cards": True,
                **rules,
            },
            "nfc": {"backend": "sim"},
            "wedge": {"backend": "sim"},
            "keypad": {"backend": "sim", "mode": "pin"},
            "gpio": {
                "backend": "sim",
                "relay_pulse_s": 0.05,
                "coin_pin": 6,
                "coin_pulses": {1: 100, 5: 500},
            },
            "display": {"backend": "sim", "frames_dir": str(tmp / "frames")},
        },
    )


class Site:
    """The cloud side of a test: enrolls members and hands the kiosk rights before it starts."""

    def __init__(self, tmp: Path, cfg: KioskConfig) -> None:
        self.cfg = cfg
        create_site_key(cfg.kiosk.site_key_file)
        self.secrets = load_site_secrets(cfg.kiosk.site_key_file)
        key = generate_key()
        save_private_key(cfg.kiosk.key_file, key)
        cfg.kiosk.state_dir.mkdir(parents=True, exist_ok=True)
        self.cloud_key = generate_key()
        self.cloud = Ledger(tmp / "cloud.db", replica="cloud", key=self.cloud_key, role="cloud")
        self.cloud.trust(cfg.kiosk.id, public_bytes(key), "kiosk")
        self.kiosk_key = key

    def ref(self, uid: str) -> str:
        return card_ref(self.secrets.card_ref_key, Token(TokenKind.NFC_UID, uid, False))

    def enroll(self, member: str, name: str, uid: str, cash: int = 0, **registers: str) -> None:
        self.cloud.append(rec.member_intents(member, name, 1, **registers))
        self.cloud.append(rec.card_intents(self.ref(uid), member, 1))
        if cash:
            self.cloud.append([Intent(Kind.INC, member, "cash", cash)])
            self.cloud.append(
                [Intent(Kind.XFER, member, "cash", cash, counterpart=self.cfg.kiosk.id)]
            )

    def push(self) -> None:
        """Hand the kiosk every cloud op (before the daemon opens its ledger)."""
        k = self.cfg.kiosk
        led = Ledger(k.state_dir / "ledger.db", replica=k.id, key=self.kiosk_key)
        led.trust("cloud", public_bytes(self.cloud_key), "cloud")
        led.apply_many(list(self.cloud.ops("cloud")))
        led.close()


def task_stacks() -> str:
    """Every task of the running loop with where it waits: what a stuck stop is stuck on."""
    out = io.StringIO()
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        out.write(f"--- task {task.get_name()}\n")
        task.print_stack(limit=12, file=out)
    return out.getvalue()


async def stop_daemon(task: asyncio.Task[None], stop: asyncio.Event, timeout_s: float = 20) -> None:
    """Ask the daemon to stop and wait for it, bounded: a daemon that does not stop fails the
    test with the stack of every task, never hangs it. (Not `await task` under a timeout: that
    cancels the daemon and then waits, unbounded, for it to honour the cancel.)"""
    stop.set()
    done, _ = await asyncio.wait([task], timeout=timeout_s)
    if not done:
        stacks = task_stacks()
        task.cancel()
        raise AssertionError(f"the daemon did not stop within {timeout_s} s:\n{stacks}")
    task.result()  # its own failure, if any


@contextlib.asynccontextmanager
async def running(
    cfg: KioskConfig, notifier: Notifier | None = None
) -> AsyncIterator[tuple[KioskDaemon, asyncio.Queue[Outcome]]]:
    daemon = KioskDaemon(cfg, notifier=notifier or Notifier({}), link=link_factory(cfg))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon")
    try:
        ready = asyncio.create_task(daemon.ready.wait())
        await asyncio.wait([ready, task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            task.result()  # it failed at start: that failure
        assert daemon.ready.is_set(), "the daemon was not ready within 10 s"
        outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        assert daemon.feedback is not None
        daemon.feedback.observers.append(outcomes.put_nowait)
        yield daemon, outcomes
    finally:
        await stop_daemon(task, stop)


async def next_outcome(q: asyncio.Queue[Outcome]) -> Outcome:
    async with asyncio.timeout(5):
        return await q.get()
