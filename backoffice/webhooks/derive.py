"""Events from the ops the cloud store received (a pure function of a page of the op feed):
a kiosk's paid tap, money onto a member, a refund, a card status change, a low balance after a
tap. Ops of one tap share their replica and tap id (`ref`) and arrive together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from edge.ledger import Kind
from edge.ledger import records as rec
from edge.ledger.op import Op


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    id: str  # stable: the same op always makes the same event id (a retry is recognisable)
    data: dict[str, Any] = field(default_factory=dict)
    site: str = ""


def _member(account: str) -> bool:
    return ":" not in account


def _moves(ops: Sequence[Op], kinds: tuple[Kind, ...]) -> list[dict[str, Any]]:
    return [
        {"account": o.account, "purse": o.purse, "amount": o.amount} for o in ops if o.kind in kinds
    ]


def events_of(
    ops: Sequence[Op],
    cloud: str,
    site_of: Callable[[str], str],
    cash_of: Callable[[str], int],
    low_balance: int,
) -> list[Event]:
    out: list[Event] = []
    for (replica, ref), run in groupby(ops, key=lambda o: (o.replica, o.ref)):
        tap = list(run)
        first = tap[0]
        eid = f"{replica}:{first.seq}"
        when = {"replica": replica, "ref": ref, "wall_ms": first.wall_ms}
        site = "" if replica == cloud else site_of(replica)
        spends = [o for o in tap if o.kind in (Kind.DEC, Kind.DEBT)]
        credits = [o for o in tap if o.kind is Kind.INC and _member(o.account)]
        if replica != cloud and any(_member(o.account) or o.purse == "use" for o in spends):
            members = sorted({o.account for o in spends if _member(o.account)})
            out.append(Event("tap.approved", eid, {
                **when, "kiosk": replica, "account": members[0] if members else "",
                "debits": _moves(tap, (Kind.DEC, Kind.DEBT)), "credits": _moves(tap, (Kind.INC,)),
                "on_debt": any(o.kind is Kind.DEBT for o in spends),
            }, site))  # fmt: skip
            for m in members:
                if any(o.account == m and o.purse == "cash" for o in spends):
                    balance = cash_of(m)
                    if balance <= low_balance:
                        data = {**when, "account": m, "cash": balance, "threshold": low_balance}
                        out.append(Event("balance.low", f"{eid}:low:{m}", data, site))
        elif replica == cloud and ref.startswith("refund:"):
            members = sorted({o.account for o in tap if _member(o.account) and o.kind != Kind.SET})
            out.append(Event("refund", eid, {
                **when, "account": members[0] if members else "",
                "cash": sum(o.amount for o in credits if o.purse == "cash"),
                "moves": _moves(tap, (Kind.INC, Kind.DEC)),
                "reason": next((o.data for o in tap if o.data), ""),
            }))  # fmt: skip
        elif credits and not spends and not ref.startswith("correct:"):
            for o in credits:
                source = "counter" if replica == cloud else "kiosk"
                out.append(Event("topup", f"{replica}:{o.seq}", {
                    **when, "account": o.account, "purse": o.purse, "amount": o.amount,
                    "source": source, "receipt": ref if replica == cloud else "",
                }, site))  # fmt: skip
        for o in tap:
            if (
                o.kind is Kind.SET
                and o.purse == rec.CARD_STATUS
                and o.account.startswith(rec.CARD_PREFIX)
            ):
                card = o.account.removeprefix(rec.CARD_PREFIX)
                data = {**when, "card": card, "status": o.data}
                out.append(Event("card.status", f"{replica}:{o.seq}", data, site))
    return out
