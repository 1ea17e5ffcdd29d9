"""GPIO parts of a kiosk through gpiozero: gate relay, green/red LEDs, buzzer, door sensor and a
pulse coin/note acceptor.

    async with open_gpio(cfg) as io:
        await io.pulse_gate()
        await io.signal("approve")
        async for event in io.events():   # Passage, DoorHeldOpen, CoinInserted, CoinRejected
            ...

The backend is a gpiozero pin factory: a real one chosen by name (lgpio on a Pi 5, rpigpio on a
Pi <= 4) or gpiozero's MockFactory for the simulated kiosk (demo, training), driven by
`SimulatedInputs`. Debounce and the coin pulse gap are in our code with an injectable clock:
MockPin ignores bounce_time, and a coin is defined by the gap after its last pulse anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from edge.drivers.base import Check, DeviceGone, DriverError, UnknownBackend
from edge.drivers.config import GpioConfig

__all__ = [
    "BACKENDS",
    "BUZZER_PATTERNS",
    "CoinInserted",
    "CoinRejected",
    "DoorHeldOpen",
    "DoorWatch",
    "GpioBoard",
    "GpioEvent",
    "LookupPressed",
    "Passage",
    "PulseCounter",
    "SimulatedInputs",
    "make_pin_factory",
    "open_gpio",
    "self_test",
]

log = logging.getLogger(__name__)

BACKENDS = ("real", "sim")
MOCK_HISTORY = 256  # pin changes a simulated board keeps for inspection

Pattern = Literal["approve", "deny", "error"]

# (buzzer on seconds, then off seconds) steps; the LED of the outcome stays on for the pattern.
BUZZER_PATTERNS: dict[str, tuple[tuple[float, float], ...]] = {
    "approve": ((0.08, 0.0),),
    "deny": ((0.3, 0.1), (0.3, 0.0)),
    "error": ((0.08, 0.08), (0.08, 0.08), (0.08, 0.0)),
}


# ---------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Passage:
    """The door/turnstile opened and closed again: one person went through."""

    open_s: float


@dataclass(frozen=True, slots=True)
class DoorHeldOpen:
    """Alarm: the door has been open longer than the configured time (sent once per opening)."""

    open_s: float


@dataclass(frozen=True, slots=True)
class CoinInserted:
    """A coin or note, counted from its pulses: credit `amount_minor` (fen/cents)."""

    amount_minor: int
    pulses: int


@dataclass(frozen=True, slots=True)
class CoinRejected:
    """A pulse train that matches no coin in the table: never a credit."""

    pulses: int


@dataclass(frozen=True, slots=True)
class LookupPressed:
    """The balance lookup button was pressed."""


GpioEvent = Passage | DoorHeldOpen | CoinInserted | CoinRejected | LookupPressed


# --------------------------------------------------------------------------- pure timing logic


class PulseCounter:
    """Coin acceptor pulses -> coins. A coin ends when no pulse comes for `gap_s`; pulses closer
    than `debounce_s` to the last counted one are contact bounce. Times are seconds from one clock.
    """

    def __init__(self, table: Mapping[int, int], *, gap_s: float, debounce_s: float) -> None:
        self.table = dict(table)
        self.gap_s = gap_s
        self.debounce_s = debounce_s
        self._count = 0
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        return self._count > 0

    def pulse(self, t: float) -> list[GpioEvent]:
        out = self.tick(t)
        if self._last is not None and self._count and t - self._last < self.debounce_s:
            return out
        self._count += 1
        self._last = t
        return out

    def tick(self, t: float) -> list[GpioEvent]:
        if not self._count or self._last is None or t - self._last < self.gap_s:
            return []
        pulses, self._count = self._count, 0
        amount = self.table.get(pulses)
        if amount is None:
            return [CoinRejected(pulses)]
        return [CoinInserted(amount, pulses)]


class DoorWatch:
    """Door contact -> Passage (opened then closed) and one DoorHeldOpen per too-long opening."""

    def __init__(self, *, held_open_s: float) -> None:
        self.held_open_s = held_open_s
        self._opened_at: float | None = None
        self._alarmed = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def changed(self, is_open: bool, t: float) -> list[GpioEvent]:
        if is_open and self._opened_at is None:
            self._opened_at = t
            self._alarmed = False
            return []
        if not is_open and self._opened_at is not None:
            open_s = t - self._opened_at
            self._opened_at = None
            return [Passage(open_s)]
        return []  # a repeated level (bounce): nothing changed

    def tick(self, t: float) -> list[GpioEvent]:
        if self._opened_at is None or self._alarmed:
            return []
        open_s = t - self._opened_at
        if open_s < self.held_open_s:
            return []
        self._alarmed = True
        return [DoorHeldOpen(open_s)]


# ------------------------------------------------------------------------------ pin factories


def make_pin_factory(backend: str, name: str | None = None) -> Any:
    """A gpiozero pin factory: `sim` -> MockFactory; `real` -> the named factory (lgpio, rpigpio,
    pigpio, native) or gpiozero's own default order when `name` is None."""
    if backend == "sim":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if backend != "real":
        raise UnknownBackend("gpio", backend, list(BACKENDS))
    from importlib.metadata import entry_points

    from gpiozero import Device

    try:
        if name is None:
            return Device._default_pin_factory()
        for ep in entry_points(group="gpiozero_pin_factories"):
            if ep.name == name.lower():
                return ep.load()()
    except Exception as exc:
        raise DriverError(
            f"gpio: pin factory {name or 'default'} does not load here ({exc}); on a Pi 5 install "
            "python3-lgpio, on a Pi <= 4 python3-rpi-lgpio or python3-rpi.gpio"
        ) from exc
    known = sorted(ep.name for ep in entry_points(group="gpiozero_pin_factories"))
    raise DriverError(f"gpio: no pin factory named {name!r}; known: {', '.join(known)}")


