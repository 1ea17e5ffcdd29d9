"""What every driver shares: the error tree, the driver protocol, health and self-test rows."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, TypeVar, runtime_checkable

EventT_co = TypeVar("EventT_co", covariant=True)


class DriverError(Exception):
    """Root of every error raised by a driver."""


class DeviceGone(DriverError):
    """The device went away (unplugged, service stopped); the driver is recovering."""


class UnknownBackend(DriverError):
    """A config names a backend this driver does not have."""

    def __init__(self, driver: str, name: str, known: list[str]) -> None:
        super().__init__(f"{driver}: unknown backend {name!r}; choose one of {', '.join(known)}")
        self.driver = driver
        self.name = name
        self.known = known


@runtime_checkable
class Driver(Protocol[EventT_co]):
    """A device as a source of typed events. Reusable, not reentrant: `async with drv: ...`."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def events(self) -> AsyncIterator[EventT_co]: ...


class TokenKind(enum.StrEnum):
    """How a member presented themselves."""

    NFC_UID = "nfc_uid"  # plain UID: clonable, never authenticated
    NTAG424_SUN = "ntag424_sun"  # NTAG 424 DNA secure unique NFC message: authenticated
    MAGSTRIPE = "magstripe"
    BARCODE = "barcode"
    QR = "qr"


@dataclass(frozen=True, slots=True)
class Token:
    """A card or code as read. `value` is the identifier (UID hex, card number, QR payload):
    it is sensitive, so `repr` hides it; the app stores only an HMAC of it. A verified SUN read
    carries its read counter (`sun_ctr`, checked again against the counters of the whole scope)
    and the version of the card master key it verified with."""

    kind: TokenKind
    value: str
    authenticated: bool
    sun_ctr: int | None = None
    key_version: int = 0

    def __repr__(self) -> str:
        return f"Token(kind={self.kind.value}, authenticated={self.authenticated}, value=<hidden>)"


@dataclass(frozen=True, slots=True)
class Check:
    """One row of a self-test: what was checked, whether it passed, and the fix when it did not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
