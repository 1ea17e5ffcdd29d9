"""What a member sees and hears: an Outcome becomes a gate pulse, a screen and a beep."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from edge.config import KioskConfig
from edge.drivers.display import Display
from edge.drivers.gpio import GpioBoard
from edge.feedback.catalog import Lang, tr, tr_notice, tr_reason
from edge.feedback.screens import (
    AlarmScreen,
    ApprovedScreen,
    BalanceScreen,
    DeniedScreen,
    IdleScreen,
    OutOfServiceScreen,
    PinScreen,
    Screen,
    ServiceScreen,
    Status,
    TopUpScreen,
)
from edge.taps.pipeline import Outcome
from edge.taps.rules import Decision, Lookup

log = logging.getLogger(__name__)


def money(amount: int, currency: str = "") -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}{currency}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def amount_text(purse: str, amount: int, currency: str = "", lang: Lang = "en") -> str:
    if purse == "cash":
        return money(amount, currency)
    if purse.startswith("visits:"):
        return tr("1 visit", lang) if amount == 1 else tr("{n} visits", lang, n=amount)
    if purse == "points":
        return tr("{n} pts", lang, n=amount)
    return str(amount)


def language(cfg: KioskConfig) -> Lang:
    return cfg.display.language if cfg.display is not None else "en"


def day_text(ms: int, cfg: KioskConfig) -> str:
    """A date as month-day in the site's time zone: short enough for a 128 px line."""
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(cfg.kiosk.timezone)).strftime("%m-%d")


def lookup_lines(found: Lookup, cfg: KioskConfig) -> tuple[str, str, str]:
    """Balances; a pass, else visits, else the points reminder; the last movements."""
    lang, cur = language(cfg), cfg.kiosk.currency
    first = f"{money(found.cash, cur)}  {amount_text('points', found.points, cur, lang)}"
    held = [tr("Pass to {date}", lang, date=day_text(p.valid_until_ms, cfg)) for p in found.passes]
    for product, n in found.visits:
        held.append(f"{product} {amount_text('visits:' + product, n, cur, lang)}")
    if not held and found.points_lapsing:
        points, at = found.points_lapsing
        held.append(tr("{points} pts lapse {date}", lang, points=points, date=day_text(at, cfg)))
    moves = [
        ("+" if m.amount > 0 else "-") + amount_text(m.purse, abs(m.amount), "", lang)
        for m in found.movements
    ]
    last = " ".join(moves) or tr("No movements yet", lang)
    return first, held[0] if held else "", last  # one item: a 128 px line holds no more


def screen_for(outcome: Outcome, cfg: KioskConfig) -> Screen:
    """The screen an outcome shows, in the kiosk's language."""
    lang = language(cfg)
    d = outcome.decision
    cur = cfg.kiosk.currency
    if outcome.lookup_armed:
        return IdleScreen(lang=lang, prompt=tr("Tap card to see balance", lang))
    if outcome.lookup is not None:
        return BalanceScreen(outcome.lookup.name, lookup_lines(outcome.lookup, cfg), lang)
    if d.needs_pin:
        return PinScreen(digits=0, lang=lang)
    if not d.approved:
        reason = d.reason
        text = tr_reason(reason, lang) if reason else ""
        detail = ""
        if d.wanted is not None and d.wanted.purse in d.remaining:
            p = d.wanted.purse
            detail = tr(
                "Balance {balance}\nPrice {price}",
                lang,
                balance=amount_text(p, d.remaining[p], cur, lang),
                price=amount_text(p, d.wanted.amount, cur, lang),
            )
        return DeniedScreen(text, lang=lang, detail=detail)
    if outcome.topup_open:
        return TopUpScreen(money(outcome.topup_total, cur), lang=lang)
    if outcome.topup_total:
        left = money(d.remaining.get("cash", 0), cur)
        return TopUpScreen(money(outcome.topup_total, cur), lang=lang, done=True, balance=left)
    own = [m for m in d.debits if not m.account]
    if d.debits and not own:  # a coupon or voucher, not a member's purse
        return ApprovedScreen(tr("Code accepted", lang), tr("Welcome", lang), "-", lang=lang)
    name = d.member_name or tr("Member", lang)
    note = _note(d, cfg)
    return ApprovedScreen(name, _taken(d, cur, lang), _left(d, cur, lang), lang, note)


