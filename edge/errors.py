"""The kiosk app's error tree: one root, specific subclasses carrying the facts."""


class KioskError(Exception):
    """Root of every error raised by the kiosk app (drivers and ledger have their own roots)."""
