"""The simulated NFC reader: cards are handed in with `present(card)`; the same tap code runs.

For the demo, field training and daemon tests; no pcscd or pyscard needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from edge.drivers.base import Check
from edge.drivers.nfc_cards import PlainTag, SimCard
from edge.drivers.nfc_tap import (
    CardGone,
    NfcEvent,
    ReaderBack,
    ReaderLost,
    SunVerifier,
    read_tap,
)

__all__ = ["SimulatedReader"]


class _SimLink:
    """A card in the simulated field; `remove_after` APDUs it leaves, as a hurried member does."""

    def __init__(self, card: SimCard, remove_after: int | None) -> None:
        self._card = card
        self._left = remove_after

    def transmit(self, apdu: bytes) -> bytes:
        if self._left is not None:
            if self._left <= 0:
                raise CardGone("simulated removal")
            self._left -= 1
        return self._card.transmit(apdu)


class SimulatedReader:
    """An in-process NFC reader. Reusable, not reentrant: `async with reader: ...`."""

    name = "Simulated NFC reader"

    def __init__(self, verifier: SunVerifier) -> None:
        self._verifier = verifier
        self._inbox: asyncio.Queue[tuple[SimCard, int | None] | NfcEvent] = asyncio.Queue()
        self._entered = False

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("SimulatedReader is not reentrant")
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False

    def present(self, card: SimCard, *, remove_after: int | None = None) -> None:
        """Put a card on the reader (it is read once); `remove_after` N APDUs it is pulled away."""
        card.reset()
        self._inbox.put_nowait((card, remove_after))

    def present_uid(self, uid_hex: str) -> None:
        """Put a plain UID tag on the reader."""
        self.present(PlainTag(bytes.fromhex(uid_hex)))

    def unplug(self, reason: str = "simulated unplug") -> None:
        self._inbox.put_nowait(ReaderLost(reason))

    def plug(self) -> None:
        self._inbox.put_nowait(ReaderBack(self.name))

    async def events(self) -> AsyncIterator[NfcEvent]:
        while True:
            item = await self._inbox.get()
            if isinstance(item, tuple):
                card, remove_after = item
                # Same thread hop as the pcsc backend: the counter store commit is blocking I/O.
                yield await asyncio.to_thread(
                    read_tap, _SimLink(card, remove_after), self._verifier
                )
            else:
                yield item

    async def self_test(self) -> list[Check]:
        return [Check("nfc reader", True, "simulated reader (no hardware)")]