def _taken(d: Decision, currency: str, lang: Lang) -> str:
    own = [m for m in d.debits if not m.account]
    if not own:
        return tr("Pass OK", lang)
    return " + ".join(f"-{amount_text(m.purse, m.amount, currency, lang)}" for m in own)


def _left(d: Decision, currency: str, lang: Lang) -> str:
    purses = [m.purse for m in d.debits if not m.account] or ["cash"]
    parts = [amount_text(p, d.remaining[p], currency, lang) for p in purses if p in d.remaining]
    return ", ".join(parts) or "-"


def _note(d: Decision, cfg: KioskConfig) -> str:
    """One short line: the first notice that applies (a 128 px line holds one): low balance,
    expiries, points about to lapse, the next tier, else the tier the tap moved up to."""
    lang = language(cfg)
    notes = [tr_notice(n, lang) for n in d.notices if n.name != "NEAR_NEXT_TIER"]
    if d.points_lapsing:
        points, at = d.points_lapsing
        notes.append(tr("{points} pts lapse {date}", lang, points=points, date=day_text(at, cfg)))
    if d.to_next_tier:
        tier, points = d.to_next_tier
        notes.append(tr("{points} pts to {tier}", lang, points=points, tier=tier))
    if d.upgraded_from:
        notes.append(tr("Now {tier}", lang, tier=d.tier))
    return notes[0] if notes else ""


class GateAndScreen:
    """The Feedback of the pipeline over the GPIO board and the display (either may be absent)."""

    def __init__(
        self,
        cfg: KioskConfig,
        gpio: GpioBoard | None,
        display: Display | None,
        *,
        online: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self.gpio = gpio
        self.display = display
        self.online = online
        self._background: set[asyncio.Task[None]] = set()
        self._signal: asyncio.Task[None] | None = None
        self.observers: list[Callable[[Outcome], None]] = []  # e.g. the demo's printout
        # screen names, newest last (service screen, tests); bounded like every runtime record
        self.shown: deque[str] = deque(maxlen=64)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def open_gate(self) -> None:
        if self.gpio is None:
            return
        self._spawn(self.gpio.pulse_gate(), "gate-pulse")
        await asyncio.sleep(0)  # let the pulse task energise the relay before we go on

    async def show(self, outcome: Outcome) -> None:
        await self.render(screen_for(outcome, self.cfg))
        for observe in self.observers:
            observe(outcome)
        if self.gpio is not None and not outcome.decision.needs_pin:
            pattern: Literal["approve", "deny"] = "approve" if outcome.decision.approved else "deny"
            # The newest outcome's beep replaces one still sounding: beeps never queue up.
            if self._signal is not None and not self._signal.done():
                self._signal.cancel()
            self._signal = self._spawn(self.gpio.signal(pattern), "signal")

    async def pin_progress(self, digits: int) -> None:
        lang = language(self.cfg)
        await self.render(PinScreen(digits=digits, lang=lang))

    async def idle(self) -> None:
        lang = language(self.cfg)
        await self.render(IdleScreen(lang=lang))

    async def service(self, lines: list[str]) -> None:
        await self.render(ServiceScreen(lines=tuple(lines), lang=language(self.cfg)))

    async def out_of_service(self, reason: str = "") -> None:
        await self.render(OutOfServiceScreen(reason=reason, lang=language(self.cfg)))

    async def door_alarm(self) -> None:
        """The door is held open past its limit: alarm screen, red LED and error beeps."""
        await self.render(AlarmScreen(lang=language(self.cfg)))
        if self.gpio is not None:
            if self._signal is not None and not self._signal.done():
                self._signal.cancel()
            self._signal = self._spawn(self.gpio.signal("error"), "alarm")

    async def render(self, screen: Screen) -> None:
        self.shown.append(type(screen).__name__)
        if self.display is None:
            return
        await self.display.show(screen.render(self.status()))

    def status(self) -> Status:
        """The status bar now: link state, and the clock in the site's time zone."""
        now = datetime.now(ZoneInfo(self.cfg.kiosk.timezone))
        return Status(online=self.online(), now=now, lang=language(self.cfg))

    async def settle(self) -> None:
        """Wait for pulses and beeps in flight (shutdown, tests)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
