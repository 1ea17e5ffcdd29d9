"""The provisioning error tree: one root, messages a field tech can act on."""

from __future__ import annotations

from edge.errors import KioskError


class ProvisionError(KioskError):
    """Root of every error raised by the field-tech tools."""


class BundleRejected(ProvisionError):
    """An enrollment bundle was refused; `why` names the check (signature, expired, used, ...)."""

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(f"enrollment bundle refused ({why}): {detail}")
        self.why = why
        self.detail = detail


class AlreadyEnrolled(ProvisionError):
    """The device is enrolled already; re-enrolling needs --reenroll."""


class EnrollRefused(ProvisionError):
    """Online enrollment was refused by the cloud, or its answer failed a check on the device."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"enrollment refused: {reason}")
        self.reason = reason
