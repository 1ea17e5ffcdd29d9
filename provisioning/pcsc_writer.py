"""Cards on a PC/SC writer, one after another: wait for a card, hand over a link, wait for its
removal. Blocking; for `kiosk cards issue --kind ntag424`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from edge.drivers.nfc_tap import CardLink
from provisioning.errors import ProvisionError

__all__ = ["writer_cards"]


@contextmanager
def _context() -> Iterator[object]:
    from smartcard import scard

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult:
        raise ProvisionError("pcscd unreachable: systemctl start pcscd.socket")
    try:
        yield ctx
    finally:
        scard.SCardReleaseContext(ctx)


def _reader(ctx: object, name: str | None) -> str:
    from smartcard import scard

    _, readers = scard.SCardListReaders(ctx, [])
    for reader in readers or []:
        if name is None or name in reader:
            return str(reader)
    raise ProvisionError(f"no PC/SC reader{f' matching {name!r}' if name else ''} connected")


def _wait(ctx: object, reader: str, want_present: bool, timeout_s: float) -> None:
    from smartcard import scard

    deadline = time.monotonic() + timeout_s
    state = scard.SCARD_STATE_UNAWARE
    while time.monotonic() < deadline:
        hresult, states = scard.SCardGetStatusChange(ctx, 500, [(reader, state)])
        if hresult == 0:
            state = states[0][1]
        present = bool(state & scard.SCARD_STATE_PRESENT)
        if hresult == 0 and present == want_present:
            return
    what = "put a blank card on" if want_present else "take the card off"
    raise ProvisionError(f"timed out: {what} the writer {reader!r}")


def writer_cards(
    reader_name: str | None, count: int, *, timeout_s: float = 60.0
) -> Iterator[CardLink]:
    """Yield a link to each of `count` cards placed on the writer in turn."""
    from smartcard import scard

    from edge.drivers.nfc_pcsc import _PcscLink

    with _context() as ctx:
        reader = _reader(ctx, reader_name)
        for _ in range(count):
            _wait(ctx, reader, True, timeout_s)
            hresult, hcard, protocol = scard.SCardConnect(
                ctx,
                reader,
                scard.SCARD_SHARE_EXCLUSIVE,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if hresult:
                raise ProvisionError(f"cannot connect to the card on {reader!r}")
            try:
                yield _PcscLink(hcard, protocol)
            finally:
                scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
            _wait(ctx, reader, False, timeout_s)
