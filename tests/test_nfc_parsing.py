"""The NDEF/SUN URL parser and the tap dialogue: garbage gives our typed rejection, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.drivers.base import TokenKind
from edge.drivers.nfc_tap import CardPresented, CardRejected, SunVerifier, read_tap
from edge.drivers.ntag424 import RejectReason, SiteKeys, SunRejected
from edge.drivers.sun_counters import MemoryCounterStore
from edge.drivers.sun_url import (
    build_ndef_file,
    is_sun_url,
    parse_ndef_uri,
    parse_sun_url,
    sun_url,
)

T = TypeVar("T")
R = TypeVar("R")
KEYS = SiteKeys(master=bytes.fromhex("6B1D0E5F9A3C47D2B8E0F1A2C3D4E5F6"))
GOOD = "https://tap.example/k?e=" + "AB" * 16 + "&cmac=" + "CD" * 8


def _outcome(fn: Callable[[T], R], arg: T) -> R | SunRejected:
    try:
        return fn(arg)
    except SunRejected as e:  # anything else propagates and fails the test
        return e


@given(st.binary(max_size=300))
def test_ndef_garbage_parses_or_raises_only_malformed(data: bytes) -> None:
    uri = _outcome(parse_ndef_uri, data)
    if isinstance(uri, SunRejected):
        assert uri.reason is RejectReason.MALFORMED
    else:
        assert uri is None or isinstance(uri, str)


@given(st.text(max_size=200))
def test_url_garbage_parses_or_raises_only_malformed(text: str) -> None:
    msg = _outcome(parse_sun_url, text)
    if isinstance(msg, SunRejected):
        assert msg.reason is RejectReason.MALFORMED
    else:
        assert (len(msg.picc_enc), len(msg.mac)) == (16, 8)


@given(st.binary(max_size=40).map(lambda b: b.hex()), st.text(max_size=40))
def test_url_with_near_miss_hex_parses_or_raises_only_malformed(e: str, cmac: str) -> None:
    msg = _outcome(parse_sun_url, f"https://t.example/k?e={e}&cmac={cmac}")
    if isinstance(msg, SunRejected):
        assert msg.reason is RejectReason.MALFORMED
    else:
        assert (msg.picc_enc.hex(), msg.mac.hex()) == (e, cmac.lower())


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8))
def test_sun_url_round_trips_through_an_ndef_file(picc: bytes, mac: bytes) -> None:
    uri = parse_ndef_uri(build_ndef_file(sun_url("https://tap.example/k", picc, mac)))
    assert uri is not None
    msg = parse_sun_url(uri)
    assert (msg.picc_enc, msg.mac, msg.mac_input) == (picc, mac, b"")


@pytest.mark.parametrize(
    "url",
    [
        GOOD.replace("e=AB", "e= B"),  # bytes.fromhex would accept the space
        GOOD.replace("cmac=CD", "cmac=CDCD"),
        GOOD + "&e=" + "AB" * 16,
        GOOD + "&x=1",
        GOOD.replace("&cmac=", "&mac="),
        "https://tap.example/k?e=" + "AB" * 16,
    ],
)
def test_url_outside_our_layout_is_malformed(url: str) -> None:
    with pytest.raises(SunRejected) as err:
        parse_sun_url(url)
    assert err.value.reason is RejectReason.MALFORMED


def test_plain_urls_are_not_sun_urls() -> None:
    assert is_sun_url(GOOD)
    assert not is_sun_url("https://example.org/member?id=42")


class _FileCard:
    """A Type 4 tag serving arbitrary NDEF file bytes."""

    def __init__(self, ndef: bytes) -> None:
        self.ndef = ndef

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\xff\xca":
            return bytes.fromhex("04A1B2C3D4E5F6") + b"\x90\x00"
        if apdu[1] == 0xA4:
            return b"\x90\x00"
        if apdu[1] == 0xB0:
            off, n = int.from_bytes(apdu[2:4], "big"), apdu[4]
            chunk = self.ndef[off : off + n]
            return chunk + (b"\x90\x00" if len(chunk) == n else b"\x6b\x00")
        return b"\x6d\x00"


@given(st.binary(max_size=300))
def test_tap_of_a_card_with_garbage_ndef_is_an_event(ndef: bytes) -> None:
    verifier = SunVerifier(KEYS, MemoryCounterStore(KEYS.counter_store_key))
    event = read_tap(_FileCard(ndef), verifier)
    if isinstance(event, CardPresented):
        assert event.token.kind is TokenKind.NFC_UID
    else:
        assert isinstance(event, CardRejected)


def test_tap_of_a_type4_tag_with_a_plain_url_is_an_unauthenticated_uid() -> None:
    verifier = SunVerifier(KEYS, MemoryCounterStore(KEYS.counter_store_key))
    event = read_tap(_FileCard(build_ndef_file("https://example.org/m?id=4")), verifier)
    assert isinstance(event, CardPresented)
    assert (event.token.kind, event.token.authenticated) == (TokenKind.NFC_UID, False)


def test_tap_of_a_sun_url_with_a_bad_mac_is_rejected() -> None:
    verifier = SunVerifier(KEYS, MemoryCounterStore(KEYS.counter_store_key))
    event = read_tap(_FileCard(build_ndef_file(GOOD)), verifier)
    assert isinstance(event, CardRejected)
    assert event.reason is RejectReason.BAD_MAC
