"""Keyboard-wedge driver: raw input_event structs through evdev's own async reader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from evdev import ecodes

from edge.drivers.base import DriverError, TokenKind, UnknownBackend
from edge.drivers.config import WedgeConfig
from edge.drivers.wedge import (
    EvdevKeySource,
    SimulatedKeySource,
    WedgeReader,
    make_key_source,
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
from tests.wedge_pipe import PipeInputDevice, Typist

MEMBER_T1 = "%M6012345678^MEMBER/ANNA^4912?"
MEMBER_T2 = ";6012345678=4912?"
BANK_PAN = "4111111111111111"
BANK_T1 = f"%B{BANK_PAN}^DOE/JOHN^2812101000000000000?"
BANK_T2 = f";{BANK_PAN}=28121010000000000?"


class Devices:
    """An opener handing out pipe devices in order; None in the list = still unplugged."""

    def __init__(self, *devices: PipeInputDevice | None) -> None:
        self.devices = list(devices)
        self.opened: list[PipeInputDevice] = []

    def __call__(self) -> PipeInputDevice:
        dev = self.devices.pop(0) if self.devices else None
        if dev is None:
            raise FileNotFoundError(2, "No such file or directory")
        self.opened.append(dev)
        return dev


async def take(it: AsyncIterator[WedgeEvent], n: int) -> list[WedgeEvent]:
    out: list[WedgeEvent] = []
    async with asyncio.timeout(10):  # a guard against a hang, not a timing assertion
        while len(out) < n:
            out.append(await anext(it))
    return out


def reader_on(*devices: PipeInputDevice | None, **kw: object) -> WedgeReader:
    source = EvdevKeySource(path="/dev/input/test", opener=Devices(*devices))
    return WedgeReader(source, retry_initial_s=0.001, retry_max_s=0.01, **kw)  # type: ignore[arg-type]


async def test_full_track1_and_track2_swipe_is_a_member_magstripe_token() -> None:
    dev = PipeInputDevice()
    dev.write(Typist().text(MEMBER_T1 + MEMBER_T2))
    async with reader_on(dev) as reader:
        [event] = await take(reader.events(), 1)
    assert isinstance(event, Swiped)
    assert event.token.kind is TokenKind.MAGSTRIPE
    assert event.token.value == "6012345678"
    assert event.token.authenticated is False
    assert event.tracks == (1, 2)
    assert dev.grabbed is False
    assert dev.closed


async def test_device_is_grabbed_while_reading() -> None:
    dev = PipeInputDevice()
    dev.write(Typist().text(MEMBER_T2))
    async with reader_on(dev) as reader:
        await take(reader.events(), 1)
        assert dev.grabbed


async def test_shifted_characters_and_key_repeat_decode_right() -> None:
    typist = Typist()
    dev = PipeInputDevice()
    # Right shift for an upper-case letter, an auto-repeat (value 2) that must not type twice.
    events = typist.key(ecodes.KEY_RIGHTSHIFT, 1) + typist.press(ecodes.KEY_Q)
    events += typist.key(ecodes.KEY_RIGHTSHIFT, 0)
    events += typist.press(ecodes.KEY_R, repeat=3) + typist.text("-Voucher:42?x")
    dev.write(events)
    async with reader_on(dev) as reader:
        [event] = await take(reader.events(), 1)
    assert isinstance(event, QrPayload)
    assert event.text == "Qr-Voucher:42?x"
    assert event.token.kind is TokenKind.QR
    assert not event.token.authenticated


async def test_barcode_with_luhn_and_ean13_check_digits() -> None:
    dev = PipeInputDevice()
    typist = Typist()
    dev.write(
        typist.text("79927398713") + typist.text("4006381333931") + typist.text("79927398710")
    )
    async with reader_on(dev) as reader:
        a, b, c = await take(reader.events(), 3)
    assert isinstance(a, Scanned)
    assert a.check == "luhn"
    assert a.token.value == "79927398713"
    assert isinstance(b, Scanned)
    assert b.check == "ean13"
    assert b.token.kind is TokenKind.BARCODE
    assert c == CouldNotRead("check digit wrong: scan again")


async def test_half_swipe_is_could_not_read_after_the_gap() -> None:
    dev = PipeInputDevice()
    dev.write(Typist().text("%M60123", enter=False))  # no end sentinel, no Enter: idle flush
    async with reader_on(dev, frame_gap_s=0.02) as reader:
        [event] = await take(reader.events(), 1)
    assert isinstance(event, CouldNotRead)
    assert "incomplete swipe" in event.reason


async def test_noise_keys_are_could_not_read_never_an_exception() -> None:
    typist = Typist()
    dev = PipeInputDevice()
    dev.write(typist.press(ecodes.KEY_F5) + typist.text("ab"))
    dev.write(typist.text("x1"))  # two chars: too short to be a code
    async with reader_on(dev) as reader:
        a, b = await take(reader.events(), 2)
    assert isinstance(a, CouldNotRead)
    assert "unexpected keys" in a.reason
    assert isinstance(b, CouldNotRead)
    assert "too short" in b.reason


async def test_wrong_keyboard_layout_is_could_not_read() -> None:
    # A reader set to German types & for ^ and _ for ? when read with the US layout.
    dev = PipeInputDevice()
    dev.write(Typist().text("%M6012345678&MEMBER/ANNA&4912_"))
    async with reader_on(dev) as reader:
        [event] = await take(reader.events(), 1)
    assert isinstance(event, CouldNotRead)


async def test_inter_key_gap_splits_frames_by_event_timestamps() -> None:
    typist = Typist()
    dev = PipeInputDevice()
    events = typist.text("%M60123", enter=False)  # the start of a swipe, then nothing
    typist.pause(2.0)  # two seconds later by the reader's clock (all arrive at once here)
    events += typist.text(MEMBER_T2)
    dev.write(events)
    async with reader_on(dev, frame_gap_s=0.1) as reader:
        a, b = await take(reader.events(), 2)
    assert isinstance(a, CouldNotRead)
    assert "incomplete" in a.reason
    assert isinstance(b, Swiped)
    assert b.token.value == "6012345678"


async def test_pin_mode_digits_clear_enter_and_pin_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    typist = Typist(step=0.5)  # human speed: no inter-key timeout in PIN mode
    dev = PipeInputDevice()
    events = typist.text("9", enter=False) + typist.press(ecodes.KEY_BACKSPACE)
    events += typist.press(ecodes.KEY_KP4) + typist.text("739", enter=False)
    events += typist.press(ecodes.KEY_KPENTER)
    dev.write(events)
    async with reader_on(dev, pin_mode=True) as reader:
        got = await take(reader.events(), 7)
    assert got == [
        PinKeyed(1),
        PinCleared(),
        PinKeyed(1),
        PinKeyed(2),
        PinKeyed(3),
        PinKeyed(4),
        PinEntered("4739"),
    ]
    assert "4739" not in caplog.text
    assert "4739" not in repr(got[-1])


async def test_swipe_during_pin_entry_throws_the_pin_away() -> None:
    typist = Typist()
    dev = PipeInputDevice()
    dev.write(typist.text("12", enter=False) + typist.text(MEMBER_T2))
    async with reader_on(dev, pin_mode=True) as reader:
        got = await take(reader.events(), 4)
    assert got[:3] == [PinKeyed(1), PinKeyed(2), PinCleared()]
    assert isinstance(got[3], CouldNotRead)
    assert "PIN" in got[3].reason


@pytest.mark.parametrize(
    "swipe",
    [BANK_T1 + BANK_T2, BANK_T2, BANK_T1, f"%B{BANK_PAN}^DOE/J"],
    ids=["both-tracks", "track2", "track1", "half-swipe"],
)
async def test_bank_card_is_refused_and_its_digits_never_logged(
    swipe: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dev = PipeInputDevice()
    dev.write(Typist().text(swipe))
    async with reader_on(dev) as reader:
        [event] = await take(reader.events(), 1)
    assert event == BankCardRefused()
    assert "bank card" in caplog.text
    assert BANK_PAN not in caplog.text
    assert BANK_PAN[-4:] not in caplog.text
    assert BANK_PAN not in repr(event)


async def test_unplug_then_replug_recovers_with_lost_and_back_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    first, second = PipeInputDevice(), PipeInputDevice()
    typist = Typist()
    first.write(typist.text(MEMBER_T2))
    first.unplug()  # ENODEV on the next read
    second.write(typist.text("79927398713"))
    # After the unplug, two opens fail (device not back yet), then the second device appears.
    async with reader_on(first, None, None, second) as reader:
        got = await take(reader.events(), 4)
    assert isinstance(got[0], Swiped)
    assert isinstance(got[1], ReaderLost)
    assert "No such device" in got[1].detail
    assert got[2] == ReaderBack("pipe wedge reader")
    assert isinstance(got[3], Scanned)
    assert first.closed
    assert second.closed
    assert "wedge reader lost" in caplog.text
    assert "wedge reader back" in caplog.text


async def test_reader_missing_at_start_reports_lost_once_then_back() -> None:
    dev = PipeInputDevice()
    dev.write(Typist().text(MEMBER_T2))
    async with reader_on(None, None, None, dev) as reader:
        got = await take(reader.events(), 3)
    assert isinstance(got[0], ReaderLost)
    assert isinstance(got[1], ReaderBack)
    assert isinstance(got[2], Swiped)


async def test_exit_cancels_a_blocked_read() -> None:
    dev = PipeInputDevice()  # nothing is ever written: the read blocks forever
    reader = reader_on(dev)
    async with reader:
        it = reader.events()
        pending = asyncio.ensure_future(anext(it))
        await asyncio.sleep(0.01)
        assert not pending.done()
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        await it.aclose()
    assert dev.closed


async def test_simulated_reader_runs_the_same_decoder_and_recovers() -> None:
    sim = SimulatedKeySource()
    async with WedgeReader(sim, retry_initial_s=0.001, retry_max_s=0.01) as reader:
        it = reader.events()
        sim.swipe(MEMBER_T1, MEMBER_T2)
        sim.scan("https://club.example/v/ABC123")
        sim.swipe(BANK_T1, BANK_T2)
        sim.type_text("%M6012", enter=False)
        sim.press(ecodes.KEY_ENTER)
        got = await take(it, 4)
        sim.unplug()
        sim.scan("79927398713")  # typed into a pulled cable: lost
        got += await take(it, 1)
        sim.replug()
        sim.scan("4006381333931")
        got += await take(it, 2)
    assert [type(e) for e in got] == [
        Swiped,
        QrPayload,
        BankCardRefused,
        CouldNotRead,
        ReaderLost,
        ReaderBack,
        Scanned,
    ]


def test_backends_are_chosen_by_name() -> None:
    assert isinstance(make_key_source("sim"), SimulatedKeySource)
    real = make_key_source("real", WedgeConfig(backend="real", path="/dev/input/event9"))
    assert isinstance(real, EvdevKeySource)
    with pytest.raises(UnknownBackend) as err:
        make_key_source("usb-serial")
    assert err.value.known == ["real", "sim"]


async def test_missing_device_path_is_a_driver_error_naming_the_path() -> None:
    source = EvdevKeySource(path="/dev/input/by-id/no-such-reader")
    with pytest.raises(DriverError, match="no-such-reader"):
        await source.open()
