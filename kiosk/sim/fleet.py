"""One fleet simulation: build the population and the starting state once, run every policy on
it, check the invariants, and write the report (and plots) under the output folder."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.validation import dump
from kiosk.sim import metrics, population, world
from kiosk.sim.engine import Record
from kiosk.sim.policies import POLICIES, CentralRun, EscrowRun, Run
from kiosk.sim.scenario import Scenario, ScenarioError

NO_MATPLOTLIB = (
    "plots skipped: matplotlib is not installed; pip install 'kiosk-edge[sim]' to draw them"
)


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


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """A finished policy, reduced to what the report and plots need (picklable)."""

    record: Record
    report: dict[str, Any]
    checks: list[metrics.Check]


def run_policy(
    name: str, scenario: Scenario, pop: population.Population, seed: world.Seed, folder: Path
) -> PolicyRun:
    result = asyncio.run(make_run(name, scenario, pop, seed, folder).execute())
    try:
        spent = metrics.overspend(result.store)
        return PolicyRun(
            result.record,
            metrics.policy_report(result, spent),
            metrics.invariants(result, spent),
        )
    finally:
        result.store.close()
        for led in result.kiosks.values():
            led.close()


def simulate(
    scenario: Scenario,
    out: Path | None = None,
    *,
    policies: Sequence[str] = POLICIES,
    plots: bool = True,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run the scenario under each policy (`jobs` of them at once, in processes); the report
    as a dict (also written to `out/report.json` with the plots when `out` is given)."""
    started = time.perf_counter()
    pop = population.build(scenario)
    _check_targets(scenario, pop)
    for name in policies:
        if name not in POLICIES:
            raise ScenarioError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})")
    scratch = _scratch()
    try:
        seed = world.build_seed(scratch / "seed", pop, scenario.fleet.seed)
        args = [(n, scenario, pop, seed, scratch / n) for n in policies]
        if jobs > 1 and len(args) > 1:
            with ProcessPoolExecutor(min(jobs, len(args))) as pool:
                done = list(pool.map(run_policy, *zip(*args, strict=True)))
        else:
            done = [run_policy(*a) for a in args]
        runs = dict(zip(policies, done, strict=True))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = _report(scenario, pop, runs)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            try:
                from kiosk.sim.plots import draw_all
            except ImportError:  # matplotlib is the optional extra `sim`
                report["plots_skipped"] = NO_MATPLOTLIB
            else:
                records = {n: r.record for n, r in runs.items()}
                report["plots"] = [p.name for p in draw_all(report, records, scenario, out)]
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    if out is not None:
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _versus(pop: population.Population, base: Record, other: Record) -> dict[str, Any]:
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


def _false_refusals(
    pop: population.Population, base: Record, other: Record
) -> tuple[int, int, int]:
    """Taps refused by a kiosk that was online, which the always-online server approved: (those
    with no excuse, those during which a rights request timed out on the simulated network,
    those for lack of balance of a member this policy had served more: it approved an earlier
    tap of theirs the server refused, during an outage, so the member truly had less left)."""
    served_more: dict[int, int] = {}  # member -> first tap approved here, refused by the server
    refused = []
    for tap in pop.taps:
        mine, theirs = other.outcomes.get(tap.n), base.outcomes.get(tap.n)
        if mine == "" and theirs:
            served_more.setdefault(tap.member, tap.n)
        elif mine and theirs == "" and tap.n not in other.offline_taps:
            refused.append(tap)
    spent_more = [
        t
        for t in refused
        if other.outcomes[t.n] == "INSUFFICIENT_BALANCE" and served_more.get(t.member, t.n) < t.n
    ]
    timed_out = sum(1 for t in refused if t.n in other.timeout_taps and t not in spent_more)
    return len(refused) - timed_out - len(spent_more), timed_out, len(spent_more)


def _report(
    scenario: Scenario, pop: population.Population, runs: dict[str, PolicyRun]
) -> dict[str, Any]:
    policies: dict[str, Any] = {n: r.report for n, r in runs.items()}
    checks = [c for r in runs.values() for c in r.checks]
    base = policies.get("online", {}).get("approved", 0)
    for p in policies.values():
        p["vs_online"] = round(p["approved"] / base, 4) if base else None
    if "online" in runs:
        for name, r in runs.items():
            policies[name]["vs_online_taps"] = _versus(pop, runs["online"].record, r.record)
            if name in ("strict", "risk"):
                false, timed_out, spent_more = _false_refusals(pop, runs["online"].record, r.record)
                policies[name]["false_refusals_online"] = false
                policies[name]["refusals_after_rpc_timeout"] = timed_out
                policies[name]["refusals_after_serving_more"] = spent_more
                checks.append(
                    metrics.Check(
                        name,
                        "online, no refusal the always-online server would not make",
                        false == 0,
                        f"{false} false refusals",
                    )
                )
    return {
        "scenario": dump(scenario),
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
