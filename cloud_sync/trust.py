"""Trust per device: which of a kiosk's uploaded ops the cloud applies and which it holds for an
operator's review (a quarantined or revoked kiosk, or an op beyond its role's authority,
`edge.ledger.chain.authority_refusal`), and the operator's moves on a device."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloud_sync.settings import TrustPolicy
from cloud_sync.store import CloudStore, Device
from edge.ledger import chain
from edge.ledger import records as rec
from edge.ledger.op import Kind, Op
from edge.ledger.purse import purse_unit

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass(slots=True)
class Screened:
    """A batch split: ops to apply now, ops to hold for review (and why), cash credited."""

    accept: list[Op] = field(default_factory=list)
    held: list[Op] = field(default_factory=list)
    reason: str = ""
    credited: int = 0


def screen(
    store: CloudStore, dev: Device, ops: Sequence[Op], policy: TrustPolicy, now_ms: int
) -> Screened:
    """Split a kiosk's batch. Ops the cloud already stores pass (the chain rules judge them);
    new ops are taken in seq order from the stored head: the first one beyond the kiosk's
    authority, and every op after it, are held. Ops beyond a gap are left for the kiosk to
    resend (it does, from the ack), so that nothing reaches the chain unscreened."""
    out = Screened()
    stored = store.head(dev.device)[0]
    out.accept = [o for o in ops if o.seq <= stored]
    fresh = sorted({o.seq: o for o in ops if o.seq > stored}.values(), key=lambda o: o.seq)
    if dev.trust != "ok":
        out.held, out.reason = fresh, f"device {dev.trust}: {dev.trust_reason}"
        return out
    authority = policy.authority(dev.role)
    today = now_ms // DAY_MS
    credited = dev.credit_today if dev.credit_day == today else 0
    states = store.purse_many(sorted({(o.account, o.purse) for o in fresh}))
    rights = {key: state.rights(dev.device) for key, state in states.items()}
    taps: dict[str, chain.TapContext] = {}
    # A tap's ops lie within 8 seqs: the stored ones a tap of this batch may continue.
    last_stored = store.ops(dev.device, max(0, stored - 8), limit=8) if fresh else []
    expected = stored + 1
    for i, op in enumerate(fresh):
        if op.seq != expected:
            break  # a gap: resent later from the ack
        expected += 1
        key = (op.account, op.purse)
        tap = taps.get(op.ref)
        if tap is None:
            tap = taps[op.ref] = _tap_before(last_stored, op)
        why = chain.authority_refusal(
            op,
            authority,
            tap=tap,
            rights_before=rights[key],
            credited_today=credited,
            now_ms=now_ms,
            counter_before=_counter_before(store, op),
        )
        if why is not None:
            out.held, out.reason = fresh[i:], f"#{op.seq} {op.kind.name.lower()}: {why}"
            break
        out.accept.append(op)
        chain.tap_context_add(tap, op)
        for replica, total, amount in chain.moves(op):
            if replica == dev.device:
                sign = 1 if total in ("inc", "xin") else -1
                rights[key] = rights.get(key, 0) + sign * amount
        if (
            op.kind is Kind.INC
            and purse_unit(op.purse) == "cash"
            and op.amount > tap.vouchers_spent
        ):
            credited += op.amount
            out.credited += op.amount
    return out


def _counter_before(store: CloudStore, op: Op) -> int:
    if op.kind is not Kind.SET or op.purse != rec.SUN_COUNTER:
        return 0
    known = store.register(op.account, op.purse)
    return known.version if known is not None else 0


def _tap_before(last_stored: Sequence[Op], op: Op) -> chain.TapContext:
    """What the stored ops of the same tap (written just before, in one transaction) spent;
    a tap whose earlier ops are in the same batch meets them first, and never gets here."""
    tap = chain.TapContext()
    if op.ref:
        for prior in last_stored:
            if prior.seq < op.seq and prior.ref == op.ref:
                chain.tap_context_add(tap, prior)
    return tap


def quarantine(store: CloudStore, device: str, reason: str) -> None:
    """Hold the device's later ops for review (the broker still lets it connect)."""
    store.set_trust(device, "quarantined", reason)
    log.error("device %s quarantined: %s", device, reason)


def revoke(store: CloudStore, device: str, reason: str) -> None:
    """Hold the device's later ops for good; the broker refuses its certificate (CRL)."""
    store.set_trust(device, "revoked", reason)
    log.error("device %s revoked: %s", device, reason)


def release(store: CloudStore, device: str, now_ms: int) -> dict[str, int]:
    """An operator reviewed the held ops: apply them (a revoked device stays revoked). The
    cash they credit counts toward the kiosk's day."""
    dev = store.device(device)
    if dev is not None and dev.trust == "quarantined":
        store.set_trust(device, "ok", "")
    ops = store.take_held(device)
    counts = store.ingest(ops) if ops else {"applied": 0, "duplicate": 0, "pending": 0}
    credited = sum(o.amount for o in ops if o.kind is Kind.INC and purse_unit(o.purse) == "cash")
    if credited:
        store.add_credit(device, now_ms // DAY_MS, credited)
    log.warning("device %s released: %d held ops, %s", device, len(ops), counts)
    return counts
