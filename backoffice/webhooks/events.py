"""The events integrations can subscribe to. Adding one is one line here, then `emit(name,
data)` where it happens (e.g. the fleet's alerts: `emit("kiosk.alert", {...}, site=...)`)."""

from __future__ import annotations

EVENTS: dict[str, str] = {
    "tap.approved": "a paid tap at a kiosk (what it debited and credited)",
    "topup": "money onto a member: counter top-up, coins or a voucher at a kiosk",
    "refund": "a refund of a purchase (cash back, points taken back)",
    "card.status": "a card became lost, frozen, active, cancelled, replaced or expired",
    "balance.low": "a member's cash at or below [webhooks] low_balance after a tap",
    "kiosk.offline": "a kiosk the cloud saw online went offline",
    "kiosk.online": "an offline kiosk came back",
    "kiosk.alert": "a fleet alert the reconciler's watch raised (fork, clock, reader, disk...)",
}
