"""The pcsc backend's reader-unplug recovery, with PC/SC answers scripted (vpcd cannot unplug)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("smartcard", reason="pyscard not installed (pip install -e '.[hw]')")

from smartcard import scard as real_scard

from edge.drivers import nfc_pcsc
from edge.drivers.nfc import (
    MemoryCounterStore,
    ReaderBack,
    ReaderLost,
    SiteKeys,
    SunVerifier,
    create_nfc_reader,
)

KEYS = SiteKeys(master=bytes.fromhex("6B1D0E5F9A3C47D2B8E0F1A2C3D4E5F6"))
READER = "ACS ACR122U PICC Interface 00 00"


class UnpluggableScard:
    """pcscd as seen through pyscard, for a USB reader that can be pulled out."""

    def __init__(self) -> None:
        self.plugged = True

    def __getattr__(self, name: str) -> Any:
        return getattr(real_scard, name)  # constants and error messages

    def SCardEstablishContext(self, scope: int) -> tuple[int, int]:
        return 0, 1

    def SCardReleaseContext(self, ctx: int) -> int:
        return 0

    def SCardCancel(self, ctx: int) -> int:
        return 0

    def SCardListReaders(self, ctx: int, groups: list[str]) -> tuple[int, list[str]]:
        return (0, [READER]) if self.plugged else (0x8010002E, [])

    def SCardGetStatusChange(
        self, ctx: int, timeout_ms: int, states: list[tuple[str, int]]
    ) -> tuple[int, list[tuple[str, int, list[int]]]]:
        ((name, current),) = states
        if not self.plugged:
            return 0, [(name, real_scard.SCARD_STATE_UNKNOWN | real_scard.SCARD_STATE_CHANGED, [])]
        if current == real_scard.SCARD_STATE_UNAWARE:
            return 0, [(name, real_scard.SCARD_STATE_EMPTY | real_scard.SCARD_STATE_CHANGED, [])]
        time.sleep(0.01)
        return 0x8010000A, []  # timeout: nothing changed


async def test_unplugged_reader_is_lost_then_back(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = UnpluggableScard()
    monkeypatch.setattr(nfc_pcsc, "scard", fake)
    monkeypatch.setattr(nfc_pcsc, "BACKOFF_MIN_S", 0.01)
    verifier = SunVerifier(KEYS, MemoryCounterStore(KEYS.counter_store_key))
    async with create_nfc_reader("real", verifier, reader_name="ACR122U") as reader:
        events = reader.events()
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.05)
        assert not pending.done()  # an idle reader yields nothing
        fake.plugged = False
        lost = await asyncio.wait_for(pending, 5)
        assert isinstance(lost, ReaderLost)
        assert READER in lost.reason
        fake.plugged = True
        back = await asyncio.wait_for(anext(events), 5)
        assert back == ReaderBack(READER)
        await events.aclose()  # type: ignore[attr-defined]  # AsyncIterator has no aclose
