"""A small site for pipeline tests: a cloud ledger that enrolls members and grants rights to a
kiosk ledger, and a recorder of the kiosk's physical feedback."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.config import KioskConfig
from edge.drivers.base import Token, TokenKind
from edge.ledger import Intent, Kind, Ledger
from edge.ledger import records as rec
from edge.taps.pipeline import Outcome
from edge.taps.tokens import card_ref
from edge.validation import load

SITE_KEY = b"site-key-for-tests-0123456789abc"
VERSION = 1_000


@dataclass
class RecordingFeedback:
    """Order matters: `events` interleaves gate signals and screens as they happened."""

    events: list[str] = field(default_factory=list)
    shown: list[Outcome] = field(default_factory=list)
    gate_opened_with_durable_op: list[bool] = field(default_factory=list)
    ledger: Ledger | None = None

    async def open_gate(self) -> None:
        self.events.append("gate")
        if self.ledger is not None:
            # the op must already be committed: a fresh connection sees it
            import sqlite3

            conn = sqlite3.connect(self.ledger.path)
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM ops WHERE replica = ?", (self.ledger.replica,)
            ).fetchone()
            conn.close()
            self.gate_opened_with_durable_op.append(n > 0)

    async def show(self, outcome: Outcome) -> None:
        d = outcome.decision
        self.events.append("pin?" if d.needs_pin else "approved" if d.approved else "denied")
        self.shown.append(outcome)

    async def service(self, lines: list[str]) -> None:
        self.events.append("service")

    async def idle(self) -> None:
        self.events.append("idle")


def nfc(uid: str, authenticated: bool = True) -> Token:
    kind = TokenKind.NTAG424_SUN if authenticated else TokenKind.NFC_UID
    return Token(kind, uid, authenticated)


def enroll(
    cloud: Ledger,
    member: str,
    name: str,
    uid: str,
    *,
    purses: dict[str, int] | None = None,
    tier: str = "",
    pin_hash: str = "",
    status: str = "active",
) -> str:
    ref = card_ref(SITE_KEY, nfc(uid))
    cloud.append(rec.member_intents(member, name, VERSION, tier=tier, pin_hash=pin_hash))
    cloud.append(rec.card_intents(ref, member, VERSION, status=status))
    for purse, amount in (purses or {}).items():
        cloud.append([Intent(Kind.INC, member, purse, amount)])
    return ref


def grant(cloud: Ledger, kiosk: Ledger, account: str, purse: str, amount: int) -> None:
    cloud.append([Intent(Kind.XFER, account, purse, amount, counterpart=kiosk.replica)])


def sync_down(cloud: Ledger, kiosk: Ledger) -> None:
    kiosk.apply_many(list(cloud.ops("cloud")))


def gate_config(**rules: object) -> KioskConfig:
    return load(
        KioskConfig,
        {
            "kiosk": {"id": "k1", "site": "pool", "role": "gate", "product": "swim"},
            "rules": {
                "products": {"swim": {"name": "Swim", "price": 2000}},
                "passback_minutes": 0,
                **rules,
            },
        },
    )
