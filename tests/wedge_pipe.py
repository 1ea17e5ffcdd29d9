"""A pipe standing in for /dev/input/eventN: tests write raw `input_event` structs into it and
python-evdev's own async reader (EventIO.async_read_loop) decodes them, as from a real device."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator

from evdev import InputEvent, ecodes
from evdev.eventio_async import EventIO

# struct input_event on 64-bit Linux: timeval (long, long), type u16, code u16, value s32.
INPUT_EVENT = struct.Struct("llHHi")
assert INPUT_EVENT.size == 24

# The test's own US-layout table (independent of edge.drivers.keymap, so the two check each other).
_SHIFTED = {
    "%": "KEY_5",
    "^": "KEY_6",
    "?": "KEY_SLASH",
    "!": "KEY_1",
    "&": "KEY_7",
    "_": "KEY_MINUS",
    ":": "KEY_SEMICOLON",
    "+": "KEY_EQUAL",
}
_PLAIN = {
    ";": "KEY_SEMICOLON",
    "=": "KEY_EQUAL",
    "/": "KEY_SLASH",
    " ": "KEY_SPACE",
    "-": "KEY_MINUS",
    ".": "KEY_DOT",
    ",": "KEY_COMMA",
}


def key_for(ch: str) -> tuple[int, bool]:
    if ch in _SHIFTED:
        return ecodes.ecodes[_SHIFTED[ch]], True
    if ch in _PLAIN:
        return ecodes.ecodes[_PLAIN[ch]], False
    if ch.isascii() and ch.isalnum():
        return ecodes.ecodes[f"KEY_{ch.upper()}"], ch.isupper()
    raise ValueError(ch)


class Typist:
    """Builds key event tuples with timestamps from its own clock (`step` apart)."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.002) -> None:
        self.t = start
        self.step = step

    def pause(self, seconds: float) -> None:
        self.t += seconds

    def key(self, code: int, value: int) -> list[tuple[int, int, int, int, int]]:
        self.t += self.step
        sec, usec = divmod(round(self.t * 1_000_000), 1_000_000)
        return [
            (sec, usec, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code),
            (sec, usec, ecodes.EV_KEY, code, value),
            (sec, usec, ecodes.EV_SYN, ecodes.SYN_REPORT, 0),
        ]

    def press(self, code: int, *, repeat: int = 0) -> list[tuple[int, int, int, int, int]]:
        out = self.key(code, 1)
        for _ in range(repeat):
            out += self.key(code, 2)
        return out + self.key(code, 0)

    def text(self, text: str, *, enter: bool = True) -> list[tuple[int, int, int, int, int]]:
        out: list[tuple[int, int, int, int, int]] = []
        for ch in text:
            code, shifted = key_for(ch)
            if shifted:
                out += self.key(ecodes.KEY_LEFTSHIFT, 1)
            out += self.press(code)
            if shifted:
                out += self.key(ecodes.KEY_LEFTSHIFT, 0)
        if enter:
            out += self.press(ecodes.KEY_ENTER)
        return out


class PipeInputDevice(EventIO):
    """evdev's async EventIO over the read end of a pipe. Closing the write end is an unplug:
    the next read raises OSError(ENODEV), as the kernel does for a removed device."""

    name = "pipe wedge reader"

    def __init__(self) -> None:
        self.fd, self._wfd = os.pipe()
        os.set_blocking(self.fd, False)
        self.grabbed = False
        self.closed = False

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def write(self, events: list[tuple[int, int, int, int, int]]) -> None:  # type: ignore[override]
        data = b"".join(INPUT_EVENT.pack(*e) for e in events)
        view = memoryview(data)
        while view:
            n = os.write(self._wfd, view)
            view = view[n:]

    def unplug(self) -> None:
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1

    def read(self) -> Iterator[InputEvent]:
        events = list(super().read())
        if not events:  # EOF on the pipe
            raise OSError(errno.ENODEV, "No such device")
        yield from events

    def close(self) -> None:
        super().close()
        if not self.closed:
            self.closed = True
            os.close(self.fd)
            self.unplug()
