"""From finished runs to the report: overspend replayed from the stored chains, the money
invariants, and per-policy figures (approvals, refusals, rights requests, bytes on the wire)."""

from __future__ import annotations

import sqlite3
import statistics
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from edge.ledger import Kind, Ledger
from edge.ledger.purse import purse_unit
from edge.ledger.records import COUPON_PREFIX
from kiosk.sim.policies import Result
from kiosk.sim.world import CLOUD


@dataclass(frozen=True, slots=True)
class Check:
    policy: str
    name: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "check": self.name, "ok": self.ok, "detail": self.detail}


def unit_of(account: str, purse: str) -> str:
    return "coupon" if account.startswith(COUPON_PREFIX) else purse_unit(purse)


def overspend(store: Ledger) -> dict[str, Any]:
    """Replay every purse's credits and debits in time order (credits first at a tie): the
    deepest a purse went below its bound is what was spent without being there."""
    with closing(_read(store)) as conn:
        rows = conn.execute(
            "SELECT account, purse, kind, amount FROM ops WHERE kind IN (?, ?, ?)"
            " ORDER BY account, purse, wall_ms, kind = ?, replica, seq",
            (int(Kind.INC), int(Kind.DEC), int(Kind.DEBT), int(Kind.INC)),
        ).fetchall()
        limits = {
            (a, name.split(":", 1)[1]): int(v)
            for a, name, v in conn.execute(
                "SELECT account, name, value FROM registers WHERE name LIKE 'limit:%'"
            )
        }
    deepest: dict[tuple[str, str], int] = {}
    value: dict[tuple[str, str], int] = defaultdict(int)
    for account, purse, kind, amount in rows:
        key = (account, purse)
        value[key] += amount if kind == Kind.INC else -amount
        short = -limits.get(key, 0) - value[key]
        if short > deepest.get(key, 0):
            deepest[key] = short
    by_unit: dict[str, int] = defaultdict(int)
    by_member: dict[str, int] = defaultdict(int)
    for (account, purse), short in deepest.items():
        unit = unit_of(account, purse)
        by_unit[unit] += short
        if unit == "cash":
            by_member[account] += short
    worst = max(by_member.items(), key=lambda kv: (kv[1], kv[0]), default=("", 0))
    return {
        "cash": by_unit.get("cash", 0),
        "by_unit": dict(sorted(by_unit.items())),
        "members": len(by_member),
        "worst_member": {"account": worst[0], "amount": worst[1]},
    }


def double_applied(store: Ledger) -> int:
    """Ops of one tap written twice: the same tap id on one chain with the same effect, or on
    two chains."""
    with closing(_read(store)) as conn:
        (same_chain,) = conn.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM ops"
            " WHERE ref != '' AND replica != ? GROUP BY replica, ref, kind, account, purse)",
            (CLOUD,),
        ).fetchone()
        (two_chains,) = conn.execute(
            "SELECT COUNT(*) FROM (SELECT ref FROM ops WHERE ref != '' AND replica != ?"
            " AND ref NOT LIKE 'recall:%' GROUP BY ref HAVING COUNT(DISTINCT replica) > 1)",
            (CLOUD,),
        ).fetchone()
    return int(same_chain) + int(two_chains)


def _read(ledger: Ledger) -> sqlite3.Connection:
    """The analyses read the finished ledger file on a read-only connection of their own."""
    return sqlite3.connect(f"file:{ledger.path}?mode=ro", uri=True)


def _chain(ledger: Ledger, replica: str) -> list[tuple[int, bytes]]:
    return [(op.seq, op.hash()) for op in ledger.ops(replica)]


def _shares(ledger: Ledger, replica: str) -> dict[tuple[str, str], tuple[int, ...]]:
    return {
        (a, p): t
        for a, p, s in ledger.totals(replica)
        if (t := (s.inc, s.dec, s.debt, s.xin, s.xout)) != (0, 0, 0, 0, 0)
    }


