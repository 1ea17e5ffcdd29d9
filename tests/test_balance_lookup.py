"""Balance and history at the kiosk: the lookup button (GPIO) or a top-up opened and closed
with nothing inserted shows balances, passes, points and the last movements, spending nothing,
in English and Chinese."""

from __future__ import annotations

import asyncio

from gpiozero.pins.mock import MockFactory

from edge.config import KioskConfig
from edge.drivers.gpio import GpioBoard, LookupPressed, SimulatedInputs
from edge.feedback.outputs import screen_for
from edge.feedback.screens import BalanceScreen
from edge.taps.pipeline import TapPipeline
from edge.taps.reasons import DenyReason
from edge.validation import dump, load
from tests.kiosk_helpers import (
    SITE_KEY,
    RecordingFeedback,
    enroll,
    gate_config,
    grant,
    nfc,
    sync_down,
)
from tests.test_pipeline import Clock


async def test_lookup_button_then_card_shows_balances_and_history_and_spends_nothing(
    cloud_and_kiosks,
):
    cloud, k1, _ = cloud_and_kiosks()
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 10000, "points": 320, "visits:swim": 3})
    enroll(cloud, "m2", "Carol", "04CC", purses={"cash": 10000}, status="lost")
    grant(cloud, k1, "m1", "cash", 10000)
    grant(cloud, k1, "m1", "visits:swim", 3)
    sync_down(cloud, k1)
    clock = Clock()
    fx = RecordingFeedback(ledger=k1)
    cfg = gate_config(debounce_seconds=0)
    kiosk = TapPipeline(cfg, k1, SITE_KEY, fx, monotonic=clock)
    assert (await kiosk.card(nfc("04AA"))).decision.approved  # pays with a visit
    ops_before = len(list(k1.ops("k1")))
    armed = await kiosk.lookup()
    assert screen_for(armed, cfg).render  # the prompt screen
    out = await kiosk.card(nfc("04AA"))
    found = out.lookup
    assert found is not None
    assert (found.name, found.cash, found.points, found.visits) == (
        "Alice",
        10000,
        320,
        (("swim", 2),),
    )
    assert [(m.purse, m.amount) for m in found.movements][:1] == [("visits:swim", -1)]
    assert len(list(k1.ops("k1"))) == ops_before  # nothing written, nothing spent
    assert "gate" not in fx.events[1:]
    screen = screen_for(out, cfg)
    assert isinstance(screen, BalanceScreen)
    assert screen.lines[0] == "100.00  320 pts"
    assert screen.lines[2].startswith("-1 visit")
    zh = load(
        KioskConfig,
        {
            **dump(cfg),
            "kiosk": {**dump(cfg.kiosk), "currency": "¥"},
            "display": {"backend": "sim", "language": "zh"},
        },
    )
    zh_screen = screen_for(out, zh)
    assert isinstance(zh_screen, BalanceScreen)
    assert zh_screen.lines[0] == "¥100.00  320分"
    # the window passes: the next tap pays again; a lost card looked up shows nothing
    clock.t += cfg.rules.lookup_seconds + 1
    await kiosk.lookup()
    clock.t += cfg.rules.lookup_seconds + 1
    assert (await kiosk.card(nfc("04AA"))).lookup is None
    await kiosk.lookup()
    lost = await kiosk.card(nfc("04CC"))
    assert lost.lookup is None
    assert lost.decision.reason is DenyReason.CARD_LOST


async def test_the_lookup_button_on_gpio_sends_its_event():
    cfg = load(
        KioskConfig,
        {
            "kiosk": {"id": "k1", "site": "pool", "role": "topup"},
            "gpio": {"backend": "sim", "lookup_pin": 5},
        },
    )
    assert cfg.gpio is not None
    pf = MockFactory()
    try:
        async with GpioBoard(cfg.gpio, pin_factory=pf) as board:
            SimulatedInputs(board).press_lookup()
            async with asyncio.timeout(10):  # a guard against a hang, not a timing assertion
                assert await anext(board.events()) == LookupPressed()
    finally:
        pf.reset()


async def test_a_top_up_closed_with_nothing_inserted_shows_the_balance_at_once(cloud_and_kiosks):
    """The bug: the closing tap went through the double-tap debounce, so a member tapping to
    open and again within debounce_seconds saw the old screen and the session stayed open."""
    cloud, k1, _ = cloud_and_kiosks()
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 10000})
    sync_down(cloud, k1)
    clock = Clock()
    cfg = load(
        KioskConfig,
        {"kiosk": {"id": "k1", "site": "pool", "role": "topup"}, "rules": {"debounce_seconds": 3}},
    )
    kiosk = TapPipeline(cfg, k1, SITE_KEY, RecordingFeedback(ledger=k1), monotonic=clock)
    opened = await kiosk.card(nfc("04AA"))
    assert opened.topup_open
    clock.t += 0.5
    closed = await kiosk.card(nfc("04AA"))
    assert closed.lookup is not None
    assert closed.lookup.cash == 10000
    assert not closed.decision.repeated
    # with coins in, a quick closing tap closes the session and credits
    await kiosk.card(nfc("04AA"))
    await kiosk.coin(500)
    clock.t += 0.5
    done = await kiosk.card(nfc("04AA"))
    assert (done.topup_total, done.topup_open) == (500, False)
    assert k1.purse("m1", "cash").value == 10500
