"""The NFC driver against the real stack: our own pcscd, vpcd, and a card emulator on its socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard not installed (pip install -e '.[hw]')")

from edge.drivers.base import Check, TokenKind
from edge.drivers.nfc import (
    CardPresented,
    CardRejected,
    CardRemovedEarly,
    NfcEvent,
    NfcReader,
    ReaderBack,
    ReaderLost,
    RejectReason,
    SiteKeys,
    SqliteCounterStore,
    SunVerifier,
    create_nfc_reader,
)
from tests.card_emulator import VpcdCard, ntag424, plain_tag
from tests.pcscd_process import VPCD_READER, Pcscd, wait_reader_empty

pytestmark = pytest.mark.pcsc

EVENT_TIMEOUT_S = 20.0  # only to avoid hangs: a tap is normally seen within half a second
UID = "04958CAA5C5E80"


@pytest.fixture
def keys() -> SiteKeys:
    return SiteKeys(master=bytes.fromhex("6B1D0E5F9A3C47D2B8E0F1A2C3D4E5F6"), system_id=b"site-7")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "sun_counters.sqlite"


class Session:
    """A running PC/SC reader and its event stream."""

    def __init__(self, events: AsyncIterator[NfcEvent]) -> None:
        self.events = events

    async def next(self) -> NfcEvent:
        return await asyncio.wait_for(anext(self.events), EVENT_TIMEOUT_S)

    async def tap(self, card: VpcdCard) -> NfcEvent:
        card.insert()
        try:
            return await self.next()
        finally:
            card.remove()
            # So the next tap starts from an empty reader, not pcscd's not-yet-polled state.
            await asyncio.to_thread(wait_reader_empty)


async def _open(keys: SiteKeys, store: SqliteCounterStore) -> AsyncIterator[Session]:
    reader = create_nfc_reader("real", SunVerifier(keys, store), reader_name=VPCD_READER)
    async with reader:
        events = reader.events()
        try:
            yield Session(events)
        finally:
            await events.aclose()  # type: ignore[attr-defined]  # AsyncIterator has no aclose


@pytest.fixture
async def session(pcscd: Pcscd, keys: SiteKeys, store_path: Path) -> AsyncIterator[Session]:
    with SqliteCounterStore(store_path, keys.counter_store_key) as store:
        async for s in _open(keys, store):
            yield s


async def test_plain_uid_tap_gives_unauthenticated_uid_token(session: Session) -> None:
    event = await session.tap(VpcdCard(plain_tag("04A1B2C3D4E5F6")))
    assert isinstance(event, CardPresented)
    assert event.token.kind is TokenKind.NFC_UID
    assert event.token.value == "04A1B2C3D4E5F6"
    assert event.token.authenticated is False


async def test_ntag424_tap_gives_authenticated_token(session: Session, keys: SiteKeys) -> None:
    event = await session.tap(VpcdCard(ntag424(keys, UID, read_ctr=41)))
    assert isinstance(event, CardPresented)
    assert event.token.kind is TokenKind.NTAG424_SUN
    assert event.token.value == UID
    assert event.token.authenticated is True


async def test_forged_mac_is_rejected(session: Session, keys: SiteKeys) -> None:
    card = ntag424(keys, UID)
    card.forge_mac = True
    event = await session.tap(VpcdCard(card))
    assert event == CardRejected(RejectReason.BAD_MAC, "SDMMAC mismatch")


async def test_card_of_another_site_is_rejected(session: Session) -> None:
    other = SiteKeys(master=bytes.fromhex("00112233445566778899AABBCCDDEEFF"), system_id=b"site-7")
    event = await session.tap(VpcdCard(ntag424(other, UID)))
    assert isinstance(event, CardRejected)
    assert event.reason is RejectReason.BAD_MAC


async def test_replayed_counter_is_rejected_even_after_restart(
    pcscd: Pcscd, keys: SiteKeys, store_path: Path
) -> None:
    card = ntag424(keys, UID, read_ctr=7)
    with SqliteCounterStore(store_path, keys.counter_store_key) as store:
        async for s in _open(keys, store):
            first = await s.tap(VpcdCard(card))
            assert isinstance(first, CardPresented)
            card.replay_next = True
            replayed = await s.tap(VpcdCard(card))
            assert isinstance(replayed, CardRejected)
            assert replayed.reason is RejectReason.REPLAYED
    # A new driver with the same persisted store: the captured URL is still refused.
    with SqliteCounterStore(store_path, keys.counter_store_key) as store:
        async for s in _open(keys, store):
            card.replay_next = True
            replayed = await s.tap(VpcdCard(card))
            assert isinstance(replayed, CardRejected)
            assert replayed.reason is RejectReason.REPLAYED
            fresh = await s.tap(VpcdCard(card))
            assert isinstance(fresh, CardPresented)
            assert card.read_ctr == 9


async def test_card_removed_mid_read_is_an_event(session: Session, keys: SiteKeys) -> None:
    card = VpcdCard(ntag424(keys, UID), pull_when=lambda apdu: apdu[1] == 0xB0)
    event = await session.tap(card)
    assert card.pulled.is_set()
    assert event == CardRemovedEarly()
    # The driver keeps working: the member taps again.
    again = await session.tap(VpcdCard(ntag424(keys, UID, read_ctr=100)))
    assert isinstance(again, CardPresented)
    assert again.token.authenticated is True


@pytest.mark.slow
async def test_reader_recovers_after_pcscd_restart(session: Session, pcscd: Pcscd) -> None:
    assert isinstance(await session.tap(VpcdCard(plain_tag())), CardPresented)
    pcscd.stop()
    lost = await session.next()
    assert isinstance(lost, ReaderLost)
    pcscd.start()
    back = await session.next()
    assert back == ReaderBack(VPCD_READER)
    event = await session.tap(VpcdCard(plain_tag("04000000000001")))
    assert isinstance(event, CardPresented)
    assert event.token.value == "04000000000001"


async def test_self_test_reads_a_card_on_the_reader(
    pcscd: Pcscd, keys: SiteKeys, store_path: Path
) -> None:
    with SqliteCounterStore(store_path, keys.counter_store_key) as store:
        reader = create_nfc_reader("real", SunVerifier(keys, store), reader_name=VPCD_READER)
        async with reader:
            idle = await reader.self_test()
            assert [(c.name, c.ok) for c in idle] == [
                ("pcscd", True),
                ("nfc reader", True),
                ("nfc card read", True),
            ]
            assert "no card" in idle[2].detail
            card = VpcdCard(ntag424(keys, UID, read_ctr=3))
            card.insert()
            try:
                checks = await _self_test_once_card_seen(reader)
            finally:
                card.remove()
                await asyncio.to_thread(wait_reader_empty)
    assert [(c.name, c.ok) for c in checks] == [
        ("pcscd", True),
        ("nfc reader", True),
        ("nfc card read", True),
    ]
    assert checks[2].detail == "read a ntag424_sun card"


async def _self_test_once_card_seen(reader: NfcReader) -> list[Check]:
    # pcscd notices an inserted card on its next poll: retry until the self-test sees it.
    for _ in range(100):
        checks = await reader.self_test()
        if "no card" not in checks[-1].detail:
            return checks
        await asyncio.sleep(0.1)
    raise AssertionError("pcscd never reported the inserted card")


async def test_self_test_names_the_fix_when_no_reader_matches(pcscd: Pcscd, keys: SiteKeys) -> None:
    from edge.drivers.nfc import MemoryCounterStore

    verifier = SunVerifier(keys, MemoryCounterStore(keys.counter_store_key))
    async with create_nfc_reader("real", verifier, reader_name="ACR122U") as reader:
        checks = await reader.self_test()
    assert checks[0].ok is True
    assert checks[1].name == "nfc reader"
    assert checks[1].ok is False
    assert "pcsc_scan" in checks[1].fix
