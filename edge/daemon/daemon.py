"""The kiosk daemon: one TaskGroup owns the named tasks (each driver's events, the decisions, the
display, the watchdog); systemd is told READY, STATUS and WATCHDOG; SIGTERM stops it cleanly with
the screen saying "out of service"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from edge import __version__
from edge.aio import cancel_and_wait
from edge.clock import ClockTrust, TimeBeacon, assess_clock
from edge.config import KioskConfig, OfflineMode
from edge.daemon.health import TapRecorder, TapStats, disk_free_bytes, write_textfile
from edge.daemon.sdnotify import Notifier
from edge.daemon.service_mode import take_request
from edge.drivers import gpio as gpio_events
from edge.drivers import nfc as nfc_events
from edge.drivers import wedge_events
from edge.drivers.display import Display, open_display
from edge.drivers.gpio import GpioBoard, open_gpio
from edge.drivers.nfc import NfcReader, SqliteCounterStore, SunVerifier, create_nfc_reader
from edge.drivers.ntag424 import SiteKeys
from edge.feedback.catalog import tr_reason
from edge.feedback.outputs import GateAndScreen, language
from edge.ledger import Clock, Ledger, RiskLimit, RiskPolicy, load_private_key
from edge.ledger.errors import sqlite_fault
from edge.ledger.sitekey import SiteSecrets, card_keys_of, load_site_secrets
from edge.taps.pipeline import Outcome, RightsSource, TapPipeline
from edge.taps.reasons import DenyReason
from edge.taps.rules import deny

if TYPE_CHECKING:
    from edge.drivers.wedge import WedgeReader

log = logging.getLogger(__name__)

IDLE_AFTER_S = 4.0
CLOCK_CHECK_S = 60.0
CLOCK_POLL_S = 0.5  # how soon the cloud's first time beacon is used
QUEUE_MAX = 256
HEAD_RECORD = "head.json"  # the own chain head, outside the ledger file (edge.ledger.head_record)


def is_disk_full(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def risk_policy(cfg: KioskConfig) -> RiskPolicy:
    off = cfg.offline
    if off.mode is OfflineMode.STRICT:
        return RiskPolicy()
    return RiskPolicy({"cash": RiskLimit(per_tap=off.risk_per_tap, total=off.risk_total)})


class CloudLink(RightsSource, Protocol):
    """The sync agent as the daemon sees it. The `kiosk` command (kiosk.link) makes one from
    cloud_sync and hands the daemon a factory: the daemon never imports the cloud side."""

    @property
    def queue_depth(self) -> int: ...

    @property
    def cloud_time(self) -> tuple[int, int] | None:
        """The cloud's signed wall time (ms) and this host's monotonic ms when it arrived."""
        ...

    def notify(self) -> None:
        """New ops are in the ledger's outbox: send them (never waits)."""
        ...

    def report_health(self, source: Callable[[], dict[str, object]]) -> None:
        """Send `source()` (the kiosk's own figures) with every status."""
        ...

    async def run(self) -> None: ...


LinkFactory = Callable[[Ledger], AbstractAsyncContextManager[CloudLink]]