# --------------------------------------------------------------------------------------- board


class GpioBoard:
    """The kiosk's GPIO parts on one pin factory. Reusable, not reentrant.

    `clock` stamps input edges (seconds, monotonic); `sleep` times relay and buzzer steps (tests
    pass an instant one); `tick_s` is how often pulse gaps and the held-open alarm are checked."""

    def __init__(
        self,
        cfg: GpioConfig,
        *,
        pin_factory: Any,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tick_s: float = 0.02,
    ) -> None:
        self.cfg = cfg
        self.pin_factory = pin_factory
        self._clock = clock
        self._sleep = sleep
        self._tick_s = tick_s
        self._devices: dict[str, Any] = {}
        self._queue: asyncio.Queue[GpioEvent] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._gate_lock = asyncio.Lock()
        self._signal_lock = asyncio.Lock()
        self.coins = PulseCounter(
            cfg.coin_pulses, gap_s=cfg.coin_pulse_gap_s, debounce_s=cfg.coin_debounce_s
        )
        self.door = DoorWatch(held_open_s=cfg.door_held_open_s)

    # --- lifecycle
    async def __aenter__(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("GpioBoard is not reentrant")
        self._loop = asyncio.get_running_loop()
        self._open_devices()
        self._ticker = asyncio.create_task(self._tick_loop(), name="gpio-tick")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            self._ticker = None
        self._close_devices()
        self._loop = None

    def _open_devices(self) -> None:
        from gpiozero import LED, Buzzer, DigitalInputDevice, OutputDevice

        cfg, pf = self.cfg, self.pin_factory
        try:
            if cfg.relay_pin is not None:
                self._devices["relay"] = OutputDevice(
                    cfg.relay_pin,
                    active_high=not cfg.relay_active_low,
                    initial_value=False,
                    pin_factory=pf,
                )
            if cfg.green_led_pin is not None:
                self._devices["green"] = LED(cfg.green_led_pin, pin_factory=pf)
            if cfg.red_led_pin is not None:
                self._devices["red"] = LED(cfg.red_led_pin, pin_factory=pf)
            if cfg.buzzer_pin is not None:
                self._devices["buzzer"] = Buzzer(cfg.buzzer_pin, pin_factory=pf)
            if cfg.door_pin is not None:
                door = DigitalInputDevice(cfg.door_pin, pull_up=cfg.door_pull_up, pin_factory=pf)
                if cfg.backend == "sim":  # the simulated door starts closed, as a real one is
                    closed_high = not cfg.door_open_is_high
                    door.pin.drive_high() if closed_high else door.pin.drive_low()
                door.when_activated = self._door_edge
                door.when_deactivated = self._door_edge
                self._devices["door"] = door
                self.door.changed(self._door_is_open(door), self._clock())
            if cfg.coin_pin is not None:
                coin = DigitalInputDevice(cfg.coin_pin, pull_up=cfg.coin_pull_up, pin_factory=pf)
                coin.when_activated = self._coin_edge
                self._devices["coin"] = coin
            if cfg.lookup_pin is not None:
                button = DigitalInputDevice(
                    cfg.lookup_pin, pull_up=cfg.lookup_pull_up, pin_factory=pf
                )
                button.when_activated = self._lookup_edge
                self._devices["lookup"] = button
        except Exception as exc:
            self._close_devices()
            raise DriverError(f"gpio: cannot set up pins: {exc}") from exc

    def _close_devices(self) -> None:
        for device in self._devices.values():
            try:
                device.close()
            except Exception:  # closing a broken pin must not hide the first error
                log.debug("gpio: closing %r failed", device, exc_info=True)
        self._devices.clear()

    def _reopen(self, why: BaseException) -> None:
        log.error("gpio: %s; setting the pins up again", why)
        self._close_devices()
        self._open_devices()

    # --- outputs
    async def pulse_gate(self, seconds: float | None = None) -> None:
        """Energise the gate relay for `seconds` (default: the configured pulse)."""
        length = self.cfg.relay_pulse_s if seconds is None else seconds
        async with self._gate_lock:
            for attempt in (1, 2):
                try:
                    relay = self._devices["relay"]
                    relay.on()
                    try:
                        await self._sleep(length)
                    finally:
                        relay.off()
                    return
                except KeyError:
                    raise DriverError("gpio: no relay_pin configured") from None
                except Exception as exc:
                    if attempt == 2:
                        raise DeviceGone(f"gpio: gate relay does not respond: {exc}") from exc
                    self._reopen(exc)

    def led(self, which: Literal["green", "red"], on: bool) -> None:
        device = self._devices.get(which)
        if device is not None:
            device.value = on

    async def beep(self, pattern: Pattern) -> None:
        steps = BUZZER_PATTERNS[pattern]
        buzzer = self._devices.get("buzzer")
        for on_s, off_s in steps:
            if buzzer is not None:
                buzzer.on()
            await self._sleep(on_s)
            if buzzer is not None:
                buzzer.off()
            if off_s:
                await self._sleep(off_s)

    async def signal(self, pattern: Pattern) -> None:
        """The outcome for a member: green LED + approve beep, or red LED + deny/error beeps."""
        led: Literal["green", "red"] = "green" if pattern == "approve" else "red"
        async with self._signal_lock:
            self.led(led, True)
            try:
                await self.beep(pattern)
            finally:
                self.led(led, False)

    # --- inputs (gpiozero calls these on its own thread; the mock calls them inline)
    def _door_is_open(self, door: Any) -> bool:
        level_high = bool(door.is_active) != self.cfg.door_pull_up
        return level_high == self.cfg.door_open_is_high

    def _door_edge(self, device: Any = None) -> None:
        door = self._devices.get("door") if device is None else device
        if door is None or self._loop is None:
            return
        is_open, t = self._door_is_open(door), self._clock()
        self._loop.call_soon_threadsafe(self._door_changed, is_open, t)

    def _door_changed(self, is_open: bool, t: float) -> None:
        self._emit(self.door.changed(is_open, t))

    def _coin_edge(self, device: Any = None) -> None:
        if self._loop is None:
            return
        t = self._clock()
        self._loop.call_soon_threadsafe(self._coin_pulse, t)

    def _lookup_edge(self, device: Any = None) -> None:
        if self._loop is not None:
            pressed: list[GpioEvent] = [LookupPressed()]
            self._loop.call_soon_threadsafe(self._emit, pressed)

    def _coin_pulse(self, t: float) -> None:
        self._emit(self.coins.pulse(t))

    def _emit(self, events: list[GpioEvent]) -> None:
        for event in events:
            match event:
                case CoinRejected(pulses=n):
                    log.warning("coin acceptor: %d pulses match no coin; rejected, no credit", n)
                case DoorHeldOpen(open_s=s):
                    log.warning("door held open for %.0f s", s)
                case _:
                    log.info("gpio: %s", event)
            self._queue.put_nowait(event)

    async def _tick_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self._tick_s)
            t = self._clock()
            self._emit(self.coins.tick(t) + self.door.tick(t))
            ticks += 1
            if ticks % 500 == 0:
                self._trim_mock_history()

    def _trim_mock_history(self) -> None:
        """gpiozero's mock pins record every change; a simulated kiosk runs for days, so keep
        only the recent past (tests read it right after acting)."""
        for device in self._devices.values():
            pin = getattr(device, "pin", None)
            states = getattr(pin, "states", None)
            if isinstance(states, list) and len(states) > MOCK_HISTORY:
                del states[:-MOCK_HISTORY]

    async def events(self) -> AsyncIterator[GpioEvent]:
        while True:
            yield await self._queue.get()

    # --- state, for the self-test and the service screen
    def pin_of(self, part: str) -> Any:
        """The gpiozero pin object of a part ("relay", "green", "red", "buzzer", "door", "coin")."""
        return self._devices[part].pin

    @property
    def door_open(self) -> bool | None:
        door = self._devices.get("door")
        return None if door is None else self._door_is_open(door)


