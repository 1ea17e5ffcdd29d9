"""One fleet simulation: build the population and the starting state once, run every policy on
it, check the invariants, and write the report (and plots) under the output folder."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.sim import metrics, population, world
from edge.sim.policies import POLICIES, CentralRun, EscrowRun, Run
from edge.sim.scenario import Scenario, ScenarioError


def _scratch() -> Path:
    """Databases go to tmpfs when there is one: the simulation measures policies, not disks."""
    shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp inside it
    return Path(tempfile.mkdtemp(prefix="kiosk-sim-", dir=shm if shm.is_dir() else None))


def _check_targets(scenario: Scenario, pop: population.Population) -> None:
    kiosks = {k.id for k in pop.kiosks}
    for o in scenario.outage:
        if o.kind == "site" and o.target not in pop.sites:
            raise ScenarioError(f"outage of unknown site {o.target!r} (sites: {pop.sites})")
        if o.kind == "kiosk" and o.target not in kiosks:
            raise ScenarioError(f"outage of unknown kiosk {o.target!r}")


def make_run(
    name: str, scenario: Scenario, pop: population.Population, seed: world.Seed, folder: Path
) -> Run:
    if name in ("online", "common"):
        return CentralRun(scenario, pop, seed, folder, common=name == "common")
    if name in ("strict", "risk"):
        return EscrowRun(scenario, pop, seed, folder, risk=name == "risk")
    raise ScenarioError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})")


def simulate(
    scenario: Scenario,
    out: Path | None = None,
    *,
    policies: Sequence[str] = POLICIES,
    plots: bool = True,
) -> dict[str, Any]:
    """Run the scenario under each policy; the report as a dict (also written to
    `out/report.json` with the plots when `out` is given)."""
    started = time.perf_counter()
    pop = population.build(scenario)
    _check_targets(scenario, pop)
    scratch = _scratch()
    try:
        seed = world.build_seed(scratch / "seed", pop, scenario.fleet.seed)
        results = {}
        for name in policies:
            run = make_run(name, scenario, pop, seed, scratch / name)
            results[name] = asyncio.run(run.execute())
        report = _report(scenario, pop, results)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if plots:
                from edge.sim.plots import draw_all

                report["plots"] = [p.name for p in draw_all(report, results, scenario, out)]
            (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        for r in results.values():
            r.store.close()
            for led in r.kiosks.values():
                led.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    if out is not None:
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _versus(
    pop: population.Population, base: Any, other: Any
) -> dict[str, Any]:
    """Attempts the always-online server approved and this policy refused (by reason), and the
    other way round; refusals for lack of balance split by whether the member had topped up at
    a kiosk earlier (a top-up the refusing kiosk's ledger does not hold)."""
    topped: dict[int, int] = {}
    for tap in pop.taps:
        if tap.action is population.Action.TOPUP:
            topped.setdefault(tap.member, tap.at_ms)
    lost: dict[str, int] = {}
    after_topup = gained = 0
    for tap in pop.taps:
        mine, theirs = other.outcomes.get(tap.n), base.outcomes.get(tap.n)
        if theirs == "" and mine:
            lost[mine] = lost.get(mine, 0) + 1
            if mine == "INSUFFICIENT_BALANCE" and topped.get(tap.member, tap.at_ms) < tap.at_ms:
                after_topup += 1
        elif theirs and mine == "":
            gained += 1
    return {
        "lost": dict(sorted(lost.items(), key=lambda kv: (-kv[1], kv[0]))),
        "lost_insufficient_after_kiosk_topup": after_topup,
        "gained": gained,
    }


def _report(
    scenario: Scenario, pop: population.Population, results: dict[str, Any]
) -> dict[str, Any]:
    policies: dict[str, Any] = {}
    checks: list[metrics.Check] = []
    for name, result in results.items():
        spent = metrics.overspend(result.store)
        policies[name] = metrics.policy_report(result, spent)
        checks += metrics.invariants(result, spent)
    base = policies.get("online", {}).get("approved", 0)
    for p in policies.values():
        p["vs_online"] = round(p["approved"] / base, 4) if base else None
    if "online" in results:
        for name, result in results.items():
            policies[name]["vs_online_taps"] = _versus(pop, results["online"].record, result.record)
    return {
        "scenario": scenario.model_dump(mode="json"),
        "fleet": {
            "sites": len(pop.sites),
            "kiosks": len(pop.kiosks),
            "members": len(pop.members),
            "attempts": len(pop.taps),
        },
        "policies": policies,
        "invariants": [c.as_dict() for c in checks],
        "ok": all(c.ok for c in checks),
    }
