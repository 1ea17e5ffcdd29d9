"""The fleet simulation: small seeded runs (seconds) that must keep every money invariant, be
reproducible, and show what the common offline practice costs that strict mode does not."""

from __future__ import annotations

import json
from pathlib import Path

import click.testing
import pytest

from kiosk.cli import cli
from kiosk.sim import fleet, scenario

SMALL = """
[fleet]
sites = 2
kiosks = 7
members = 120
hours = 24.0
seed = 7

[network]
delay_ms = [10, 80]

[[outage]]
kind = "site"
target = "s1"
start = 17.0
hours = 2.0

[[outage]]
kind = "kiosk"
target = "s0-pos3"
start = 11.0
hours = 1.5
"""

# Every kiosk cut off from the cloud through the busy hours: members spend at several kiosks
# that each still believe the balance they last heard.
LONG_CLOUD_OUTAGE = """
[fleet]
sites = 1
kiosks = 5
members = 80
hours = 24.0
seed = 11

[policies]
common_cap = 10000

[[outage]]
kind = "cloud"
start = 6.0
hours = 14.0
"""


@pytest.fixture(scope="module")
def small_report() -> dict:
    return fleet.simulate(scenario.parse(SMALL), None, plots=False)


def test_every_policy_keeps_the_invariants_in_a_small_day(small_report):
    assert set(small_report["policies"]) == {"online", "common", "strict", "risk"}
    broken = [c for c in small_report["invariants"] if not c["ok"]]
    assert not broken, broken
    assert small_report["ok"]
    names = {(c["policy"], c["check"]) for c in small_report["invariants"]}
    for policy in ("strict", "risk"):
        assert (policy, "every kiosk op is at the cloud, identical") in names
        assert (policy, "kiosk and cloud agree on its rights") in names
    assert ("risk", "overspend within the risk allowance") in names


def test_strict_mode_never_overspends_and_loses_nothing(small_report):
    strict = small_report["policies"]["strict"]
    assert strict["attempts"] > 100
    assert strict["overspend"]["by_unit"] == {}
    assert strict["lost_ops"] == 0
    assert strict["double_applied"] == 0
    assert strict["rights_requests"]["count"] > 0
    assert strict["wire"]["ops"] > 0
    # The site's kiosks came back and everything they wrote reached the cloud.
    assert all(v is not None for v in strict["convergence_s"].values())


def test_every_policy_sees_the_same_attempts(small_report):
    attempts = {p["attempts"] for p in small_report["policies"].values()}
    assert len(attempts) == 1
    assert small_report["fleet"]["attempts"] == attempts.pop()


def test_the_always_online_server_refuses_during_the_outage(small_report):
    online = small_report["policies"]["online"]
    assert online["refusals"].get("NO_SERVER", 0) > 0
    assert online["overspend"]["cash"] == 0


def test_same_seed_gives_the_same_report():
    sc = scenario.parse(SMALL).with_fleet(members=60)
    first = fleet.simulate(sc, None, policies=("strict", "common"), plots=False)
    # In two processes at once: nothing depends on the process or the order of the runs.
    again = fleet.simulate(sc, None, policies=("strict", "common"), plots=False, jobs=2)
    first.pop("runtime_s")
    again.pop("runtime_s")
    assert first == again
    other = fleet.simulate(sc.with_fleet(seed=8), None, policies=("strict",), plots=False)
    assert other["policies"]["strict"] != first["policies"]["strict"]


def test_common_practice_overspends_in_a_long_outage_where_strict_does_not():
    report = fleet.simulate(scenario.parse(LONG_CLOUD_OUTAGE), None, plots=False)
    pols = report["policies"]
    assert pols["common"]["overspend"]["cash"] > 0
    assert pols["common"]["overspend"]["worst_member"]["amount"] > 0
    assert pols["strict"]["overspend"]["by_unit"] == {}
    allowance = report["scenario"]["policies"]["risk_total"] * report["fleet"]["kiosks"]
    assert pols["risk"]["overspend"]["cash"] <= allowance
    assert report["ok"], [c for c in report["invariants"] if not c["ok"]]


