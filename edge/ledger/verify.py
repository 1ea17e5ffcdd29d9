"""Verification of every chain a ledger holds: signatures, hash links, seq gaps, and the
materialised purse totals against the ops. Finds tampering and names it; repairs nothing."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from edge.ledger.chain import TOTALS, moves
from edge.ledger.errors import LedgerTampered
from edge.ledger.op import GENESIS, Op
from edge.ledger.store import Ledger


@dataclass(slots=True)
class ChainSummary:
    replica: str
    ops: int = 0
    head_seq: int = 0


@dataclass(slots=True)
class VerifyReport:
    chains: dict[str, ChainSummary] = field(default_factory=dict)
    problems: list[LedgerTampered] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def total_ops(self) -> int:
        return sum(c.ops for c in self.chains.values())


def verify(ledger: Ledger, *, stop_at_first: bool = False) -> VerifyReport:
    """Check every chain; collect each problem with the replica and seq where it is found."""
    report = VerifyReport()
    totals: dict[tuple[str, str, str, str], int] = defaultdict(int)
    heads = ledger.heads()
    chain: ChainSummary | None = None
    prev = GENESIS
    broken: set[str] = set()
    for stored in ledger.stored_ops():
        op = stored.op
        if op is None:
            _problem(report, stored.replica, stored.seq, stored.error)
            continue
        if chain is None or chain.replica != op.replica:
            if chain is not None:
                _close_chain(report, chain, heads)
            chain = report.chains.setdefault(op.replica, ChainSummary(op.replica))
            prev = GENESIS
        chain.ops += 1
        if op.replica not in broken:
            what = _check_op(ledger, op, chain.head_seq, prev, stored.hash)
            if what:
                _problem(report, op.replica, op.seq, what)
                broken.add(op.replica)  # one report per chain: what follows cannot be trusted
                if stop_at_first:
                    return report
        chain.head_seq = op.seq
        prev = op.hash()
        for replica, column, amount in moves(op):
            totals[(op.account, op.purse, replica, column)] += amount
    if chain is not None:
        _close_chain(report, chain, heads)
    _check_shares(ledger, report, totals)
    return report


def _check_op(ledger: Ledger, op: Op, last_seq: int, prev: bytes, stored_hash: bytes) -> str:
    key = ledger.public_key(op.replica)
    if key is None:
        return "no trusted key for this replica"
    if op.seq != last_seq + 1:
        return f"seq gap: expected {last_seq + 1}"
    if op.prev != prev:
        return "hash link broken: prev does not match the previous op"
    if not op.signature_ok(key):
        return "signature does not verify (op altered after signing)"
    if op.hash() != stored_hash:
        return "stored hash does not match the op"
    return ""


def _close_chain(report: VerifyReport, chain: ChainSummary, heads: dict[str, int]) -> None:
    head = heads.get(chain.replica)
    if head != chain.head_seq:
        _problem(report, chain.replica, chain.head_seq, f"chain head says seq {head}")


def _check_shares(
    ledger: Ledger,
    report: VerifyReport,
    totals: dict[tuple[str, str, str, str], int],
) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for account, purse, share in ledger.totals():
        replica = share.replica
        for column in TOTALS:
            stored = getattr(share, column)
            k = (account, purse, replica, column)
            seen.add(k)
            if totals.get(k, 0) != stored:
                _problem(
                    report,
                    replica,
                    0,
                    f"purse total {column} of {purse}/{account} is {stored},"
                    f" the ops say {totals.get(k, 0)}",
                )
    for k, v in totals.items():
        if k not in seen and v:
            _problem(report, k[2], 0, f"purse total {k[3]} of {k[1]}/{k[0]} missing")


def _problem(report: VerifyReport, replica: str, seq: int, what: str) -> None:
    report.problems.append(LedgerTampered(replica, seq, what))