class SimulatedInputs:
    """Drives the mock input pins of a simulated board as the real parts would."""

    def __init__(self, board: GpioBoard, *, advance: Callable[[float], None] | None = None) -> None:
        self.board = board
        self._advance = advance  # a fake clock's advance, or None for real time

    def _pin(self, part: str) -> Any:
        return self.board.pin_of(part)

    def _active_level(self, part: Literal["door", "coin"]) -> bool:
        pull_up = self.board.cfg.door_pull_up if part == "door" else self.board.cfg.coin_pull_up
        return not pull_up  # with a pull-up, the part pulls the line low when active

    def _wait(self, seconds: float) -> None:
        if self._advance is not None:
            self._advance(seconds)

    def press_lookup(self) -> None:
        """Press and release the balance lookup button."""
        pin = self._pin("lookup")
        if self.board.cfg.lookup_pull_up:  # the button pulls the line low
            pin.drive_low()
            pin.drive_high()
        else:
            pin.drive_high()
            pin.drive_low()

    def door(self, is_open: bool) -> None:
        high = is_open == self.board.cfg.door_open_is_high
        pin = self._pin("door")
        if high:
            pin.drive_high()
        else:
            pin.drive_low()

    def _coin_edges(self) -> tuple[Callable[[], None], Callable[[], None]]:
        pin = self._pin("coin")
        if self._active_level("coin"):
            return pin.drive_high, pin.drive_low
        return pin.drive_low, pin.drive_high

    def coin(self, pulses: int, *, pulse_s: float = 0.05) -> None:
        start, end = self._coin_edges()
        for _ in range(pulses):
            start()
            self._wait(pulse_s)
            end()
            self._wait(pulse_s)

    async def insert_coin(self, pulses: int, *, pulse_s: float = 0.03) -> None:
        """The same pulses in real time, without blocking the event loop (demo, daemon tests)."""
        start, end = self._coin_edges()
        for _ in range(pulses):
            start()
            await asyncio.sleep(pulse_s)
            end()
            await asyncio.sleep(pulse_s)


