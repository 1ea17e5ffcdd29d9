"""`kiosk demo` runs end to end on embedded defaults: the day at the pool, the offline
no-overspend promise, the drivers; every file it names exists."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from edge.ledger import Ledger, verify
from kiosk.cli import cli
from kiosk.demo.command import run_ledger_demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    return out, result


def test_demo_exits_zero(demo_run):
    _, result = demo_run
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "line",
    [
        "DENIED   Card reported lost",
        "DENIED   Not enough balance",
        "DENIED   Coupon already used",
        "DENIED   Wrong PIN",
        "DENIED   Already entered: exit first",
        "DENIED   Balance not available offline here",
        "TOP-UP   done: 110.00 credited",
        "same result shown again (double tap: nothing debited)",
        "-- network outage: the broker is down --",
        "reconciled: all ops stored and acked",
        "REFUND   20.00 back to m-alice",
        "[tier upgraded at the tap: Blue -> Gold]",
        "LOOKUP   tap your card to see your balance",
        "BALANCE  cash 12.00, 0 points, nothing spent",
        "screen (zh): 充值完成 | 已充¥110.00 | 余额: ¥115.00",
    ],
)
def test_the_day_shows_each_rule(demo_run, line):
    assert line in demo_run[1].output


def test_the_day_writes_frames_and_a_contact_sheet(demo_run):
    out, result = demo_run
    frames = sorted((out / "day" / "frames").rglob("*.png"))
    assert len(frames) > 20
    assert all(Image.open(f).size == (128, 64) for f in frames)
    sheet = Image.open(out / "day-contact-sheet.png")
    assert sheet.size[1] > 64 * 2 * (len(frames) // 4)
    assert str(out / "day-contact-sheet.png") in result.output


def test_the_day_ends_with_verified_ledgers(demo_run):
    out, _ = demo_run
    for path in [out / "day" / "cloud.db", *sorted((out / "day").glob("*/ledger.db"))]:
        with Ledger(path) as led:
            assert verify(led).ok
            assert all(p.value >= p.lower_bound for p in led.purses())


def test_offline_kiosks_refuse_overspend_and_converge(tmp_path, capsys):
    assert run_ledger_demo(tmp_path)
    output = capsys.readouterr().out
    assert "REFUSED   not enough balance held at this kiosk" in output
    assert "(identical)" in output
    values = []
    for name in ("cloud", "kiosk-a", "kiosk-b"):
        with Ledger(tmp_path / f"{name}.db") as led:
            assert verify(led).ok
            values.append([(p.account, p.purse, p.value) for p in led.purses()])
    assert values[0] == values[1] == values[2]


def test_a_chinese_screen_with_yen_is_among_the_frames(demo_run):
    """The top-up kiosk's frames hold the finished top-up in Chinese with ¥, drawn exactly as
    the screen renders it (the status bar with its clock left out)."""
    from edge.drivers.display_text import STATUS_BAR_HEIGHT
    from edge.feedback.screens import Status, TopUpScreen

    out, _ = demo_run
    want = TopUpScreen("¥110.00", lang="zh", done=True, balance="¥115.00").render(
        Status(now=None, lang="zh")
    )
    body = (0, STATUS_BAR_HEIGHT + 1, 128, 64)
    frames = sorted((out / "day" / "frames" / "topup-1").glob("*.png"))
    assert frames
    got = [Image.open(f).convert("1").crop(body).tobytes() for f in frames]
    assert want.convert("1").crop(body).tobytes() in got
