"""The drivers demo: a simulated wedge reader, gate/LEDs/buzzer/door/coin acceptor and display
play a short script through the same driver code a kiosk runs, saving every display frame."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from edge.drivers.config import GpioConfig, WedgeConfig
from edge.drivers.display import Display, SimulatedPanel
from edge.drivers.gpio import CoinInserted, GpioBoard, Passage, SimulatedInputs
from edge.drivers.wedge import (
    SimulatedKeySource,
    WedgeReader,
)
from edge.drivers.wedge_events import (
    BankCardRefused,
    CouldNotRead,
    QrPayload,
    Scanned,
    Swiped,
)
from edge.feedback.screens import (
    ApprovedScreen,
    DeniedScreen,
    IdleScreen,
    Status,
    TopUpScreen,
)

__all__ = ["drivers_demo", "run_drivers_demo"]

E = TypeVar("E")

MEMBER_TRACK1 = "%M6012345678^MEMBER/DEMO^4912?"
MEMBER_TRACK2 = ";6012345678=4912?"
BANK_TRACK1 = "%B4111111111111111^DOE/JOHN^2812101000000000000?"
BANK_TRACK2 = ";4111111111111111=28121010000000000?"
MEMBER_BARCODE = "79927398713"  # Luhn check digit
GARBLED = "%M60123456"  # half a swipe: no end sentinel


class _DemoClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


async def _instant(seconds: float) -> None:
    await asyncio.sleep(0)  # the demo shows what happens, not how long the relay is held


async def _next(it: AsyncIterator[object], kind: type[E]) -> E:
    async with asyncio.timeout(5):
        event = await anext(it)
    if not isinstance(event, kind):
        raise RuntimeError(f"demo: expected {kind.__name__}, the drivers gave {event!r}")
    return event


async def drivers_demo(out_dir: Path) -> list[str]:
    """Run the script; PNG frames go to `out_dir`; returns what happened, one line per step."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    status = Status(online=False, now=datetime(2025, 3, 1, 12, 30, tzinfo=UTC))
    clock = _DemoClock()
    panel = SimulatedPanel(frames_dir=out_dir)
    gpio_cfg = GpioConfig(
        backend="sim", door_pin=5, coin_pin=6, coin_pulses={1: 100, 5: 500, 10: 1000}
    )
    scanner = SimulatedKeySource(clock=clock)
    from gpiozero.pins.mock import MockFactory

    board = GpioBoard(
        gpio_cfg, pin_factory=MockFactory(), clock=clock, sleep=_instant, tick_s=0.005
    )
    reader = WedgeReader.from_config(WedgeConfig(backend="sim"), source=scanner)

    async def show(screen: object, what: str) -> None:
        await display.show(screen.render(status))  # type: ignore[attr-defined]
        lines.append(f"  display: {what} -> {panel.saved[-1].name}")

    async with Display(panel) as display, board, reader:
        wedge_events = reader.events()
        gpio_events = board.events()
        inputs = SimulatedInputs(board, advance=clock.advance)
        await show(IdleScreen(), "idle, offline, 12:30")

        lines.append("member swipes a magstripe card (tracks 1 and 2)")
        scanner.swipe(MEMBER_TRACK1, MEMBER_TRACK2)
        swiped = await _next(wedge_events, Swiped)
        lines.append(
            f"  wedge: Swiped, token kind {swiped.token.kind.value}, tracks {swiped.tracks} "
            "(number kept out of logs)"
        )
        await board.pulse_gate()
        await board.signal("approve")
        lines.append(f"  gate: relay GPIO{gpio_cfg.relay_pin} pulsed; green LED + approve beep")
        await show(ApprovedScreen("Demo Member", "-1 visit: swim", "9 visits"), "approved")
        inputs.door(True)
        clock.advance(2.0)
        inputs.door(False)
        passage = await _next(gpio_events, Passage)
        lines.append(f"  door: Passage after {passage.open_s:.1f} s open")

        lines.append("member shows a barcode")
        scanner.scan(MEMBER_BARCODE)
        scanned = await _next(wedge_events, Scanned)
        lines.append(f"  wedge: Scanned, {scanned.check} check digit valid")
        await board.pulse_gate()
        await board.signal("approve")
        await show(ApprovedScreen("Demo Member", "-¥12.00 café", "¥88.00"), "approved")

        lines.append("a swipe is garbled (card pulled out half way)")
        clock.advance(5.0)
        scanner.type_text(GARBLED)
        unread = await _next(wedge_events, CouldNotRead)
        lines.append(f"  wedge: CouldNotRead ({unread.reason})")
        await board.signal("error")
        await show(DeniedScreen("Could not read the card: swipe again"), "could not read")

        lines.append("someone swipes a bank card")
        scanner.swipe(BANK_TRACK1, BANK_TRACK2)
        await _next(wedge_events, BankCardRefused)
        lines.append("  wedge: BankCardRefused (track data discarded, never logged)")
        await board.signal("deny")
        await show(DeniedScreen("Bank cards are not accepted here"), "denied")
        await show(DeniedScreen("本机不收银行卡", lang="zh"), "denied, Chinese")

        lines.append("a voucher QR code is scanned")
        scanner.scan("https://club.example/v/TOPUP-50")
        qr = await _next(wedge_events, QrPayload)
        lines.append(f"  wedge: QrPayload ({len(qr.text)} chars, kept for the voucher rules)")

        lines.append("member inserts a 5-yuan coin at the top-up kiosk")
        inputs.coin(5)
        clock.advance(1.0)
        coin = await _next(gpio_events, CoinInserted)
        lines.append(f"  coin acceptor: {coin.pulses} pulses -> {coin.amount_minor} fen")
        yuan, fen = divmod(coin.amount_minor, 100)
        await show(TopUpScreen(f"¥{yuan}.{fen:02d}"), "top-up in progress")
        await show(IdleScreen(lang="zh"), "idle, Chinese")
    return lines


def run_drivers_demo(out_dir: Path) -> list[str]:
    """`drivers_demo` for callers without a running event loop (e.g. `kiosk demo`)."""
    return asyncio.run(drivers_demo(out_dir))
