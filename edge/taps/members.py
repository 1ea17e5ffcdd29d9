"""Between the ledger and the rules: read what a tap needs to know, and turn a decision into ops."""

from __future__ import annotations

from dataclasses import replace

from edge.ledger import Intent, Kind, Ledger
from edge.ledger import records as r
from edge.ledger.membership import CardStatus, points_lots
from edge.taps.rules import Balance, Card, Decision, Member, Movement, Pass

LOT_HISTORY = 500  # ops of a member read for points lots (older credits count as the oldest)


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _registers(ledger: Ledger, account: str) -> dict[str, str]:
    """Every register of an account in one query (a tap reads a dozen of them)."""
    return {reg.name: reg.value for reg in ledger.registers(account)}


def read_card(ledger: Ledger, ref: str) -> Card | None:
    regs = _registers(ledger, r.card_account(ref))
    member = regs.get(r.CARD_MEMBER)
    if not member:
        return None
    raw_status = regs.get(r.CARD_STATUS) or "active"
    try:
        status = CardStatus(raw_status)
    except ValueError:
        status = CardStatus.FROZEN  # an unknown status fails closed
    return Card(
        ref=ref,
        member=member,
        status=status,
        valid_from_ms=_int(regs.get(r.CARD_VALID_FROM)),
        valid_until_ms=_int(regs.get(r.CARD_VALID_UNTIL)),
        discount_pct=min(max(_int(regs.get(r.CARD_DISCOUNT)), 0), 100),
        last_entry_ms=_int(regs.get(r.LAST_ENTRY)),
    )


def read_member(ledger: Ledger, member_id: str) -> Member | None:
    regs = _registers(ledger, member_id)
    name = regs.get(r.MEMBER_NAME)
    if name is None:
        return None
    passes = []
    for reg_name, value in sorted(regs.items()):
        if reg_name.startswith(r.PASS_PREFIX):
            start, _, end = value.partition("-")
            passes.append(Pass(reg_name[len(r.PASS_PREFIX) :], _int(start), _int(end)))
    return Member(
        id=member_id,
        name=name,
        tier=regs.get(r.MEMBER_TIER) or "",
        pin_hash=regs.get(r.MEMBER_PIN) or "",
        pin_fails=_int(regs.get(r.PIN_FAILS)),
        pin_locked_until_ms=_int(regs.get(r.PIN_LOCKED_UNTIL)),
        passes=tuple(passes),
        role=regs.get(r.MEMBER_ROLE) or "",
        progress_offset=_int(regs.get(r.PROGRESS_OFFSET)),
        spend_offset=_int(regs.get(r.SPEND_OFFSET)),
        category=regs.get(r.MEMBER_CATEGORY) or "",
    )


def read_balances(
    ledger: Ledger, account: str, points_lifetime_days: int = 0
) -> dict[str, Balance]:
    """Every purse of the account as this kiosk knows it; points with the lots still held."""
    balances = {
        st.purse: Balance(
            value=st.value,
            rights=st.rights(ledger.replica),
            lower_bound=st.lower_bound,
            earned=sum(s.inc for s in st.shares),
            spent=sum(s.dec for s in st.shares),
        )
        for st in ledger.purses(account)
    }
    points = balances.get("points")
    # The lots matter only where points lapse: otherwise no history is read at a tap (a
    # member's history only grows, a tap's work must not).
    if points is not None and points.value > 0 and points_lifetime_days > 0:
        ops = ledger.history(account, LOT_HISTORY, purse="points")
        lots = points_lots(ops, points.value, points_lifetime_days)
        balances["points"] = replace(points, lots=tuple(lots))
    return balances


def read_movements(ledger: Ledger, account: str, n: int = 3) -> list[Movement]:
    """The member's last `n` movements of cash, points and visits, newest first (rights moving
    between kiosk and cloud are not movements of the member's money)."""
    found: list[Movement] = []
    for op in ledger.history(account, 50):
        if op.kind is Kind.XFER or op.kind is Kind.SET:
            continue
        if op.purse not in ("cash", "points") and not op.purse.startswith("visits:"):
            continue
        sign = 1 if op.kind is Kind.INC else -1
        found.append(Movement(op.purse, sign * op.amount, op.wall_ms))
        if len(found) >= n:
            break
    return found


def intents_for(decision: Decision, member_id: str, now_ms: int) -> list[Intent]:
    """The ops a decision writes, in one transaction: debits, credits, register writes."""
    intents = [Intent(Kind.DEC, m.account or member_id, m.purse, m.amount) for m in decision.debits]
    intents += [
        Intent(Kind.INC, m.account or member_id, m.purse, m.amount) for m in decision.credits
    ]
    # Kiosk-written registers (PIN failures, lockouts) are last-writer-wins by wall time.
    intents += [Intent(Kind.SET, w.account, w.name, now_ms, data=w.value) for w in decision.writes]
    return intents
