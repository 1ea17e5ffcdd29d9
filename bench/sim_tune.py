"""Escrow policy tuning with the fleet simulation (docs/escrow-policy.md): strict mode under
each candidate EscrowPolicy on the default scenario, against the always-online server.

    python -m bench.sim_tune [--kiosks 50 --members 5000 --jobs 2]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from cloud_sync.settings import EscrowPolicy
from kiosk.sim import fleet, scenario

CANDIDATES: dict[str, dict[str, Any]] = {
    "A (old default)": {"float_fraction": 0.25, "request_headroom": True, "idle_recall_s": 3600},
    "B fraction 0.1": {"float_fraction": 0.1, "request_headroom": True, "idle_recall_s": 3600},
    "C fraction 0.5": {"float_fraction": 0.5, "request_headroom": True, "idle_recall_s": 3600},
    "D fraction 1.0": {"float_fraction": 1.0, "request_headroom": True, "idle_recall_s": 3600},
    "E no headroom": {"float_fraction": 0.25, "request_headroom": False, "idle_recall_s": 3600},
    "F recall 15 min": {"float_fraction": 0.25, "request_headroom": True, "idle_recall_s": 900},
    "G recall 4 h": {"float_fraction": 0.25, "request_headroom": True, "idle_recall_s": 14400},
    "H 0.5, recall 4 h": {"float_fraction": 0.5, "request_headroom": True, "idle_recall_s": 14400},
    "I 0.5, cap 50.00": {
        "float_fraction": 0.5,
        "float_max": {"cash": 5000},
        "request_headroom": True,
        "idle_recall_s": 3600,
    },
}


def one(args: tuple[str, dict[str, Any], scenario.Scenario]) -> tuple[str, dict[str, Any]]:
    label, escrow, sc = args
    report = fleet.simulate(
        sc.with_escrow(EscrowPolicy(**escrow)), None, policies=("strict",), plots=False
    )
    return label, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiosks", type=int)
    ap.add_argument("--members", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    sc = scenario.load(None).with_fleet(kiosks=a.kiosks, members=a.members, seed=a.seed)
    base = fleet.simulate(sc, None, policies=("online",), plots=False)["policies"]["online"]
    print(f"always-online server: {base['approved']} of {base['attempts']} approved")
    print(
        "| candidate | float_fraction | float_max | headroom | idle_recall_s | approved |"
        " vs online | held elsewhere | insufficient | rights requests | peak float | B/op |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with ProcessPoolExecutor(a.jobs) as pool:
        for label, report in pool.map(one, [(k, v, sc) for k, v in CANDIDATES.items()]):
            s = report["policies"]["strict"]
            e = CANDIDATES[label]
            assert report["ok"], report["invariants"]
            print(
                f"| {label} | {e['float_fraction']} | {e.get('float_max', {}) or '-'} |"
                f" {e['request_headroom']} | {e['idle_recall_s']:g} | {s['approved']} |"
                f" {s['approved'] / base['approved']:.4f} |"
                f" {s['refusals'].get('HELD_ELSEWHERE', 0)} |"
                f" {s['refusals'].get('INSUFFICIENT_BALANCE', 0)} |"
                f" {s['rights_requests']['count']} | {s['float_cash_held']['peak_total']} |"
                f" {s['wire']['bytes_per_op']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
