"""The signed, hash-chained op log in SQLite, bounded-counter purses, and verification."""

from edge.ledger.errors import (
    DatabaseCorrupt,
    KeyFileError,
    LedgerError,
    LedgerTampered,
    OpRefused,
    Refusal,
    SchemaTooNew,
    SpendRefused,
)
from edge.ledger.keys import generate_key, load_private_key, public_bytes, save_private_key
from edge.ledger.op import Intent, Kind, Op
from edge.ledger.purse import STRICT, PurseState, RiskLimit, RiskPolicy, Share
from edge.ledger.store import Clock, Ledger, Register
from edge.ledger.verify import VerifyReport, verify

__all__ = [
    "STRICT",
    "Clock",
    "DatabaseCorrupt",
    "Intent",
    "KeyFileError",
    "Kind",
    "Ledger",
    "LedgerError",
    "LedgerTampered",
    "Op",
    "OpRefused",
    "PurseState",
    "Refusal",
    "Register",
    "RiskLimit",
    "RiskPolicy",
    "SchemaTooNew",
    "Share",
    "SpendRefused",
    "VerifyReport",
    "generate_key",
    "load_private_key",
    "public_bytes",
    "save_private_key",
    "verify",
]
