"""`kiosk sim ...`: the fleet simulation from the command line (a thin layer over
`kiosk.sim.fleet.simulate`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from kiosk.sim import metrics
from kiosk.sim.fleet import simulate
from kiosk.sim.policies import POLICIES
from kiosk.sim.scenario import ScenarioError, load


@click.group()
def sim() -> None:
    """Simulations of a whole fleet of kiosks."""


@sim.command("fleet")
@click.option("--kiosks", type=click.IntRange(3), help="Kiosks in all (default: scenario, 50).")
@click.option("--members", type=click.IntRange(1), help="Members (default: scenario, 5000).")
@click.option("--hours", type=click.FloatRange(0, 168, min_open=True), help="Simulated hours.")
@click.option("--seed", type=int, help="Random seed: same seed, same members, taps and report.")
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario TOML (fleet, network, outages, policy limits, escrow); default: a day with"
    " a 2-hour site outage.",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(POLICIES),
    help="Run only these policies (repeatable; default all four).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sim-out"),
    show_default=True,
    help="Folder for report.json and the PNG plots.",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=lambda: min(2, os.cpu_count() or 1),
    show_default="min(2, CPUs)",
    help="Policies run at once, one process each.",
)
def fleet(
    kiosks: int | None,
    members: int | None,
    hours: float | None,
    seed: int | None,
    scenario_file: Path | None,
    policies: tuple[str, ...],
    out: Path,
    no_plots: bool,
    jobs: int,
) -> None:
    """Simulate a fleet (sites, kiosks, members, outages) under four policies: always-online
    server, common offline practice, strict, risk allowance. Runs the real ledger, rules, agent
    message handling and reconciler on a simulated network and clock. Prints a comparison
    table, writes report.json and plots to --out, and exits 1 if a money invariant is broken."""
    try:
        scenario = load(scenario_file).with_fleet(
            kiosks=kiosks, members=members, hours=hours, seed=seed
        )
        if scenario_file is None:  # ours: fit its outage to the fleet asked for
            scenario = scenario.within_sites()
        report = simulate(
            scenario, out, policies=policies or POLICIES, plots=not no_plots, jobs=jobs
        )
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    f = report["fleet"]
    click.echo(
        f"{f['sites']} sites, {f['kiosks']} kiosks, {f['members']} members,"
        f" {scenario.fleet.hours:g} h, seed {scenario.fleet.seed}, {f['attempts']} attempts;"
        f" outages: {', '.join(o.label for o in scenario.outage) or 'none'}"
    )
    click.echo(metrics.table(report))
    click.echo()
    click.echo(metrics.balance_text(report))
    broken = [c for c in report["invariants"] if not c["ok"]]
    for c in report["invariants"]:
        mark = "ok " if c["ok"] else "BROKEN"
        click.echo(
            f"  [{mark}] {c['policy']}: {c['check']}" + ("" if c["ok"] else f": {c['detail']}")
        )
    click.echo(f"report: {out / 'report.json'}")
    if "plots_skipped" in report:
        click.echo(report["plots_skipped"])
    for name in report.get("plots", []):
        click.echo(f"plot: {out / name}")
    click.echo(f"wall time {report['runtime_s']} s")
    if broken:
        click.echo(f"{len(broken)} invariant(s) broken", err=True)
        sys.exit(1)
