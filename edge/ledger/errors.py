"""The ledger's error tree: one root, specific subclasses carrying the facts a field tech needs."""

from __future__ import annotations

import enum


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
    """SQLite's own integrity check failed: the file is damaged (power cut, failing SD card)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"{path}: SQLite integrity check failed: {detail}; restore the ledger from the cloud"
        )
        self.path = path
        self.detail = detail


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
