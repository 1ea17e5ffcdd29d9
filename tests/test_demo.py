"""`kiosk demo` runs end to end on embedded defaults and shows the offline no-overspend promise."""

from __future__ import annotations

from click.testing import CliRunner

from edge.cli import cli
from edge.ledger import Ledger, verify


def test_demo_refuses_overspend_and_converges(tmp_path):
    out = tmp_path / "demo-out"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "REFUSED   not enough balance held at this kiosk" in result.output
    assert "(identical)" in result.output
    assert "MISMATCH" not in result.output
    for name in ("cloud", "kiosk-a", "kiosk-b"):
        assert str(out / f"{name}.db") in result.output
        with Ledger(out / f"{name}.db") as led:
            assert verify(led).ok
            for purse in led.purses():
                assert purse.value >= purse.lower_bound
    values = []
    for name in ("cloud", "kiosk-a", "kiosk-b"):
        with Ledger(out / f"{name}.db") as led:
            values.append([(p.account, p.purse, p.value) for p in led.purses()])
    assert values[0] == values[1] == values[2]


def test_demo_runs_twice_in_the_same_folder(tmp_path):
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", "--out", str(tmp_path)])
    second = runner.invoke(cli, ["demo", "--out", str(tmp_path)])
    assert first.exit_code == second.exit_code == 0