class KioskDaemon:
    """Everything a running kiosk has. `run(stop)` returns when `stop` is set."""

    def __init__(
        self,
        cfg: KioskConfig,
        *,
        notifier: Notifier | None = None,
        rights: RightsSource | None = None,
        link: LinkFactory | None = None,
    ) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self.rights = rights
        self.open_link = link
        self.agent: CloudLink | None = None
        self.ready = asyncio.Event()
        self.ledger: Ledger | None = None
        self._fold: asyncio.Task[None] | None = None  # the ledger's log folded while idle
        self._folded_at = 0  # ledger changes at the last fold
        self.kiosk: TapPipeline | None = None
        self.feedback: GateAndScreen | None = None
        self.nfc: NfcReader | None = None
        self.wedge: WedgeReader | None = None
        self.keypad: WedgeReader | None = None
        self.gpio: GpioBoard | None = None
        self.display: Display | None = None
        self.inbox: asyncio.Queue[object] = asyncio.Queue(maxsize=QUEUE_MAX)
        self.heartbeat = time.monotonic()
        self.last_errors: list[str] = []
        self.clock = ClockTrust(False, "none", "not checked yet")
        self._last_screen = 0.0
        self._idle_shown = True
        self.stats = TapStats()
        self._tap_kind = "-"  # what the event being decided came from (for the tap's log line)
        self._parts_down: set[str] = set()  # "Reader", "Display" while lost
        self.disk_full = False  # the last ledger write failed for want of space
        self.clock_offset_ms = 0  # the cloud's time minus the system clock, when set from it

    # -- the parts -----------------------------------------------------------------------------

    def open_ledger(self) -> Ledger:
        k = self.cfg.kiosk
        k.state_dir.mkdir(parents=True, exist_ok=True)
        path = k.state_dir / "ledger.db"
        key = load_private_key(k.key_file)
        try:
            ledger = Ledger(
                path,
                replica=k.id,
                key=key,
                role="kiosk",
                risk=risk_policy(self.cfg),
                clock=Clock(wall_ms=self.wall_ms),
                head_record=k.state_dir / HEAD_RECORD,
            )
        except sqlite3.Error as exc:  # damaged, not a database, disk full: say which
            raise sqlite_fault(str(path), exc) from exc
        if k.cloud_public_key:  # pinned at enrollment: the only cloud this kiosk believes
            ledger.trust(k.cloud_replica, bytes.fromhex(k.cloud_public_key), "cloud")
        return ledger

    async def _open_drivers(self, stack: AsyncExitStack, secrets: SiteSecrets) -> None:
        cfg = self.cfg
        if cfg.nfc is not None:
            system_id = cfg.kiosk.site.encode()[:23]
            held = card_keys_of(secrets, cfg.kiosk.card_keys_file)
            keys = [SiteKeys(master=m, system_id=system_id, version=v) for v, m in held.items()]
            path = cfg.kiosk.state_dir / "sun_counters.db"
            store = stack.enter_context(SqliteCounterStore(path, secrets.counter_key))
            verifier = SunVerifier(keys, store)
            reader = create_nfc_reader(
                cfg.nfc.backend, verifier, reader_name=cfg.nfc.reader or None
            )
            self.nfc = await stack.enter_async_context(reader)
        if cfg.wedge is not None or cfg.keypad is not None:
            # python-evdev only where a wedge reader or keypad is fitted.
            from edge.drivers.wedge import open_wedge
        if cfg.wedge is not None:
            self.wedge = await stack.enter_async_context(open_wedge(cfg.wedge))
        if cfg.keypad is not None:
            self.keypad = await stack.enter_async_context(open_wedge(cfg.keypad))
        if cfg.gpio is not None:
            self.gpio = await stack.enter_async_context(open_gpio(cfg.gpio))
        if cfg.display is not None:
            self.display = await stack.enter_async_context(open_display(cfg.display))

    async def _open_sync(self, stack: AsyncExitStack, ledger: Ledger) -> None:
        if self.open_link is None or self.rights is not None:
            return
        self.agent = await stack.enter_async_context(self.open_link(ledger))
        self.agent.report_health(self.health)
        self.rights = self.agent

    def health(self) -> dict[str, object]:
        """The kiosk's own figures (the fields of cloud_sync's `Health`)."""
        p50, p95 = self.stats.percentiles()
        return {
            "version": __version__,
            "clock_trusted": self.clock.trusted,
            "clock_source": self.clock.source,
            "reader_ok": "Reader" not in self._parts_down,
            "display_ok": "Display" not in self._parts_down,
            "disk_free_bytes": disk_free_bytes(self.cfg.kiosk.state_dir),
            "taps": self.stats.taps,
            "refusals": dict(self.stats.refusals),
            "tap_p50_ms": round(p50, 3),
            "tap_p95_ms": round(p95, 3),
        }

    def diagnostics(self) -> list[str]:
        k = self.cfg.kiosk
        online = self.rights.online if self.rights else False
        queue = self.agent.queue_depth if self.agent else 0
        readers = [n for n, d in (("nfc", self.nfc), ("wedge", self.wedge)) if d is not None]
        return [
            f"{k.id} @ {k.site} ({k.role.value})",
            f"cloud: {'online' if online else 'offline'}",
            f"unsent ops: {queue}  inbox: {self.inbox.qsize()}",
            f"readers: {', '.join(readers) or 'none'}",
            f"clock: {self.clock.source if self.clock.trusted else 'NOT trusted'}",
            *(self.last_errors[-2:] or ["no errors"]),
        ]

    # -- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        secrets = load_site_secrets(self.cfg.kiosk.site_key_file)
        self.ledger = self.open_ledger()
        await self._check_clock()
        try:
            async with AsyncExitStack() as stack:
                await self._open_sync(stack, self.ledger)
                await self._open_drivers(stack, secrets)
                rights = self.rights
                online: Callable[[], bool] = (lambda: rights.online) if rights else (lambda: False)
                self.feedback = GateAndScreen(self.cfg, self.gpio, self.display, online=online)
                recorder = TapRecorder(self.feedback, self.stats, lambda: self._tap_kind)
                self.kiosk = TapPipeline(
                    self.cfg,
                    self.ledger,
                    secrets.card_ref_key,
                    recorder,
                    rights=self.rights,
                    clock_ms=self.wall_ms,
                    diagnostics=self.diagnostics,
                    clock_trusted=lambda: self.clock.trusted,
                )
                await self.feedback.idle()
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(self._pump(source), name=name)
                        for name, source in self._sources()
                    ]
                    tasks.append(tg.create_task(self._decisions(), name="decisions"))
                    tasks.append(tg.create_task(self._idle_screen(), name="display"))
                    tasks.append(tg.create_task(self._watchdog(), name="watchdog"))
                    tasks.append(tg.create_task(self._clock_watch(), name="clock"))
                    tasks.append(tg.create_task(self._service_watch(), name="service"))
                    if self.agent is not None:
                        tasks.append(tg.create_task(self.agent.run(), name="sync"))
                    if self.cfg.metrics is not None:
                        tasks.append(tg.create_task(self._metrics(), name="metrics"))
                    self.ready.set()
                    self.notifier.ready(f"serving as {self.cfg.kiosk.id}")
                    log.info("kiosk %s ready", self.cfg.kiosk.id)
                    await stop.wait()
                    # A decision in progress finishes first: ops are written whole or not at all.
                    await cancel_and_wait(tasks)
                self.notifier.stopping()
                await self.feedback.out_of_service()
                await self.feedback.settle()
        finally:
            self.ledger.close()
            log.info("kiosk %s stopped", self.cfg.kiosk.id)

    def _sources(self) -> list[tuple[str, Any]]:
        named: tuple[tuple[str, Any], ...] = (
            ("nfc", self.nfc),
            ("wedge", self.wedge),
            ("keypad", self.keypad),
            ("gpio", self.gpio),
            ("display-events", self.display),
        )
        return [(n, d) for n, d in named if d is not None]

    async def _pump(self, source: Any) -> None:
        events: AsyncIterator[object] = source.events()
        async for event in events:
            await self.inbox.put(event)

    async def _decisions(self) -> None:
        while True:
            try:
                event = await asyncio.wait_for(self.inbox.get(), timeout=1.0)
            except TimeoutError:
                self.heartbeat = time.monotonic()
                self._fold_when_idle()
                continue
            self.heartbeat = time.monotonic()
            try:
                await self.handle(event)
                self.disk_full = False
            except sqlite3.OperationalError as exc:
                if not is_disk_full(exc):
                    log.exception("event %s failed", type(event).__name__)
                    self._error(f"{type(event).__name__}: {exc}")
                else:
                    await self._on_disk_full(exc)
            except Exception as exc:  # one bad event must not stop the kiosk
                log.exception("event %s failed", type(event).__name__)
                self._error(f"{type(event).__name__}: {exc}")
            if self.agent is not None:
                self.agent.notify()  # new ops to upload: the agent sends them, we never wait

    def _fold_when_idle(self) -> None:
        """A second without events: fold the ledger's log in a thread if taps wrote since the
        last fold (never awaited here: the next tap does not wait for it)."""
        ledger = self.ledger
        if ledger is None or ledger.changes == self._folded_at:
            return
        if self._fold is not None and not self._fold.done():
            return
        self._folded_at = ledger.changes
        self._fold = asyncio.create_task(asyncio.to_thread(ledger.fold_log), name="log-fold")

    async def handle(self, event: object) -> None:
        """Route one driver event to the pipeline."""
        kiosk, feedback = self.kiosk, self.feedback
        assert kiosk is not None
        assert feedback is not None
        self._last_screen = time.monotonic()
        self._idle_shown = False
        self._tap_kind = type(event).__name__
        match event:
            case nfc_events.CardPresented(token=token):
                await kiosk.card(token)
            case wedge_events.Swiped(token=token) | wedge_events.Scanned(token=token):
                await kiosk.card(token)
            case wedge_events.QrPayload():
                await kiosk.code(event.text)
            case wedge_events.PinEntered(pin=pin):
                await kiosk.keyed(pin)
            case wedge_events.PinKeyed(length=n):
                await feedback.pin_progress(n)
            case wedge_events.PinCleared():
                await feedback.pin_progress(0)
            case nfc_events.CardRejected(reason=reason):
                log.warning("card rejected: %s", reason)
                forged = reason in (
                    nfc_events.RejectReason.BAD_MAC,
                    nfc_events.RejectReason.REPLAYED,
                )
                why = DenyReason.CARD_NOT_SECURE if forged else DenyReason.COULD_NOT_READ
                await kiosk.refuse(why, str(reason))
            case nfc_events.CardRemovedEarly():
                await kiosk.refuse(DenyReason.COULD_NOT_READ, "card removed mid-read")
            case wedge_events.CouldNotRead(reason=why):
                await kiosk.refuse(DenyReason.COULD_NOT_READ, why)
            case wedge_events.BankCardRefused():
                await kiosk.refuse(DenyReason.BANK_CARD)
            case gpio_events.CoinInserted(amount_minor=amount):
                await kiosk.coin(amount)
            case gpio_events.LookupPressed():
                await kiosk.lookup()
            case gpio_events.CoinRejected():
                log.warning("coin acceptor: %s", event)
            case gpio_events.DoorHeldOpen(open_s=seconds):
                self._error(f"door held open {seconds:.0f} s")
                if self.feedback is not None:
                    await self.feedback.door_alarm()
            case gpio_events.Passage():
                log.debug("passage")
            case _:
                # ReaderLost / ReaderBack / DisplayLost / DisplayBack: the drivers recover alone.
                log.info("%s", event)
                name = type(event).__name__
                if name.endswith("Lost"):
                    self._error(name)
                    self._parts_down.add(name.removesuffix("Lost"))
                elif name.endswith("Back"):
                    self._parts_down.discard(name.removesuffix("Back"))

    async def _on_disk_full(self, exc: sqlite3.OperationalError) -> None:
        """Nothing was written (the transaction rolled back whole): the member is told the
        kiosk is out of service and why, the fleet sees DISK_FULL refusals (an alert)."""
        self.disk_full = True
        log.error(
            "ledger write failed, disk full: %s; free space in %s", exc, self.cfg.kiosk.state_dir
        )
        self._error("disk full")
        feedback, kiosk = self.feedback, self.kiosk
        assert feedback is not None
        assert kiosk is not None
        outcome = Outcome(
            deny(DenyReason.DISK_FULL), "disk-full", started_ns=time.perf_counter_ns()
        )
        await kiosk.feedback.show(outcome)  # counted and logged as a refusal
        await feedback.out_of_service(tr_reason(DenyReason.DISK_FULL, language(self.cfg)))

    def _error(self, text: str) -> None:
        self.last_errors.append(text)
        del self.last_errors[:-10]

    async def _idle_screen(self) -> None:
        assert self.feedback is not None
        while True:
            await asyncio.sleep(0.5)
            if not self._idle_shown and time.monotonic() - self._last_screen > IDLE_AFTER_S:
                self._idle_shown = True
                if self.disk_full:
                    lang = language(self.cfg)
                    await self.feedback.out_of_service(tr_reason(DenyReason.DISK_FULL, lang))
                else:
                    await self.feedback.idle()

    def wall_ms(self) -> int:
        """This kiosk's wall time: the system clock, set by the cloud's when it was off."""
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    async def _check_clock(self) -> None:
        # timedatectl / chronyc are subprocesses: never on the tap path, never on the loop.
        beacon = None
        if self.agent is not None and self.agent.cloud_time is not None:
            wall_ms, mono_ms = self.agent.cloud_time
            beacon = TimeBeacon(wall_ms, mono_ms, self.cfg.kiosk.id)
            self._set_from_beacon(beacon)
        now = datetime.fromtimestamp(self.wall_ms() / 1000, UTC)
        trust = await asyncio.to_thread(assess_clock, self.cfg.clock, now=now, beacon=beacon)
        if trust.trusted != self.clock.trusted:
            log.warning("clock %s: %s", "trusted" if trust.trusted else "NOT trusted", trust.detail)
        self.clock = trust

    def _set_from_beacon(self, beacon: TimeBeacon) -> None:
        """A fresh signed cloud time and a clock off by more than the allowed skew (a kiosk
        whose clock is days behind): the kiosk's time is set from the cloud's (an offset, so
        no privilege is needed), for its decisions and the ops it stamps."""
        mono = time.monotonic_ns() // 1_000_000
        if (mono - beacon.received_mono_ms) / 1000 > self.cfg.clock.beacon_max_age_s:
            return
        off_ms = beacon.now_ms(mono) - self.wall_ms()
        if abs(off_ms) / 1000 <= self.cfg.clock.max_skew_s:
            return
        self.clock_offset_ms += off_ms
        log.warning(
            "clock %+.0f s off the cloud's signed time: kiosk time set from the cloud",
            off_ms / 1000,
        )

    async def _service_watch(self) -> None:
        kiosk = self.kiosk
        assert kiosk is not None
        while True:
            await asyncio.sleep(1.0)
            request = take_request(self.cfg.kiosk.state_dir)
            if request is not None and not kiosk.in_service:
                await kiosk.open_service(request.by, request.minutes)
            await kiosk.tick()

    async def _metrics(self) -> None:
        """`[metrics] textfile`: the figures for node_exporter, rewritten every interval."""
        m = self.cfg.metrics
        assert m is not None
        while True:
            status = {
                "online": int(bool(self.rights and self.rights.online)),
                "queue": self.agent.queue_depth if self.agent else 0,
            }
            try:
                await asyncio.to_thread(
                    write_textfile, m.textfile, self.cfg.kiosk.id, self.health(), status
                )
            except OSError as exc:
                log.warning("metrics textfile %s not written: %s", m.textfile, exc)
            await asyncio.sleep(m.interval_s)

    async def _clock_watch(self) -> None:
        """Every CLOCK_CHECK_S, and at once when the cloud's first signed time arrives (the
        link comes up after the check at start: passes must not wait a minute for it)."""
        beacon_seen = self.agent is not None and self.agent.cloud_time is not None
        checked = time.monotonic()
        while True:
            await asyncio.sleep(CLOCK_POLL_S)
            first_beacon = (
                not beacon_seen and self.agent is not None and self.agent.cloud_time is not None
            )
            if first_beacon or time.monotonic() - checked >= CLOCK_CHECK_S:
                beacon_seen = beacon_seen or first_beacon
                checked = time.monotonic()
                await self._check_clock()

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        while True:
            await asyncio.sleep(interval)
            # A wedged decision loop stops the pings, and systemd restarts us.
            if time.monotonic() - self.heartbeat < max(3 * interval, 5.0):
                self.notifier.watchdog()
            else:
                log.error("decision loop stalled; not feeding the watchdog")


async def serve(cfg: KioskConfig, link: LinkFactory | None = None) -> None:
    """`kiosk run`: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    daemon = KioskDaemon(cfg, link=link)
    await daemon.run(stop)


def run_cli(cfg: KioskConfig, link: LinkFactory | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cfg, link))
