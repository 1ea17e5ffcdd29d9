"""Keyboard-wedge reader devices (magstripe, barcode/QR scanner, PIN keypad) through python-evdev.

    async with open_wedge(cfg) as reader:
        async for event in reader.events():
            ...

The backend gives raw key events: `EvdevKeySource` (a real /dev/input device, grabbed so the
console never sees card data) or `SimulatedKeySource` (a scripted reader for demos and training).
`FrameDecoder` (edge.drivers.wedge_decode) turns key events into typed events; `WedgeReader` owns
the read task and recovers by itself when the device goes away. Card numbers, track data and PINs
are never logged.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Protocol, Self

import evdev
from evdev import ecodes

from edge.drivers import keymap
from edge.drivers.base import Check, DeviceGone, DriverError, UnknownBackend
from edge.drivers.config import WedgeConfig
from edge.drivers.wedge_decode import (
    FrameDecoder,
)
from edge.drivers.wedge_events import (
    BankCardRefused,
    CouldNotRead,
    PinCleared,
    PinEntered,
    PinKeyed,
    QrPayload,
    ReaderBack,
    ReaderLost,
    Scanned,
    Swiped,
    WedgeEvent,
)

__all__ = [
    "BACKENDS",
    "EvdevKeySource",
    "InputSource",
    "KeySource",
    "SimulatedKeySource",
    "WedgeReader",
    "find_input_device",
    "open_wedge",
    "self_test",
]

log = logging.getLogger(__name__)

BACKENDS = ("real", "sim")


# -------------------------------------------------------------------------------------- backends


class InputSource(Protocol):
    """What `EvdevKeySource` needs of an open device: evdev's InputDevice, or any EventIO."""

    def grab(self) -> None: ...

    def close(self) -> None: ...

    def async_read_loop(self) -> AsyncIterator[evdev.InputEvent]: ...


class KeySource(Protocol):
    """A backend: raw key events from one reader."""

    async def open(self) -> str:
        """Open the device; return a description for logs. DriverError if it is not there."""
        ...

    def keys(self) -> AsyncIterator[evdev.InputEvent]:
        """Key events until the device goes away (then DeviceGone)."""
        ...

    def close(self) -> None: ...


def find_input_device(path: str | None, name: str | None) -> evdev.InputDevice[str]:
    """Open an input device by path, else by a case-insensitive part of its name."""
    if path:
        try:
            return evdev.InputDevice(path)
        except FileNotFoundError:
            raise DeviceGone(f"no input device at {path}") from None
        except PermissionError:
            raise DriverError(
                f"no permission to read {path}: add the kiosk user to group 'input'"
            ) from None
        except OSError as exc:
            raise DeviceGone(f"cannot open {path}: {exc.strerror}") from None
    if not name:
        raise DriverError("wedge: neither a device path nor a name to look for")
    for candidate in evdev.list_devices():
        try:
            dev = evdev.InputDevice(candidate)
        except OSError:
            continue
        if name.lower() in dev.name.lower():
            return dev
        dev.close()
    raise DeviceGone(f"no input device named like {name!r}")


class EvdevKeySource:
    """A real reader at a /dev/input path (or found by name), grabbed while open.

    `opener` replaces the device lookup (tests pass a pipe-backed evdev EventIO)."""

    def __init__(
        self,
        *,
        path: str | None = None,
        name: str | None = None,
        grab: bool = True,
        opener: Callable[[], InputSource] | None = None,
    ) -> None:
        self._path = path
        self._name = name
        self._grab = grab
        self._opener = opener
        self._device: InputSource | None = None

    def describe(self) -> str:
        return self._path or f"device named like {self._name!r}"

    async def open(self) -> str:
        device: InputSource
        if self._opener is not None:
            try:
                device = self._opener()
            except OSError as exc:
                raise DeviceGone(f"{self.describe()}: {exc.strerror or exc}") from None
        else:
            device = find_input_device(self._path, self._name)
        if self._grab:
            try:
                device.grab()
            except OSError as exc:
                device.close()
                if exc.errno == errno.EBUSY:
                    raise DriverError(
                        f"{self.describe()} is grabbed by another program (stop it, e.g. a "
                        "second kiosk service)"
                    ) from None
                raise DeviceGone(f"{self.describe()}: {exc.strerror}") from None
        self._device = device
        label = getattr(device, "name", None) or self.describe()
        return str(label)

    async def keys(self) -> AsyncIterator[evdev.InputEvent]:
        device = self._device
        if device is None:
            raise DeviceGone("not open")
        try:
            async for event in device.async_read_loop():
                yield event
        except OSError as exc:  # ENODEV on unplug (python-evdev #64, #191)
            raise DeviceGone(f"{self.describe()}: {exc.strerror or exc}") from None

    def close(self) -> None:
        device, self._device = self._device, None
        if device is None:
            return
        try:
            if self._grab:
                ungrab = getattr(device, "ungrab", None)
                if ungrab is not None:
                    ungrab()
        except OSError:
            pass  # already gone
        finally:
            device.close()


