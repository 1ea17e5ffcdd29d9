"""GPIO driver on gpiozero's MockFactory: relay pulse, LEDs, buzzer, door, coin acceptor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from edge.drivers.base import DriverError, UnknownBackend
from edge.drivers.config import GpioConfig
from edge.drivers.gpio import (
    CoinInserted,
    CoinRejected,
    DoorHeldOpen,
    GpioBoard,
    GpioEvent,
    Passage,
    PulseCounter,
    SimulatedInputs,
    make_pin_factory,
)
from edge.validation import load


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pf = MockFactory()
    yield pf
    pf.reset()


COINS = {1: 100, 2: 200, 5: 500}


def board(pf: MockFactory, clock: FakeClock, **cfg: object) -> GpioBoard:
    settings: dict[str, object] = {
        "backend": "sim",
        "door_pin": 5,
        "coin_pin": 6,
        "coin_pulses": COINS,
        "door_held_open_s": 10.0,
    }
    settings.update(cfg)
    return GpioBoard(
        load(GpioConfig, settings),
        pin_factory=pf,
        clock=clock,
        sleep=no_wait,
        tick_s=0.001,
    )


def states(pin: object) -> list[bool]:
    return [bool(s.state) for s in pin.states]  # type: ignore[attr-defined]


async def take(it: AsyncIterator[GpioEvent], n: int) -> list[GpioEvent]:
    out: list[GpioEvent] = []
    async with asyncio.timeout(10):  # a guard against a hang, not a timing assertion
        while len(out) < n:
            out.append(await anext(it))
    return out


async def test_gate_relay_pulses_on_then_off(factory: MockFactory) -> None:
    async with board(factory, FakeClock()) as io:
        pin = io.pin_of("relay")
        pin.clear_states()
        await io.pulse_gate()
        assert states(pin) == [False, True, False]


async def test_active_low_relay_idles_high_and_pulses_low(factory: MockFactory) -> None:
    async with board(factory, FakeClock(), relay_active_low=True) as io:
        pin = io.pin_of("relay")
        assert pin.state is True  # de-energised on an active-low board
        pin.clear_states()
        await io.pulse_gate(0.2)
        assert states(pin) == [True, False, True]


async def test_approve_lights_green_and_beeps_once(factory: MockFactory) -> None:
    async with board(factory, FakeClock()) as io:
        green, red, buzzer = io.pin_of("green"), io.pin_of("red"), io.pin_of("buzzer")
        for p in (green, red, buzzer):
            p.clear_states()
        await io.signal("approve")
        assert states(green) == [False, True, False]
        assert states(red) == [False]
        assert states(buzzer) == [False, True, False]


async def test_deny_and_error_patterns_light_red_with_their_beeps(factory: MockFactory) -> None:
    async with board(factory, FakeClock()) as io:
        red, buzzer = io.pin_of("red"), io.pin_of("buzzer")
        buzzer.clear_states()
        await io.signal("deny")
        assert states(buzzer) == [False, True, False, True, False]
        buzzer.clear_states()
        await io.signal("error")
        assert states(buzzer) == [False] + [True, False] * 3
        assert red.state is False


async def test_door_opened_and_closed_is_one_passage(factory: MockFactory) -> None:
    clock = FakeClock()
    async with board(factory, clock) as io:
        sim = SimulatedInputs(io)
        sim.door(True)
        clock.advance(2.5)
        sim.door(True)  # a bounce at the same level: nothing
        sim.door(False)
        [event] = await take(io.events(), 1)
    assert event == Passage(open_s=2.5)


async def test_door_held_open_alarms_once(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    async with board(factory, clock, door_held_open_s=5.0) as io:
        sim = SimulatedInputs(io)
        sim.door(True)
        clock.advance(6.0)
        [alarm] = await take(io.events(), 1)
        clock.advance(6.0)
        sim.door(False)
        [passage] = await take(io.events(), 1)
    assert alarm == DoorHeldOpen(open_s=6.0)
    assert passage == Passage(open_s=12.0)
    assert "door held open" in caplog.text


async def test_coin_pulses_become_the_configured_amount(factory: MockFactory) -> None:
    clock = FakeClock()
    async with board(factory, clock, coin_pulse_gap_s=0.3) as io:
        sim = SimulatedInputs(io, advance=clock.advance)
        sim.coin(2)
        clock.advance(0.5)  # the gap that ends the coin
        first = await take(io.events(), 1)
        sim.coin(5)
        clock.advance(0.5)
        second = await take(io.events(), 1)
    assert first == [CoinInserted(amount_minor=200, pulses=2)]
    assert second == [CoinInserted(amount_minor=500, pulses=5)]


async def test_contact_bounce_is_not_counted(factory: MockFactory) -> None:
    clock = FakeClock()
    async with board(factory, clock, coin_debounce_s=0.02) as io:
        pin = io.pin_of("coin")  # pulled up: a pulse pulls it low
        pin.drive_low()
        clock.advance(0.003)
        pin.drive_high()
        pin.drive_low()  # bounce 3 ms after the pulse began
        clock.advance(0.05)
        pin.drive_high()
        clock.advance(1.0)
        events = await take(io.events(), 1)
    assert events == [CoinInserted(amount_minor=100, pulses=1)]


async def test_unknown_pulse_count_is_rejected_never_credited(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    async with board(factory, clock) as io:
        SimulatedInputs(io, advance=clock.advance).coin(3)
        clock.advance(1.0)
        events = await take(io.events(), 1)
    assert events == [CoinRejected(pulses=3)]
    assert "no credit" in caplog.text


def test_pulse_counter_gap_ends_a_coin_when_the_next_pulse_comes() -> None:
    counter = PulseCounter(COINS, gap_s=0.2, debounce_s=0.01)
    assert counter.pulse(0.0) == []
    assert counter.pulse(0.1) == []
    # the next pulse 1 s later: the first coin (2 pulses) is finished before it is counted
    assert counter.pulse(1.1) == [CoinInserted(200, 2)]
    assert counter.tick(1.2) == []
    assert counter.tick(1.31) == [CoinInserted(100, 1)]
    assert not counter.pending


async def test_relay_recovers_when_its_pin_device_broke(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with board(factory, FakeClock()) as io:
        io._devices["relay"].close()  # as if the GPIO chip went away under it
        await io.pulse_gate()
        assert states(io.pin_of("relay"))[-2:] == [True, False]
    assert "setting the pins up again" in caplog.text


def test_backends_are_chosen_by_name() -> None:
    assert isinstance(make_pin_factory("sim"), MockFactory)
    with pytest.raises(UnknownBackend):
        make_pin_factory("firmata")
    with pytest.raises(DriverError, match="no pin factory named"):
        make_pin_factory("real", "no-such-factory")


async def test_pin_shared_by_two_parts_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="share a GPIO pin"):
        GpioConfig(backend="sim", relay_pin=17, buzzer_pin=17)
