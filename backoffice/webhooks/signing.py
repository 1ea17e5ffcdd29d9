"""Webhook signatures: HMAC-SHA256 with the subscription's secret over `<timestamp>.<body>`,
sent as `Kiosk-Signature: t=<unix seconds>,v1=<hex>`. A receiver recomputes it and refuses a
timestamp older than its tolerance (a replayed delivery)."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Kiosk-Signature"
TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, now: float, tolerance_s: int = TOLERANCE_S
) -> bool:
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(
        sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}"
    )
