"""Purses as bounded counters (escrow): per-replica shares, rights, value, and the spend check.

Pure functions of state; the store calls them inside its write transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.ledger.errors import Refusal, SpendRefused
from edge.ledger.op import Kind


def purse_unit(purse: str) -> str:
    """`visits:swim` -> `visits`; `cash` -> `cash`. Risk limits are set per unit."""
    return purse.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Share:
    """What one replica has done to one purse: the totals its own chain (and xfers to it) say."""

    replica: str
    inc: int = 0
    dec: int = 0  # includes debt
    debt: int = 0
    xin: int = 0
    xout: int = 0

    @property
    def own_rights(self) -> int:
        return self.inc + self.xin - self.xout - self.dec


@dataclass(frozen=True, slots=True)
class PurseState:
    """One purse of one account as this replica sees it."""

    account: str
    purse: str
    shares: tuple[Share, ...]
    credit_limit: int = 0  # overdraft, held as rights by the cloud
    cloud: str | None = None

    @property
    def value(self) -> int:
        return sum(s.inc for s in self.shares) - sum(s.dec for s in self.shares)

    @property
    def lower_bound(self) -> int:
        return -self.credit_limit

    @property
    def debt(self) -> int:
        return sum(s.debt for s in self.shares)

    def share(self, replica: str) -> Share:
        for s in self.shares:
            if s.replica == replica:
                return s
        return Share(replica)

    def rights(self, replica: str) -> int:
        extra = self.credit_limit if replica == self.cloud else 0
        return self.share(replica).own_rights + extra


@dataclass(frozen=True, slots=True)
class RiskLimit:
    """Offline risk allowance for one purse unit: what one tap, and all open debt, may reach."""

    per_tap: int
    total: int


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """Per purse unit (`cash`, `points`, ...). Units not listed are strict: spend only rights."""

    limits: Mapping[str, RiskLimit] = field(default_factory=dict)

    def limit(self, purse: str) -> RiskLimit:
        return self.limits.get(purse_unit(purse), RiskLimit(0, 0))


STRICT = RiskPolicy()


def plan_spend(
    *,
    kind: Kind,
    account: str,
    purse: str,
    amount: int,
    rights: int,
    open_debt: int,
    policy: RiskPolicy,
) -> Kind:
    """Decide how a debit or transfer is written: DEC/XFER within rights, DEBT under the risk
    allowance, or refused with a named reason. `open_debt` is this replica's outstanding debt
    over all purses of the same unit."""
    if amount <= 0:
        raise SpendRefused(Refusal.BAD_AMOUNT, account, purse, amount, rights)
    if amount <= rights:
        return kind
    if kind is Kind.XFER:
        raise SpendRefused(Refusal.INSUFFICIENT_RIGHTS, account, purse, amount, rights)
    limit = policy.limit(purse)
    if limit.per_tap <= 0 and limit.total <= 0:
        raise SpendRefused(Refusal.INSUFFICIENT_RIGHTS, account, purse, amount, rights)
    shortfall = amount - max(rights, 0)
    if shortfall > limit.per_tap:
        raise SpendRefused(Refusal.RISK_PER_TAP, account, purse, amount, rights)
    if open_debt + shortfall > limit.total:
        raise SpendRefused(Refusal.RISK_TOTAL, account, purse, amount, rights)
    return Kind.DEBT
