"""The simulated NFC reader and the SUN counter store (no pcscd needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.drivers.base import TokenKind, UnknownBackend
from edge.drivers.nfc import (
    CardPresented,
    CardRejected,
    CardRemovedEarly,
    MemoryCounterStore,
    ReaderBack,
    ReaderLost,
    RejectReason,
    SimulatedReader,
    SiteKeys,
    SqliteCounterStore,
    SunVerifier,
    create_nfc_reader,
)
from edge.drivers.nfc_cards import Ntag424Tag

KEYS = SiteKeys(master=bytes.fromhex("6B1D0E5F9A3C47D2B8E0F1A2C3D4E5F6"))
UID = bytes.fromhex("04958CAA5C5E80")


@pytest.fixture
def reader() -> SimulatedReader:
    verifier = SunVerifier(KEYS, MemoryCounterStore(KEYS.counter_store_key))
    sim = create_nfc_reader("sim", verifier)
    assert isinstance(sim, SimulatedReader)
    return sim


def test_unknown_backend_names_the_choices() -> None:
    verifier = SunVerifier(KEYS, MemoryCounterStore(KEYS.counter_store_key))
    with pytest.raises(UnknownBackend) as err:
        create_nfc_reader("acr122", verifier)
    assert err.value.known == ["real", "sim"]


async def test_simulated_taps_run_the_same_verification(reader: SimulatedReader) -> None:
    card = Ntag424Tag.for_site(UID, KEYS)
    async with reader:
        events = reader.events()
        reader.present_uid("04A1B2C3D4E5F6")
        reader.present(card)
        card_forged = Ntag424Tag.for_site(UID, KEYS, read_ctr=50)
        card_forged.forge_mac = True
        reader.present(card_forged)
        reader.present(Ntag424Tag.for_site(UID, KEYS, read_ctr=0))  # counter 1 again: replay
        reader.present(card, remove_after=2)
        got = [await asyncio.wait_for(anext(events), 5) for _ in range(5)]
    plain, sun, forged, replayed, removed = got
    assert isinstance(plain, CardPresented)
    assert (plain.token.kind, plain.token.authenticated) == (TokenKind.NFC_UID, False)
    assert isinstance(sun, CardPresented)
    assert (sun.token.kind, sun.token.value) == (TokenKind.NTAG424_SUN, UID.hex().upper())
    assert isinstance(forged, CardRejected)
    assert forged.reason is RejectReason.BAD_MAC
    assert isinstance(replayed, CardRejected)
    assert replayed.reason is RejectReason.REPLAYED
    assert removed == CardRemovedEarly()


async def test_simulated_unplug_and_plug_are_events(reader: SimulatedReader) -> None:
    async with reader:
        events = reader.events()
        reader.unplug()
        reader.plug()
        assert isinstance(await anext(events), ReaderLost)
        assert await anext(events) == ReaderBack(SimulatedReader.name)
        checks = await reader.self_test()
    assert all(c.ok for c in checks)


def test_counter_store_survives_reopen_and_holds_no_uid(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with SqliteCounterStore(path, KEYS.counter_store_key) as store:
        assert store.advance(UID, 5) is True
        assert store.advance(UID, 5) is False
        assert store.advance(UID, 6) is True
    with SqliteCounterStore(path, KEYS.counter_store_key) as store:
        assert store.advance(UID, 6) is False
        assert store.advance(UID, 4) is False
        assert store.advance(UID, 7) is True
        assert store.advance(bytes.fromhex("04000000000001"), 1) is True
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert UID not in raw
    assert UID.hex().encode() not in raw
    assert UID.hex().upper().encode() not in raw
