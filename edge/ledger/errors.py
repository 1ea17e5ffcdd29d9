"""The ledger's error tree: one root, specific subclasses carrying the facts a field tech needs."""

from __future__ import annotations

import enum
import shutil
import sqlite3
from pathlib import Path

# Below this much free space an I/O error of SQLite is reported as a full disk: SQLite itself
# often says only "disk I/O error" when it cannot grow its shared-memory file.
LOW_DISK_BYTES = 1 << 20


class LedgerError(Exception):
    """Root of every error raised by the ledger."""


class SchemaTooNew(LedgerError):
    """The database was written by a newer kiosk-edge than this one; refuse rather than guess."""

    def __init__(self, path: str, unknown: list[str]) -> None:
        super().__init__(
            f"{path}: schema has migrations this version does not know ({', '.join(unknown)}); "
            "upgrade kiosk-edge before opening this ledger"
        )
        self.path = path
        self.unknown = unknown


class DatabaseCorrupt(LedgerError):
    """The file is damaged (power cut, failing SD card) or is not a database at all."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"the ledger file {path} is damaged or is not a ledger (integrity check failed:"
            f" {detail}); move it aside and start the kiosk again: an enrolled kiosk fetches its"
            " own ops back from the cloud"
        )
        self.path = path
        self.detail = detail


class NotALedger(LedgerError):
    """A readable SQLite file (or an empty one) that holds no kiosk ledger."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is not a kiosk ledger (no ledger schema in it); give the path of a ledger"
            " file, e.g. /var/lib/kiosk/ledger.db"
        )
        self.path = path


class DiskFull(LedgerError):
    """The disk holding the ledger is full: nothing can be written until space is freed."""

    def __init__(self, path: str, free: int) -> None:
        super().__init__(
            f"disk full: cannot write the ledger {path} ({free} bytes free); free space on that"
            " disk (df -h) and start again"
        )
        self.path = path
        self.free = free


class LedgerUnavailable(LedgerError):
    """The ledger file cannot be opened: no permission, a read-only disk, a folder, I/O errors."""


def sqlite_fault(path: str, exc: sqlite3.Error) -> LedgerError:
    """What an SQLite error met while opening or writing the ledger at `path` means, as the
    ledger error that names the fault and its fix."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return DatabaseCorrupt(path, str(exc))
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        try:
            free = shutil.disk_usage(Path(path).resolve().parent).free
        except OSError:
            free = -1
        if name.startswith("SQLITE_FULL") or 0 <= free < LOW_DISK_BYTES:
            return DiskFull(path, max(free, 0))
        return LedgerUnavailable(
            f"cannot read or write the ledger {path} ({exc}); the disk may be failing: check"
            " `dmesg` and replace the SD card if it reports errors"
        )
    return LedgerUnavailable(
        f"cannot open the ledger {path} ({exc}); check that the path is a ledger file and that"
        " this user may read and write it and its folder"
    )


class KeyFileError(LedgerError):
    """A key file is missing, unreadable, malformed or readable by others."""


class Refusal(enum.StrEnum):
    """Why the ledger refused a local debit or transfer (shown to people, so plain words)."""

    INSUFFICIENT_RIGHTS = "not enough balance held at this kiosk"
    RISK_PER_TAP = "above the offline limit per tap"
    RISK_TOTAL = "offline limit of this kiosk used up"
    XFER_NOT_VIA_CLOUD = "transfers go only between the cloud and a kiosk"
    BAD_AMOUNT = "amount must be a positive whole number of minor units"
    NOT_ALLOWED = "this replica may not write that"
    CHAIN_BEHIND = "this kiosk is restoring its ledger from the cloud"


class SpendRefused(LedgerError):
    """A dec or xfer would spend rights this replica does not hold (and no allowance covers it)."""

    def __init__(self, reason: Refusal, account: str, purse: str, amount: int, rights: int) -> None:
        super().__init__(
            f"{reason.value}: {purse} of {account} needs {amount}, this replica holds {rights}"
        )
        self.reason = reason
        self.account = account
        self.purse = purse
        self.amount = amount
        self.rights = rights


class OpRefused(LedgerError):
    """A remote op was not applied: bad signature, broken link, conflicting history, unknown key."""

    def __init__(self, replica: str, seq: int, why: str) -> None:
        super().__init__(f"op {replica}#{seq} refused: {why}")
        self.replica = replica
        self.seq = seq
        self.why = why


class LedgerTampered(LedgerError):
    """Verification found a chain that does not hold; names where, never repairs."""

    def __init__(self, replica: str, seq: int, what: str) -> None:
        super().__init__(f"ledger tampered at {replica}#{seq}: {what}")
        self.replica = replica
        self.seq = seq
        self.what = what