def test_kiosk_sim_fleet_writes_the_report_and_plots(tmp_path: Path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    out = tmp_path / "out"
    result = click.testing.CliRunner().invoke(
        cli, ["sim", "fleet", "--scenario", str(path), "--members", "40", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "strict" in result.output and "BROKEN" not in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["fleet"]["members"] == 40
    assert report["plots"]
    for name in report["plots"]:
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert str(png) in result.output


def test_kiosk_sim_fleet_exits_1_when_an_invariant_breaks(tmp_path: Path, monkeypatch):
    from kiosk.sim import metrics

    real = metrics.invariants

    def broken(result, spent):
        checks = real(result, spent)
        return [*checks, metrics.Check(result.record.policy, "planted failure", False, "x")]

    monkeypatch.setattr(metrics, "invariants", broken)
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    result = click.testing.CliRunner().invoke(
        cli,
        [
            "sim",
            "fleet",
            "--scenario",
            str(path),
            "--members",
            "20",
            "--policy",
            "strict",
            "--no-plots",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1
    assert "BROKEN" in result.output


def test_an_outage_of_an_unknown_site_is_refused(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.replace('target = "s1"', 'target = "nowhere"'))
    result = click.testing.CliRunner().invoke(
        cli, ["sim", "fleet", "--scenario", str(path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    assert "nowhere" in result.output


def test_the_default_scenario_fits_its_outage_to_a_small_fleet(tmp_path: Path):
    """`--kiosks 3` leaves one site: the default evening outage falls on it, not on a site the
    fleet does not have (a file the user wrote is never changed: see the test above)."""
    small = ["--kiosks", "3", "--members", "10", "--hours", "0.05", "--no-plots"]
    result = click.testing.CliRunner().invoke(
        cli, ["sim", "fleet", *small, "--policy", "strict", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "1 sites, 3 kiosks" in result.output and "outages: site s0" in result.output


def test_the_default_scenario_is_a_day_with_a_two_hour_site_outage():
    sc = scenario.load(None)
    assert sc.fleet.hours == 24
    assert [(o.kind, o.hours) for o in sc.outage] == [("site", 2.0)]


def test_invariants_hold_when_the_network_loses_and_duplicates_messages():
    lossy = SMALL.replace(
        "delay_ms = [10, 80]", "delay_ms = [10, 80]\nloss = 0.05\nduplicate = 0.05"
    )
    report = fleet.simulate(scenario.parse(lossy), None, plots=False)
    assert report["ok"], [c for c in report["invariants"] if not c["ok"]]
    strict = report["policies"]["strict"]
    assert strict["overspend"]["by_unit"] == {}
    assert strict["lost_ops"] == 0 and strict["double_applied"] == 0


def _assert_pngs(out: Path, report: dict) -> None:
    """Every plot the report names exists and is a PNG of a chart's size (960 x 540)."""
    assert len(report["plots"]) == 4
    for name in report["plots"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (960, 540), name
        assert 5_000 < len(data) < 500_000, (name, len(data))


def _sim(tmp_path: Path, text: str, *extra: str) -> tuple[click.testing.Result, Path]:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    out = tmp_path / "out"
    args = ["sim", "fleet", "--scenario", str(path), "--members", "30", "--out", str(out)]
    result = click.testing.CliRunner().invoke(cli, [*args, "--policy", "strict", *extra])
    assert result.exit_code == 0, result.output
    return result, out


def test_a_short_run_draws_its_plots(tmp_path: Path):
    # 4 hours of the default day: the evening outage starts after the run has ended.
    result, out = _sim(tmp_path, SMALL, "--hours", "4")
    _assert_pngs(out, json.loads((out / "report.json").read_text()))


def test_an_outage_past_the_end_of_the_run_is_drawn_clipped(tmp_path: Path):
    late = SMALL.replace("start = 17.0\nhours = 2.0", "start = 23.0\nhours = 5.0")
    result, out = _sim(tmp_path, late)
    _assert_pngs(out, json.loads((out / "report.json").read_text()))


def test_without_matplotlib_the_sim_runs_and_says_how_to_get_plots(tmp_path: Path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    monkeypatch.delitem(sys.modules, "kiosk.sim.plots", raising=False)
    result, out = _sim(tmp_path, SMALL, "--hours", "4")
    lines = [line for line in result.output.splitlines() if "plots" in line.split(":")[0]]
    assert lines == [fleet.NO_MATPLOTLIB]
    report = json.loads((out / "report.json").read_text())
    assert "plots" not in report and not list(out.glob("*.png"))