def open_gpio(cfg: GpioConfig, **kwargs: Any) -> GpioBoard:
    """A GpioBoard on the configured backend's pin factory (use as `async with`)."""
    return GpioBoard(cfg, pin_factory=make_pin_factory(cfg.backend, cfg.pin_factory), **kwargs)


async def self_test(cfg: GpioConfig, *, pin_factory: Any = None) -> list[Check]:
    """Load the pin factory, set the pins up, click the relay, light the LEDs, beep, and read
    the door and coin lines."""
    try:
        factory = pin_factory or make_pin_factory(cfg.backend, cfg.pin_factory)
    except DriverError as exc:
        return [
            Check(
                "gpio pins",
                False,
                str(exc),
                "install the GPIO library for this Pi (Pi 5: python3-lgpio; Pi <= 4: "
                "python3-rpi-lgpio) or set [gpio] pin_factory",
            )
        ]
    board = GpioBoard(cfg, pin_factory=factory)
    checks: list[Check] = []
    try:
        async with board:
            checks.append(Check("gpio pins", True, f"set up on {type(factory).__name__}"))
            if cfg.relay_pin is not None:
                await board.pulse_gate(min(cfg.relay_pulse_s, 0.3))
                state = "low" if cfg.relay_active_low else "high"
                checks.append(
                    Check(
                        "gate relay",
                        True,
                        f"pulsed GPIO{cfg.relay_pin} (active {state}): listen for the click",
                    )
                )
            for pattern in ("approve", "deny"):
                await board.signal(pattern)
            parts = [
                f"{name} GPIO{pin}"
                for name, pin in (
                    ("green LED", cfg.green_led_pin),
                    ("red LED", cfg.red_led_pin),
                    ("buzzer", cfg.buzzer_pin),
                )
                if pin is not None
            ]
            if parts:
                checks.append(
                    Check("leds and buzzer", True, "approve + deny signals on " + ", ".join(parts))
                )
            if cfg.door_pin is not None:
                is_open = board.door_open
                checks.append(
                    Check(
                        "door sensor",
                        not is_open,
                        f"GPIO{cfg.door_pin}: door {'open' if is_open else 'closed'}",
                        ""
                        if not is_open
                        else "close the door; if it is closed, check the contact wiring and "
                        "[gpio] door_open_is_high / door_pull_up",
                    )
                )
            if cfg.coin_pin is not None:
                stuck = bool(board._devices["coin"].is_active)
                checks.append(
                    Check(
                        "coin acceptor",
                        not stuck,
                        f"GPIO{cfg.coin_pin}: line {'stuck active' if stuck else 'idle'}; "
                        f"{len(cfg.coin_pulses)} coins in the pulse table",
                        ""
                        if not stuck
                        else "check the acceptor's power and its pulse wire; set [gpio] "
                        "coin_pull_up to match the acceptor (open collector: true)",
                    )
                )
    except DriverError as exc:
        checks.append(
            Check(
                "gpio pins",
                False,
                str(exc),
                "another program holds these pins (stop it), or a pin number in [gpio] is wrong",
            )
        )
    return checks
