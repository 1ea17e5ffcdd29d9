"""The delivery worker: reads new ops from the cloud store (a cursor per chain), turns them into
events, queues one delivery per matching subscription, and POSTs due deliveries, signed, with
retries and exponential backoff. At least once: a delivery is marked delivered only after a 2xx
answer, and a crash between the POST and that mark sends it again (same event id)."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from backoffice.cloud import Cloud
from backoffice.webhooks.derive import Event, events_of
from backoffice.webhooks.events import EVENTS
from backoffice.webhooks.models import Cursor, Delivery, Subscription
from backoffice.webhooks.signing import HEADER, sign
from cloud_sync import feed
from cloud_sync.settings import WebhookSettings

log = logging.getLogger(__name__)


def emit(name: str, data: dict[str, Any], *, site: str = "", event_id: str = "") -> int:
    """Queue an event for every active subscription to it (and its venue); the count queued."""
    if name not in EVENTS:
        raise ValueError(f"unknown webhook event {name!r}: add it to backoffice.webhooks.events")
    eid = event_id or uuid.uuid4().hex
    subs = [
        s
        for s in Subscription.objects.filter(active=True)
        if name in s.events and (not s.site or not site or s.site == site)
    ]
    now = timezone.now()
    payload = {"id": eid, "event": name, "site": site, "data": data}
    Delivery.objects.bulk_create(
        Delivery(subscription=s, event_id=eid, event=name, payload=payload, next_at=now)
        for s in subs
    )
    return len(subs)


def replay(delivery: Delivery) -> Delivery:
    """Send a delivery again (a new delivery row, same event id and body)."""
    return Delivery.objects.create(
        subscription=delivery.subscription,
        event_id=delivery.event_id,
        event=delivery.event,
        payload=delivery.payload,
        next_at=timezone.now(),
    )


class Worker:
    def __init__(self, cloud: Cloud, settings: WebhookSettings) -> None:
        self.cloud = cloud
        self.s = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- events from the store ---------------------------------------------------------------

    def scan(self, limit: int = 500) -> int:
        """Turn ops stored since the last scan into queued deliveries; the count of events."""
        c = self.cloud
        with c.lock:
            start = Cursor.objects.filter(name="ops").first()
            if start is None:  # first run: start from now, not from the history
                Cursor.objects.create(name="ops", value=feed.cursor_now(c.store))
                return 0
            page = feed.ops_after(c.store, start.value, limit)
            sites = {d.device: d.site for d in c.store.devices()}
            members = {o.account for o in page.ops if ":" not in o.account}
            cash = {m: c.store.purse(m, "cash").value for m in members}
            events = events_of(
                page.ops,
                c.store.replica,
                lambda r: sites.get(r, ""),
                lambda m: cash.get(m, 0),
                self.s.low_balance,
            )
            events += self._kiosk_changes(c)
            events += self._alerts(c)
        with transaction.atomic():
            for e in events:
                emit(e.name, e.data, site=e.site, event_id=e.id)
            start.value = page.cursor
            start.save()
        return len(events)

    def _kiosk_changes(self, c: Cloud) -> list[Event]:
        row, _ = Cursor.objects.get_or_create(name="kiosks", defaults={"value": {}})
        known: dict[str, bool] = row.value
        out: list[Event] = []
        now: dict[str, bool] = {}
        for d in c.store.devices():
            now[d.device] = d.online
            if d.device in known and known[d.device] != d.online:
                name = "kiosk.online" if d.online else "kiosk.offline"
                data = {"kiosk": d.device, "last_seen_ms": d.last_seen_ms}
                out.append(Event(name, f"{d.device}:{name}:{d.last_seen_ms}", data, d.site))
        row.value = now
        row.save()
        return out

    def _alerts(self, c: Cloud) -> list[Event]:
        """Fleet alerts the reconciler's watch stored (`cloud_sync.alerts`), newer than the last
        seen; the first scan starts after the newest."""
        found = c.fleet.events(limit=500)
        newest = max((e.id for e in found), default=0)
        row, made = Cursor.objects.get_or_create(name="alerts", defaults={"value": newest})
        if made:
            return []
        out = [
            Event(
                "kiosk.alert",
                f"alert:{e.id}",
                {
                    "type": e.type,
                    "kiosk": e.device,
                    "detail": e.detail,
                    "at_ms": e.at_ms,
                    "open": e.open,
                },
            )
            for e in sorted(found, key=lambda e: e.id)
            if e.id > int(row.value)
        ]
        row.value = max(newest, int(row.value))
        row.save()
        return out

    # -- delivery ------------------------------------------------------------------------------

    def backoff(self, attempts: int) -> float:
        base = min(self.s.backoff_s * 2 ** (attempts - 1), self.s.backoff_max_s)
        return float(base * random.uniform(0.8, 1.0))  # jitter: retries of many events spread out

    def deliver_due(self, limit: int = 50) -> int:
        due = list(
            Delivery.objects.select_related("subscription")
            .filter(status=Delivery.PENDING, next_at__lte=timezone.now())
            .order_by("next_at")[:limit]
        )
        for d in due:
            self.attempt(d)
        return len(due)

    def attempt(self, d: Delivery) -> bool:
        body = json.dumps(d.payload, separators=(",", ":"), sort_keys=True).encode()
        ts = int(time.time())
        req = urllib.request.Request(  # noqa: S310 (an http(s) URLField)
            d.subscription.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "kiosk-edge-webhooks/1",
                HEADER: sign(d.subscription.secret, ts, body),
                "Kiosk-Event": d.event,
                "Kiosk-Event-Id": d.event_id,
                "Kiosk-Delivery": str(d.pk),
            },
        )
        code: int | None = None
        error = ""
        try:
            # the subscription's URL: an http(s) URLField the operator set
            with urllib.request.urlopen(req, timeout=self.s.timeout_s) as res:  # noqa: S310
                code = res.status
        except urllib.error.HTTPError as exc:
            code, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))[:300]
        d.attempts += 1
        d.last_code, d.last_error = code, error
        d.log = [*d.log, {"at": timezone.now().isoformat(), "code": code, "error": error}][-30:]
        ok = code is not None and 200 <= code < 300
        if ok:
            d.status, d.delivered = Delivery.DELIVERED, timezone.now()
        elif d.attempts >= self.s.attempts:
            d.status = Delivery.FAILED
            log.warning(
                "webhook %s to %s failed after %d attempts",
                d.event,
                d.subscription.name,
                d.attempts,
            )
        else:
            d.next_at = timezone.now() + timedelta(seconds=self.backoff(d.attempts))
        d.save()
        return ok

    # -- running -------------------------------------------------------------------------------

    def step(self) -> tuple[int, int]:
        return self.scan(), self.deliver_due()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the worker must outlive one bad round (logged with traceback)
                log.exception("webhook worker round failed")
            self._stop.wait(self.s.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
