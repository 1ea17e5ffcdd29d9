"""NFC card reader driver: pick a backend by name (`real`: PC/SC, or `sim`), iterate its events.

Use: `async with create_nfc_reader("real", verifier) as r: async for event in r.events(): ...`
"""

from __future__ import annotations

from typing import Protocol

from edge.drivers.base import Check, Driver, UnknownBackend
from edge.drivers.nfc_sim import SimulatedReader
from edge.drivers.nfc_tap import (
    CardPresented,
    CardRejected,
    CardRemovedEarly,
    NfcEvent,
    ReaderBack,
    ReaderLost,
    SunVerifier,
)
from edge.drivers.ntag424 import RejectReason, SiteKeys
from edge.drivers.sun_counters import CounterStore, MemoryCounterStore, SqliteCounterStore

__all__ = [
    "BACKENDS",
    "CardPresented",
    "CardRejected",
    "CardRemovedEarly",
    "CounterStore",
    "MemoryCounterStore",
    "NfcEvent",
    "NfcReader",
    "ReaderBack",
    "ReaderLost",
    "RejectReason",
    "SimulatedReader",
    "SiteKeys",
    "SqliteCounterStore",
    "SunVerifier",
    "create_nfc_reader",
]

BACKENDS = ("real", "sim")  # real: PC/SC through pcscd


class NfcReader(Driver[NfcEvent], Protocol):
    """What the app uses of an NFC reader: events, and a self-test for `kiosk selftest`."""

    async def self_test(self) -> list[Check]: ...


def create_nfc_reader(
    backend: str, verifier: SunVerifier, *, reader_name: str | None = None
) -> NfcReader:
    """The NFC reader for a config's backend name.

    `reader_name` picks the first PC/SC reader whose name contains it (pcsc backend only).
    """
    if backend == "sim":
        return SimulatedReader(verifier)
    if backend == "real":
        # Imported here: pyscard is an optional (hw) dependency the demo does not need.
        from edge.drivers.nfc_pcsc import PcscReader

        return PcscReader(verifier, reader_name=reader_name)
    raise UnknownBackend("nfc", backend, list(BACKENDS))