def invariants(result: Result, spent: dict[str, Any]) -> list[Check]:
    policy = result.record.policy
    checks: list[Check] = []
    store = result.store
    if result.kiosks:
        differ = [d for d, led in result.kiosks.items() if _chain(led, d) != _chain(store, d)]
        checks.append(
            Check(
                policy, "every kiosk op is at the cloud, identical", not differ, ", ".join(differ)
            )
        )
        behind = [
            d
            for d, led in result.kiosks.items()
            if _chain(led, CLOUD) != [(o.seq, o.hash()) for o in result.streams.get(d, [])]
        ]
        checks.append(
            Check(policy, "every kiosk holds its own stream", not behind, ", ".join(behind))
        )
        wrong = [e for online, e in result.record.balance_errors if online and e != 0]
        # With messages lost on the simulated network a lost snapshot leaves a kiosk behind
        # until the account's next one: then it is reported, not a broken invariant.
        lossy = bool(result.record.extra.get("lossy"))
        checks.append(
            Check(
                policy,
                "online, the balance shown is the true balance",
                not wrong or lossy,
                f"{len(wrong)} taps off (worst {max(wrong, key=abs) if wrong else 0})"
                + (" with messages lost on the network" if lossy and wrong else ""),
            )
        )
        disagree = [d for d, led in result.kiosks.items() if _shares(led, d) != _shares(store, d)]
        checks.append(
            Check(policy, "kiosk and cloud agree on its rights", not disagree, ", ".join(disagree))
        )
    checks.append(Check(policy, "no op lost", result.lost == 0, f"{result.lost} lost"))
    doubled = double_applied(store)
    checks.append(Check(policy, "no op applied twice", doubled == 0, f"{doubled} doubled"))
    if policy in ("strict", "online"):
        total = sum(spent["by_unit"].values())
        checks.append(Check(policy, "overspend is exactly 0", total == 0, f"{spent['by_unit']}"))
    if policy == "risk":
        allowance = result.risk_total * len(result.kiosks)
        others = sum(v for u, v in spent["by_unit"].items() if u != "cash")
        checks.append(
            Check(
                policy,
                "overspend within the risk allowance",
                spent["cash"] <= allowance and others == 0,
                f"cash {spent['cash']} <= {allowance} ({len(result.kiosks)} kiosks x"
                f" {result.risk_total}); other units {others}",
            )
        )
    return checks


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 3) if whole else 0.0


def policy_report(result: Result, spent: dict[str, Any]) -> dict[str, Any]:
    r = result.record
    attempts, approved = sum(r.attempts.values()), sum(r.approved.values())
    rtts = sorted(r.rpc_rtts)
    ops = int(r.extra.get("ops_sent", 0)) or r.offline_posted
    wire = r.bytes_up + r.bytes_down
    floats = [sum(s.values()) for s in r.float_samples.values()]
    return {
        "attempts": attempts,
        "approved": approved,
        "approval_pct": _pct(approved, attempts),
        "by_action": {
            a: {"attempts": n, "approved": r.approved.get(a, 0)}
            for a, n in sorted(r.attempts.items())
        },
        "refusals": dict(sorted(r.refusals.items(), key=lambda kv: (-kv[1], kv[0]))),
        "taps": r.taps,
        "retries": r.retries,
        "overspend": spent,
        "lost_ops": result.lost,
        "double_applied": double_applied(result.store),
        "convergence_s": r.convergence_s,
        "rights_requests": {
            "count": r.rpc_requests,
            "timeouts": r.rpc_timeouts,
            "rtt_ms_p50": statistics.median(rtts) if rtts else 0,
            "rtt_ms_p99": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] if rtts else 0,
        },
        "wire": {
            "bytes_up": r.bytes_up,
            "bytes_down": r.bytes_down,
            "ops": ops,
            "bytes_per_op": round(wire / ops, 1) if ops else 0.0,
            # Only the op batches, as DESIGN.md's wire budget counts them (<= 160 B per op).
            "batch_bytes_per_op": round(r.message_bytes["ops"] / ops, 1)
            if ops and r.message_bytes["ops"]
            else 0.0,
            "messages": dict(sorted(r.messages.items())),
        },
        "float_cash_held": {
            "peak_total": max(floats, default=0),
            "end_total": floats[-1] if floats else 0,
        },
        "offline": {"queued": r.offline_queued, "posted": r.offline_posted},
        "balance_shown": balance_table(r.balance_errors),
        "balance_online_with_an_op_in_flight": int(r.extra.get("balance_in_flight", 0)),
        "offline_taps": {
            "attempts": len(r.offline_taps),
            "approved": sum(1 for n in r.offline_taps if r.outcomes.get(n) == ""),
            "refused_held_elsewhere": sum(
                1 for n in r.offline_taps if r.outcomes.get(n) == "HELD_ELSEWHERE"
            ),
        },
        "per_kiosk": per_kiosk(result),
        "final_sync_s": r.extra.get("final_sync_s", 0.0),
    }