class _Unplug:
    pass


class SimulatedKeySource:
    """A scripted reader: types swipes, scans and keypad presses as US-layout key events, so the
    same decoder, parsers and recovery run as with a real reader. For demos and field training.

    `clock` stamps the events (seconds); pass a fake one to script pauses between keys."""

    def __init__(self, *, clock: Callable[[], float] = time.time, name: str = "sim-wedge") -> None:
        self._clock = clock
        self._name = name
        self._queue: asyncio.Queue[evdev.InputEvent | _Unplug] = asyncio.Queue()
        self._present = True

    # --- script
    def type_text(self, text: str, *, enter: bool = True) -> None:
        """Type `text` (US layout) and, by default, Enter. ValueError for an untypeable char."""
        for ch in text:
            try:
                code, shifted = keymap.keys_for(ch)
            except KeyError:
                raise ValueError(f"a keyboard wedge cannot type {ch!r}") from None
            if shifted:
                self._key(ecodes.KEY_LEFTSHIFT, 1)
            self.press(code)
            if shifted:
                self._key(ecodes.KEY_LEFTSHIFT, 0)
        if enter:
            self.press(ecodes.KEY_ENTER)

    def swipe(self, track1: str | None = None, track2: str | None = None) -> None:
        """A card swipe: the tracks as the reader types them, then Enter."""
        self.type_text((track1 or "") + (track2 or ""))

    def scan(self, code: str) -> None:
        """A barcode or QR scan, then Enter."""
        self.type_text(code)

    def press(self, code: int) -> None:
        """One key down and up."""
        self._key(code, 1)
        self._key(code, 0)

    def unplug(self) -> None:
        """The cable is pulled: the read fails with DeviceGone and opening fails until replug."""
        self._present = False
        self._queue.put_nowait(_Unplug())

    def replug(self) -> None:
        self._present = True

    def _key(self, code: int, value: int) -> None:
        if not self._present:
            return  # typed into a pulled cable
        t = self._clock()
        sec, usec = divmod(round(t * 1_000_000), 1_000_000)
        self._queue.put_nowait(evdev.InputEvent(sec, usec, ecodes.EV_KEY, code, value))
        self._queue.put_nowait(evdev.InputEvent(sec, usec, ecodes.EV_SYN, ecodes.SYN_REPORT, 0))

    # --- KeySource
    async def open(self) -> str:
        if not self._present:
            raise DeviceGone(f"{self._name} is unplugged")
        # An unplug seen before this open is over; keep the keys typed while plugged in.
        kept = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not isinstance(item, _Unplug):
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)
        return self._name

    async def keys(self) -> AsyncIterator[evdev.InputEvent]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Unplug):
                raise DeviceGone(f"{self._name} was unplugged")
            yield item

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------- reader


class _Gone:
    def __init__(self, error: DeviceGone) -> None:
        self.error = error


