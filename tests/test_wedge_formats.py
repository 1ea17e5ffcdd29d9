"""Card format parsers: magstripe tracks, check digits, the bank-card rule; fuzzed."""

from __future__ import annotations

import pytest
from evdev import InputEvent, ecodes
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.drivers import keymap
from edge.drivers.cardformats import (
    BankCard,
    Barcode,
    Magstripe,
    Qr,
    Unreadable,
    classify,
    ean13_valid,
    is_bank_card,
    luhn_valid,
)
from edge.drivers.wedge_decode import (
    FrameDecoder,
)


def test_luhn_and_ean13() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("")
    assert not luhn_valid("7992739871a")
    assert not luhn_valid("٣٣")
    assert ean13_valid("4006381333931")
    assert not ean13_valid("4006381333932")


@pytest.mark.parametrize(
    ("pan", "fc", "service", "bank"),
    [
        ("4111111111111111", "B", True, True),  # Visa, financial format
        ("4111111111111111", None, True, True),  # Visa on track 2 with expiry + service code
        ("4111111111111111", None, False, False),  # no expiry/service code: not track data
        ("5555555555554444", None, True, True),  # Mastercard 5-series
        ("2221000000000009", None, True, True),  # Mastercard 2-series
        ("7000000000000005", None, True, False),  # MII 7 (petroleum/private): not a bank IIN
        ("7000000000000005", "B", False, True),  # ...but format B with a Luhn PAN is
        ("4111111111111112", "B", True, False),  # Luhn fails: not a payment card number
        ("41111111111", "B", True, False),  # too short for a PAN
    ],
)
def test_bank_card_rule(pan: str, fc: str | None, service: bool, bank: bool) -> None:
    assert is_bank_card(pan, format_code=fc, expiry_and_service=service) is bank


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (";6012345678=4912?", Magstripe("6012345678", (2,))),
        (";12345678?", Magstripe("12345678", (2,))),
        ("%M6012345678^ANNA^?", Magstripe("6012345678", (1,))),
        ("%E?;6012345678=4912?", Magstripe("6012345678", (2,))),  # track 1 unreadable, 2 fine
        ("%E?;E?", Unreadable("card could not be read: swipe again")),
        ("%M111^A^?;222?", Unreadable("tracks disagree: swipe again")),
        (";4111111111111111=28121010000000000?", BankCard()),
        ("]E04006381333931", Barcode("4006381333931", "ean13")),
        ("]Q1ABC-123", Qr("ABC-123")),
        ("]Q179927398713", Qr("79927398713")),  # a QR that holds digits stays a QR
        ("1234567", Unreadable("number of the wrong length for a card")),
        ("", Unreadable("empty read")),
        ("ab\x07cd", Unreadable("control characters in the data: noise")),
    ],
)
def test_classify(text: str, expected: object) -> None:
    assert classify(text) == expected


def test_results_hide_numbers_in_repr() -> None:
    assert "6012345678" not in repr(classify(";6012345678?"))
    assert "79927398713" not in repr(classify("79927398713"))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_typed_result(text: str) -> None:
    assert isinstance(classify(text), Magstripe | Barcode | Qr | BankCard | Unreadable)


_track_alphabet = st.sampled_from(list("%;^?=BME0123456789/ AZ"))


@settings(max_examples=400, deadline=None)
@given(st.lists(_track_alphabet, max_size=80).map("".join))
def test_track_like_text_gives_a_typed_result(text: str) -> None:
    result = classify(text)
    assert isinstance(result, Magstripe | Barcode | Qr | BankCard | Unreadable)
    if isinstance(result, Magstripe):
        assert result.number.isdigit()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*range(1, 120), ecodes.KEY_LEFTSHIFT, ecodes.KEY_ENTER]),
            st.sampled_from([0, 1, 2]),
            st.floats(min_value=0, max_value=0.5),
            st.booleans(),
        ),
        max_size=120,
    )
)
def test_any_key_stream_decodes_without_exceptions(
    keys: list[tuple[int, int, float, bool]],
) -> None:
    decoder = FrameDecoder(frame_gap_s=0.1)
    t = 1000.0
    for code, value, dt, pin in keys:
        t += dt
        if pin != decoder.pin_mode and code == 1:
            decoder.pin_mode = pin
        sec, usec = divmod(round(t * 1e6), 1_000_000)
        decoder.feed(InputEvent(sec, usec, ecodes.EV_KEY, code, value))
    decoder.flush()
    assert not decoder.pending


@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"])))
def test_keymap_round_trips_every_typeable_character(text: str) -> None:
    for ch in text:
        code, shifted = keymap.keys_for(ch)
        assert keymap.char_for(code, shifted) == ch