def balance_table(errors: list[tuple[bool, int]]) -> dict[str, Any]:
    """Shown cash balance against the true one, online and offline."""
    rows = {}
    for name, want in (("online", True), ("offline", False)):
        errs = [abs(e) for online, e in errors if online is want]
        rows[name] = {
            "taps": len(errs),
            "exact": sum(1 for e in errs if e == 0),
            "mean_abs_error": round(statistics.fmean(errs), 1) if errs else 0.0,
            "max_abs_error": max(errs, default=0),
        }
    return rows


def per_kiosk(result: Result) -> dict[str, float]:
    """What one kiosk carries: downlink bytes per day and ops held in its ledger."""
    r = result.record
    n = max(1, len(result.kiosks))
    days = max(r.extra.get("hours", 24.0), 1e-9) / 24
    ops = r.kiosk_ledger_ops
    return {
        "downlink_bytes_per_day": round(r.bytes_down / n / days, 1) if result.kiosks else 0.0,
        "ledger_ops": round(statistics.fmean(ops), 1) if ops else 0.0,
    }


def _false(p: dict[str, Any]) -> str:
    """False refusals online; in brackets those after a rights request timed out, and those
    for lack of balance after this policy had served the member more than the server."""
    if "false_refusals_online" not in p:
        return "-"
    extra = f"+{p['refusals_after_rpc_timeout']} t/o"
    if p.get("refusals_after_serving_more"):
        extra += f", +{p['refusals_after_serving_more']} spent"
    return f"{p['false_refusals_online']} ({extra})"


def balance_text(report: dict[str, Any]) -> str:
    """The balance error table and the per-kiosk load, printed after the comparison."""
    lines = [
        f"{'policy':<8}{'where':<9}{'taps':>7}{'exact':>7}{'mean err':>10}{'max err':>9}"
        f"{'false refusals':>16}{'down B/kiosk/day':>18}{'ledger ops/kiosk':>18}"
    ]
    for name, p in report["policies"].items():
        rows = p.get("balance_shown", {})
        for where in ("online", "offline"):
            b = rows.get(where)
            if not b:
                continue
            lines.append(
                f"{name:<8}{where:<9}{b['taps']:>7}{b['exact']:>7}{b['mean_abs_error']:>10}"
                f"{b['max_abs_error']:>9}{_false(p):>16}"
                f"{p['per_kiosk']['downlink_bytes_per_day']:>18}{p['per_kiosk']['ledger_ops']:>18}"
            )
    return "\n".join(lines)


def table(report: dict[str, Any]) -> str:
    """The comparison printed at the end of `kiosk sim fleet`."""
    pols = report["policies"]
    base = pols.get("online", {}).get("approved", 0)
    head = (
        f"{'policy':<8}{'attempts':>9}{'approved':>9}{'rate%':>8}{'vs online':>10}"
        f"{'overspend':>10}{'worst':>7}{'lost':>5}{'dbl':>4}{'rpc':>7}{'rtt p99':>8}"
        f"{'B/op':>7}{'batch':>6}{'conv s':>8}  top refusals"
    )
    lines = [head, "-" * len(head)]
    for name, p in pols.items():
        conv = [v for v in p["convergence_s"].values() if v is not None]
        refusals = ", ".join(f"{k} {v}" for k, v in list(p["refusals"].items())[:3])
        vs = f"{p['approved'] / base:.4f}" if base else "-"
        lines.append(
            f"{name:<8}{p['attempts']:>9}{p['approved']:>9}{p['approval_pct']:>8.2f}{vs:>10}"
            f"{p['overspend']['cash']:>10}{p['overspend']['worst_member']['amount']:>7}"
            f"{p['lost_ops']:>5}{p['double_applied']:>4}{p['rights_requests']['count']:>7}"
            f"{p['rights_requests']['rtt_ms_p99']:>8}{p['wire']['bytes_per_op']:>7.0f}"
            f"{p['wire']['batch_bytes_per_op']:>6.0f}"
            f"{(max(conv) if conv else 0):>8.1f}  {refusals}"
        )
    return "\n".join(lines)