class WedgeReader:
    """The wedge driver: typed events from a KeySource, with recovery. Reusable, not reentrant."""

    def __init__(
        self,
        source: KeySource,
        *,
        frame_gap_s: float = 0.1,
        pin_mode: bool = False,
        max_pin_length: int = 8,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
    ) -> None:
        self.source = source
        self._decoder = FrameDecoder(
            frame_gap_s=frame_gap_s, pin_mode=pin_mode, max_pin_length=max_pin_length
        )
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._entered = False
        self._pump: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, cfg: WedgeConfig, *, source: KeySource | None = None) -> WedgeReader:
        return cls(
            source or make_key_source(cfg.backend, cfg),
            frame_gap_s=cfg.frame_gap_s,
            pin_mode=cfg.mode == "pin",
            max_pin_length=cfg.max_pin_length,
            retry_initial_s=cfg.retry_initial_s,
            retry_max_s=cfg.retry_max_s,
        )

    @property
    def pin_mode(self) -> bool:
        return self._decoder.pin_mode

    @pin_mode.setter
    def pin_mode(self, on: bool) -> None:
        """Switch a combined reader/keypad between reading codes and taking a PIN."""
        self._decoder.pin_mode = on

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("WedgeReader is not reentrant")
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_pump()
        self.source.close()
        self._entered = False

    async def events(self) -> AsyncIterator[WedgeEvent]:
        delay = self._retry_initial_s
        lost = False
        while True:
            try:
                device = await self.source.open()
            except DriverError as exc:
                if not lost:
                    log.warning("wedge reader not available: %s (retrying)", exc)
                    lost = True
                    yield ReaderLost(str(exc))
                else:
                    log.debug("wedge reader still not available: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            delay = self._retry_initial_s
            if lost:
                log.warning("wedge reader back: %s", device)
                lost = False
                yield ReaderBack(device)
            else:
                log.info("wedge reader open: %s", device)
            queue: asyncio.Queue[evdev.InputEvent | _Gone] = asyncio.Queue()
            self._pump = asyncio.create_task(self._read_keys(queue), name="wedge-read-keys")
            try:
                while True:
                    timeout = self._decoder.frame_gap_s if self._decoder.pending else None
                    try:
                        async with asyncio.timeout(timeout):
                            item = await queue.get()
                    except TimeoutError:
                        for event in self._decoder.flush():
                            yield self._logged(event)
                        continue
                    if isinstance(item, _Gone):
                        for event in self._decoder.flush():
                            yield self._logged(event)
                        log.warning("wedge reader lost: %s (retrying)", item.error)
                        lost = True
                        yield ReaderLost(str(item.error))
                        break
                    for event in self._decoder.feed(item):
                        yield self._logged(event)
            finally:
                await self._stop_pump()
                self.source.close()

    async def _read_keys(self, queue: asyncio.Queue[evdev.InputEvent | _Gone]) -> None:
        try:
            async for event in self.source.keys():
                queue.put_nowait(event)
        except DeviceGone as exc:
            queue.put_nowait(_Gone(exc))
        else:
            queue.put_nowait(_Gone(DeviceGone("input stream ended")))

    async def _stop_pump(self) -> None:
        # Closing an evdev device does not wake a pending read (python-evdev #248): cancel it.
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    @staticmethod
    def _logged(event: WedgeEvent) -> WedgeEvent:
        # Kinds and lengths only: never a card number, track data or PIN.
        match event:
            case BankCardRefused():
                log.info("bank card swiped: refused, track data discarded")
            case CouldNotRead(reason=reason):
                log.info("could not read: %s", reason)
            case Swiped(tracks=tracks):
                log.debug("magstripe read (tracks %s)", tracks)
            case Scanned(check=check):
                log.debug("barcode read (%s check digit)", check)
            case QrPayload(token=token):
                log.debug("QR payload read (%d chars)", len(token.value))
            case PinEntered(pin=pin):
                log.debug("PIN entered (%d digits)", len(pin))
            case _:
                pass
        return event


def make_key_source(backend: str, cfg: WedgeConfig | None = None) -> KeySource:
    """The backend named in the config."""
    cfg = cfg or WedgeConfig(backend="sim")
    if backend == "real":
        return EvdevKeySource(path=cfg.path, name=cfg.name, grab=cfg.grab)
    if backend == "sim":
        return SimulatedKeySource()
    raise UnknownBackend("wedge", backend, list(BACKENDS))


def open_wedge(cfg: WedgeConfig) -> WedgeReader:
    """A WedgeReader for the configured backend (use as `async with`)."""
    return WedgeReader.from_config(cfg)


_SELFTEST_SWIPE = ("%M6012345678^SELF/TEST^?", ";6012345678=4912?")


async def self_test(cfg: WedgeConfig, *, wait_card_s: float = 0.0) -> list[Check]:
    """Find and grab the reader; read a card if one is presented within `wait_card_s`
    (the simulated reader swipes a test card itself)."""
    where = cfg.path or (f"named like {cfg.name!r}" if cfg.name else "simulated")
    source = make_key_source(cfg.backend, cfg)
    try:
        device = await source.open()
    except DriverError as exc:
        text = str(exc)
        if "permission" in text:
            fix = "add the kiosk user to group 'input' (udev rule in systemd/), then log in again"
        elif "grabbed by another program" in text:
            fix = "stop the other program reading it (a second kiosk service, a console getty)"
        else:
            fix = (
                "plug the reader in (try another USB port/cable); `ls -l /dev/input/by-id/` "
                "shows its name; set [wedge] path or name to match"
            )
        return [Check("wedge reader", False, text, fix)]
    finally:
        source.close()
    checks = [Check("wedge reader", True, f"found and grabbed: {device} ({where})")]
    if cfg.backend == "sim":
        wait_card_s = wait_card_s or 2.0
    if wait_card_s <= 0:
        return checks
    reader = WedgeReader.from_config(cfg, source=source)
    try:
        async with reader, asyncio.timeout(wait_card_s):
            events = reader.events()
            if isinstance(source, SimulatedKeySource):
                source.swipe(*_SELFTEST_SWIPE)
            async for event in events:
                if isinstance(event, ReaderLost | ReaderBack | PinKeyed | PinCleared):
                    continue
                ok = not isinstance(event, CouldNotRead)
                detail = f"read: {type(event).__name__}" + (
                    f" ({event.reason})" if isinstance(event, CouldNotRead) else ""
                )
                fix = "" if ok else "swipe steadily; check the reader's keyboard layout is US"
                checks.append(Check("wedge read", ok, detail, fix))
                break
    except TimeoutError:
        checks.append(
            Check(
                "wedge read",
                False,
                f"nothing read in {wait_card_s:g} s",
                "swipe or scan a card while the test waits (--wait-card SECONDS)",
            )
        )
    return checks
