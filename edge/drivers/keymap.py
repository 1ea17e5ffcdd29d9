"""US keyboard layout as a wedge reader types it: key codes <-> characters, with shift.

Readers ship set to the US layout; one set to another layout types the wrong characters for
``^ ? = ;`` and the parsers then report the frame as unreadable (never a wrong card number).
"""

from __future__ import annotations

from evdev import ecodes

__all__ = ["CLEAR_KEYS", "ENTER_KEYS", "KEYPAD_DIGITS", "SHIFT_KEYS", "char_for", "keys_for"]

_ROWS: list[tuple[str, str, str]] = [
    # (key name, unshifted, shifted)
    ("KEY_1", "1", "!"),
    ("KEY_2", "2", "@"),
    ("KEY_3", "3", "#"),
    ("KEY_4", "4", "$"),
    ("KEY_5", "5", "%"),
    ("KEY_6", "6", "^"),
    ("KEY_7", "7", "&"),
    ("KEY_8", "8", "*"),
    ("KEY_9", "9", "("),
    ("KEY_0", "0", ")"),
    ("KEY_MINUS", "-", "_"),
    ("KEY_EQUAL", "=", "+"),
    ("KEY_LEFTBRACE", "[", "{"),
    ("KEY_RIGHTBRACE", "]", "}"),
    ("KEY_SEMICOLON", ";", ":"),
    ("KEY_APOSTROPHE", "'", '"'),
    ("KEY_GRAVE", "`", "~"),
    ("KEY_BACKSLASH", "\\", "|"),
    ("KEY_COMMA", ",", "<"),
    ("KEY_DOT", ".", ">"),
    ("KEY_SLASH", "/", "?"),
    ("KEY_SPACE", " ", " "),
    ("KEY_KP0", "0", "0"),
    ("KEY_KP1", "1", "1"),
    ("KEY_KP2", "2", "2"),
    ("KEY_KP3", "3", "3"),
    ("KEY_KP4", "4", "4"),
    ("KEY_KP5", "5", "5"),
    ("KEY_KP6", "6", "6"),
    ("KEY_KP7", "7", "7"),
    ("KEY_KP8", "8", "8"),
    ("KEY_KP9", "9", "9"),
    ("KEY_KPMINUS", "-", "-"),
    ("KEY_KPPLUS", "+", "+"),
    ("KEY_KPDOT", ".", "."),
    ("KEY_KPASTERISK", "*", "*"),
    ("KEY_KPSLASH", "/", "/"),
]
_ROWS += [(f"KEY_{c.upper()}", c, c.upper()) for c in "abcdefghijklmnopqrstuvwxyz"]

_CHARS: dict[int, tuple[str, str]] = {int(ecodes.ecodes[n]): (lo, hi) for n, lo, hi in _ROWS}

# Inverse map for the simulated reader: prefer the main block over the keypad.
_KEYS: dict[str, tuple[int, bool]] = {}
for _name, _lo, _hi in reversed(_ROWS):
    _code = int(ecodes.ecodes[_name])
    _KEYS[_hi] = (_code, _hi != _lo)
    _KEYS[_lo] = (_code, False)

SHIFT_KEYS = frozenset({int(ecodes.KEY_LEFTSHIFT), int(ecodes.KEY_RIGHTSHIFT)})
ENTER_KEYS = frozenset({int(ecodes.KEY_ENTER), int(ecodes.KEY_KPENTER)})
CLEAR_KEYS = frozenset(
    {int(ecodes.KEY_BACKSPACE), int(ecodes.KEY_DELETE), int(ecodes.KEY_ESC), int(ecodes.KEY_CLEAR)}
)
KEYPAD_DIGITS = frozenset(code for code, (lo, _) in _CHARS.items() if lo.isdigit())


def char_for(code: int, shifted: bool) -> str | None:
    """The character a key types, or None for a key that types nothing we know."""
    pair = _CHARS.get(code)
    if pair is None:
        return None
    return pair[1] if shifted else pair[0]


def keys_for(ch: str) -> tuple[int, bool]:
    """(key code, needs shift) that types `ch`; KeyError for a character no key types."""
    return _KEYS[ch]
