"""Fleet simulation bench (DESIGN.md section 8): over a day with a 2-hour site outage, strict
mode approves >= 99% of what one always-online central server would, with overspend exactly 0,
where the common offline practice overspends. Runs `kiosk sim fleet`'s default scenario."""

from __future__ import annotations

import os

from bench.report import Row, row
from kiosk.sim import fleet, scenario

# Smaller than the CLI default so that `make bench` stays in minutes on two cores.
KIOSKS = int(os.environ.get("KIOSK_BENCH_SIM_KIOSKS", "20"))
MEMBERS = int(os.environ.get("KIOSK_BENCH_SIM_MEMBERS", "2000"))


def run() -> list[Row]:
    sc = scenario.load(None).with_fleet(kiosks=KIOSKS, members=MEMBERS)
    report = fleet.simulate(sc, None, plots=False, jobs=2)
    if not report["ok"]:
        broken = [c for c in report["invariants"] if not c["ok"]]
        raise AssertionError(f"fleet simulation broke invariants: {broken}")
    p = report["policies"]
    online, strict, risk, common = p["online"], p["strict"], p["risk"], p["common"]
    allowance = sc.policies.risk_total * report["fleet"]["kiosks"]
    return [
        row(
            "sim_strict_approvals",
            "taps",
            strict["approved"],
            "always_online_approvals",
            online["approved"],
            ">= 0.99",
        ),
        row(
            "sim_risk_approvals",
            "taps",
            risk["approved"],
            "always_online_approvals",
            online["approved"],
            ">= 0.99",
        ),
        row(
            "sim_common_approvals",
            "taps",
            common["approved"],
            "always_online_approvals",
            online["approved"],
            "(baseline)",
        ),
        row(
            "sim_strict_overspend",
            "cash",
            strict["overspend"]["cash"],
            "common_practice_overspend",
            common["overspend"]["cash"],
            "value == 0",
        ),
        row(
            "sim_risk_overspend",
            "cash",
            risk["overspend"]["cash"],
            "risk_allowance_fleet",
            allowance,
            "<= 1.0",
        ),
        row(
            "sim_strict_batch_bytes_per_op",
            "B",
            strict["wire"]["batch_bytes_per_op"],
            "wire_budget_per_op",
            160,
            "<= 1.0",
        ),
        # Everything on the wire per kiosk op: acks, hellos, rights requests, and the cloud's
        # chain, which every kiosk receives whole (each grant to any kiosk reaches all).
        row(
            "sim_strict_all_bytes_per_op",
            "B",
            strict["wire"]["bytes_per_op"],
            "wire_budget_per_op",
            160,
            "(information)",
        ),
    ]
