"""Asking a running kiosk for service mode from its console: `kiosk provision service` leaves a
request file in the state folder; the daemon takes it within a second and opens service mode
for the time asked (bounded), audited in the ledger like a tech card's."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge.ledger.keys import write_owner_only

log = logging.getLogger(__name__)

REQUEST_FILE = "service.request"
MAX_MINUTES = 120


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    minutes: int
    by: str


def request_service(state_dir: Path, minutes: int, by: str) -> Path:
    if not 1 <= minutes <= MAX_MINUTES:
        raise ValueError(f"service mode is 1 to {MAX_MINUTES} minutes")
    path = state_dir / REQUEST_FILE
    write_owner_only(path, json.dumps({"minutes": minutes, "by": by}).encode())
    return path


def take_request(state_dir: Path) -> ServiceRequest | None:
    """The pending request, removed as it is taken; a malformed one is dropped and logged."""
    path = state_dir / REQUEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    try:
        doc = json.loads(raw)
        minutes, by = int(doc["minutes"]), str(doc["by"])[:64]
    except (ValueError, KeyError, TypeError):
        log.warning("service request file unreadable; ignored")
        return None
    if not 1 <= minutes <= MAX_MINUTES:
        log.warning("service request for %d minutes refused (1 to %d)", minutes, MAX_MINUTES)
        return None
    return ServiceRequest(minutes, by)
