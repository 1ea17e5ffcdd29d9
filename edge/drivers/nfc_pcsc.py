"""The real NFC reader backend: pyscard's PC/SC calls to pcscd, off the event loop.

Waits for cards with SCardGetStatusChange in a worker thread (SCardCancel stops it), and rebuilds
the PC/SC context with backoff when pcscd or the reader goes away.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

from smartcard import scard

from edge.drivers.base import Check, DeviceGone
from edge.drivers.nfc_tap import (
    CardGone,
    CardIOError,
    CardPresented,
    CardRejected,
    CardRemovedEarly,
    NfcEvent,
    ReaderBack,
    ReaderLost,
    SunVerifier,
    read_tap,
)
from edge.drivers.ntag424 import RejectReason

__all__ = ["PcscReader", "ReaderUnavailable"]

log = logging.getLogger(__name__)
T = TypeVar("T")

SCARD_E_CANCELLED = 0x80100002
SCARD_E_TIMEOUT = 0x8010000A
# The card left: no card, removed/reset/unpowered, transaction aborted by removal.
CARD_GONE = frozenset({0x8010000C, 0x80100016, 0x80100067, 0x80100068, 0x80100069})
SCARD_W_UNRESPONSIVE_CARD = 0x80100066
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 5.0
CANCEL_GRACE_S = 3.0


class ReaderUnavailable(DeviceGone):
    """pcscd or the reader is not usable (hresult is the PC/SC code, 0 when none applies)."""

    def __init__(self, what: str, hresult: int = 0) -> None:
        text = f"{what}: {_describe(hresult)}" if hresult else what
        super().__init__(text)
        self.hresult = hresult


def _describe(hresult: int) -> str:
    message: str = scard.SCardGetErrorMessage(hresult)
    return f"{message.strip()} (0x{hresult & 0xFFFFFFFF:08X})"


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


class _PcscLink:
    """A connected card through pcscd."""

    def __init__(self, hcard: Any, protocol: int) -> None:
        self._hcard = hcard
        self._protocol = protocol

    def transmit(self, apdu: bytes) -> bytes:
        hresult, response = scard.SCardTransmit(self._hcard, self._protocol, list(apdu))
        code = _code(hresult)
        if code in CARD_GONE:
            raise CardGone(_describe(code))
        if code == SCARD_W_UNRESPONSIVE_CARD:
            raise CardIOError(_describe(code))
        if code:
            raise ReaderUnavailable("transmit failed", code)
        return bytes(response)


class PcscReader:
    """An NFC reader behind pcscd. Reusable, not reentrant: `async with reader: ...`.

    `reader_name` selects the first reader whose name contains it (default: the first reader).
    The context is created lazily, so a kiosk that boots before pcscd starts still comes up.
    """

    def __init__(
        self, verifier: SunVerifier, *, reader_name: str | None = None, poll_ms: int = 2000
    ) -> None:
        self._verifier = verifier
        self._reader_name = reader_name
        self._poll_ms = poll_ms
        self._ctx: Any = None
        self._entered = False

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("PcscReader is not reentrant")
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cancel_wait()
        self._drop_context()
        self._entered = False

    # --- blocking helpers (run in worker threads) -------------------------------------------

    def _cancel_wait(self) -> None:
        if self._ctx is not None:
            scard.SCardCancel(self._ctx)

    def _drop_context(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            scard.SCardReleaseContext(ctx)  # fails harmlessly when pcscd is already gone

    def _find_reader(self, ctx: Any) -> str:
        hresult, readers = scard.SCardListReaders(ctx, [])
        if _code(hresult) and _code(hresult) != 0x8010002E:  # E_NO_READERS_AVAILABLE: see below
            raise ReaderUnavailable("cannot list readers", _code(hresult))
        for name in readers or []:
            if self._reader_name is None or self._reader_name in name:
                return str(name)
        wanted = f" matching {self._reader_name!r}" if self._reader_name else ""
        raise ReaderUnavailable(f"no NFC reader{wanted} connected")

    def _connect(self) -> str:
        if self._ctx is None:
            hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if _code(hresult):
                raise ReaderUnavailable("pcscd unreachable", _code(hresult))
            self._ctx = ctx
        return self._find_reader(self._ctx)

    def _wait_change(self, reader: str, state: int) -> int | None:
        """The reader's new state; the old one on timeout; None when cancelled."""
        hresult, states = scard.SCardGetStatusChange(self._ctx, self._poll_ms, [(reader, state)])
        code = _code(hresult)
        if code == SCARD_E_TIMEOUT:
            return state
        if code == SCARD_E_CANCELLED:
            return None
        if code:
            raise ReaderUnavailable("waiting for a card failed", code)
        event: int = states[0][1]
        if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
            raise ReaderUnavailable(f"reader {reader!r} went away")
        return event

    def _read(self, ctx: Any, reader: str) -> NfcEvent:
        hresult, hcard, protocol = scard.SCardConnect(
            ctx, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        code = _code(hresult)
        if code in CARD_GONE:
            return CardRemovedEarly()
        if code == SCARD_W_UNRESPONSIVE_CARD:
            return CardRejected(RejectReason.UNREADABLE, _describe(code))
        if code:
            raise ReaderUnavailable("connecting to the card failed", code)
        try:
            return read_tap(_PcscLink(hcard, protocol), self._verifier)
        finally:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)

    # --- async side --------------------------------------------------------------------------

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run a blocking PC/SC call in a thread; on cancellation unblock it with SCardCancel."""
        fut = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            self._cancel_wait()
            await asyncio.wait([fut], timeout=CANCEL_GRACE_S)
            raise

    async def _watch(self, reader: str) -> AsyncIterator[NfcEvent]:
        """Events of one reader until it or pcscd goes away (then ReaderUnavailable)."""
        state = scard.SCARD_STATE_UNAWARE
        read_at: int | None = None  # pcsc-lite's card event counter (high 16 bits) when last read
        while True:
            new = await self._call(partial(self._wait_change, reader, state))
            if new is None:
                return
            state = new
            present = bool(state & scard.SCARD_STATE_PRESENT) and not (
                state & scard.SCARD_STATE_MUTE
            )
            counter = state >> 16
            if present and counter != read_at:
                read_at = counter
                yield await self._call(partial(self._read, self._ctx, reader))

    async def events(self) -> AsyncIterator[NfcEvent]:
        lost = False
        delay = BACKOFF_MIN_S
        try:
            while True:
                try:
                    reader = await self._call(self._connect)
                    if lost:
                        log.info("NFC reader back: %s", reader)
                        lost = False
                        yield ReaderBack(reader)
                    delay = BACKOFF_MIN_S
                    async for event in self._watch(reader):
                        yield event
                    return  # cancelled by SCardCancel: the reader is closing
                except ReaderUnavailable as e:
                    self._drop_context()
                    if not lost:
                        log.warning("NFC reader lost (%s); retrying with backoff", e)
                        lost = True
                        yield ReaderLost(str(e))
                    else:
                        log.debug("NFC reader still unavailable (%s); next try in %.1fs", e, delay)
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, BACKOFF_MAX_S)
        finally:
            self._drop_context()

    async def self_test(self) -> list[Check]:
        return await asyncio.to_thread(self._self_test)

    def _self_test(self) -> list[Check]:
        hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _code(hresult):
            return [
                Check(
                    "pcscd",
                    False,
                    f"cannot reach pcscd: {_describe(_code(hresult))}",
                    fix="run `systemctl enable --now pcscd.socket`; see `journalctl -u pcscd`",
                ),
                Check("nfc reader", False, "not checked: pcscd unreachable", fix="fix pcscd first"),
            ]
        checks = [Check("pcscd", True, "pcscd answers")]
        try:
            try:
                reader = self._find_reader(ctx)
            except ReaderUnavailable as e:
                fix = (
                    "plug the reader in and check `pcsc_scan` lists it; for an ACR122U unload "
                    "the kernel NFC driver (`modprobe -r pn533_usb`, then blacklist it)"
                )
                return [*checks, Check("nfc reader", False, str(e), fix=fix)]
            checks.append(Check("nfc reader", True, f"found {reader!r}"))
            hresult, states = scard.SCardGetStatusChange(
                ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            if _code(hresult) or not states[0][1] & scard.SCARD_STATE_PRESENT:
                detail = "no card on the reader: tap a card and run the self-test again to read it"
                return [*checks, Check("nfc card read", True, detail)]
            event = self._read(ctx, reader)
            if isinstance(event, CardPresented):
                checks.append(Check("nfc card read", True, f"read a {event.token.kind.value} card"))
            else:
                fix = (
                    "hold the card still on the reader; a rejected NTAG 424 means this site's "
                    "keys do not match the card (check the provisioning)"
                )
                checks.append(Check("nfc card read", False, f"{type(event).__name__}", fix=fix))
            return checks
        except ReaderUnavailable as e:
            return [*checks, Check("nfc card read", False, str(e), fix="check the reader's USB")]
        finally:
            scard.SCardReleaseContext(ctx)
