"""Between the ledger and the rules: read what a tap needs to know, and turn a decision into ops."""

from __future__ import annotations

from edge.ledger import Intent, Kind, Ledger
from edge.ledger import records as r
from edge.ledger.membership import CardStatus
from edge.taps.rules import Balance, Card, Decision, Member, Pass


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _reg(ledger: Ledger, account: str, name: str) -> str | None:
    reg = ledger.register(account, name)
    return reg.value if reg else None


def read_card(ledger: Ledger, ref: str) -> Card | None:
    account = r.card_account(ref)
    member = _reg(ledger, account, r.CARD_MEMBER)
    if not member:
        return None
    raw_status = _reg(ledger, account, r.CARD_STATUS) or "active"
    try:
        status = CardStatus(raw_status)
    except ValueError:
        status = CardStatus.FROZEN  # an unknown status fails closed
    return Card(
        ref=ref,
        member=member,
        status=status,
        valid_from_ms=_int(_reg(ledger, account, r.CARD_VALID_FROM)),
        valid_until_ms=_int(_reg(ledger, account, r.CARD_VALID_UNTIL)),
    )


def read_member(ledger: Ledger, member_id: str) -> Member | None:
    name = _reg(ledger, member_id, r.MEMBER_NAME)
    if name is None:
        return None
    passes = []
    for reg in ledger.registers(member_id, r.PASS_PREFIX):
        start, _, end = reg.value.partition("-")
        passes.append(Pass(reg.name[len(r.PASS_PREFIX) :], _int(start), _int(end)))
    return Member(
        id=member_id,
        name=name,
        tier=_reg(ledger, member_id, r.MEMBER_TIER) or "",
        pin_hash=_reg(ledger, member_id, r.MEMBER_PIN) or "",
        pin_fails=_int(_reg(ledger, member_id, r.PIN_FAILS)),
        pin_locked_until_ms=_int(_reg(ledger, member_id, r.PIN_LOCKED_UNTIL)),
        passes=tuple(passes),
        role=_reg(ledger, member_id, r.MEMBER_ROLE) or "",
        progress_offset=_int(_reg(ledger, member_id, r.PROGRESS_OFFSET)),
    )


def read_balances(ledger: Ledger, account: str) -> dict[str, Balance]:
    return {
        st.purse: Balance(
            value=st.value,
            rights=st.rights(ledger.replica),
            lower_bound=st.lower_bound,
            earned=sum(s.inc for s in st.shares),
        )
        for st in ledger.purses(account)
    }


def intents_for(decision: Decision, member_id: str, now_ms: int) -> list[Intent]:
    """The ops a decision writes, in one transaction: debits, credits, register writes."""
    intents = [Intent(Kind.DEC, m.account or member_id, m.purse, m.amount) for m in decision.debits]
    intents += [
        Intent(Kind.INC, m.account or member_id, m.purse, m.amount) for m in decision.credits
    ]
    # Kiosk-written registers (PIN failures, lockouts) are last-writer-wins by wall time.
    intents += [Intent(Kind.SET, w.account, w.name, now_ms, data=w.value) for w in decision.writes]
    return intents
