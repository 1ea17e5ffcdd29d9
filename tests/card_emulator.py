"""A contactless card on vpcd's TCP socket: pcscd sees it in "Virtual PCD 00 00" while connected.

Wire protocol: 2-byte big-endian length + payload; 1-byte payloads are control (0 off, 1 on,
2 reset, 4 get ATR); longer ones are command APDUs answered by the card model.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from edge.drivers.nfc_cards import Ntag424Tag, PlainTag, SimCard
from edge.drivers.ntag424 import SiteKeys

__all__ = ["VPCD_PORT", "Ntag424Tag", "PlainTag", "VpcdCard", "ntag424", "plain_tag"]

VPCD_PORT = 35963
# ATR a PC/SC contactless reader builds for an ISO 14443-4 card without historical bytes.
ATR = bytes.fromhex("3B8180018080")
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4


def plain_tag(uid_hex: str = "04A1B2C3D4E5F6") -> PlainTag:
    return PlainTag(bytes.fromhex(uid_hex))


def ntag424(keys: SiteKeys, uid_hex: str = "04958CAA5C5E80", read_ctr: int = 0) -> Ntag424Tag:
    """An NTAG 424 DNA provisioned for `keys` (distinct AN10922-diversified meta and file keys)."""
    return Ntag424Tag.for_site(bytes.fromhex(uid_hex), keys, read_ctr=read_ctr)


class VpcdCard:
    """Puts `card` in vpcd's field while inserted. `pull_when(apdu)` True: leave mid-command."""

    def __init__(
        self,
        card: SimCard,
        *,
        port: int = VPCD_PORT,
        pull_when: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.card = card
        self.port = port
        self.pull_when = pull_when
        self.apdus = 0
        self.pulled = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def insert(self, timeout: float = 10.0) -> None:
        """Connect to vpcd (= card enters the field), retrying while vpcd is not up yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self.pulled.clear()
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()

    def remove(self) -> None:
        """Disconnect (= card leaves the field)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.insert()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            # Without QUICKACK each APDU waits ~40 ms (Nagle in pcscd meets our delayed ACK).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _send(self, sock: socket.socket, payload: bytes) -> None:
        sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                (length,) = struct.unpack(">H", self._recv_exact(sock, 2))
                msg = self._recv_exact(sock, length)
                if length == 1:
                    if msg[0] in (CTRL_ON, CTRL_RESET):
                        self.card.reset()
                    elif msg[0] == CTRL_ATR:
                        self._send(sock, ATR)
                    continue
                self.apdus += 1
                if self.pull_when is not None and self.pull_when(msg):
                    self.pulled.set()
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                self._send(sock, self.card.transmit(msg))
        except (EOFError, OSError):
            return
