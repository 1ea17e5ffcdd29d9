"""What a member sees and hears: an Outcome becomes a gate pulse, a screen and a beep."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

from edge.config import KioskConfig
from edge.drivers.display import Display
from edge.drivers.gpio import GpioBoard
from edge.feedback.screens import (
    ApprovedScreen,
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
from edge.taps.rules import Decision

log = logging.getLogger(__name__)
Lang = Literal["en", "zh"]


def money(amount: int, currency: str = "") -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}{currency}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def amount_text(purse: str, amount: int, currency: str = "") -> str:
    if purse == "cash":
        return money(amount, currency)
    if purse.startswith("visits:"):
        return f"{amount} visit" + ("s" if amount != 1 else "")
    if purse == "points":
        return f"{amount} pts"
    return str(amount)


def language(cfg: KioskConfig) -> Lang:
    return cfg.display.language if cfg.display is not None else "en"


def screen_for(outcome: Outcome, cfg: KioskConfig) -> Screen:
    """The screen an outcome shows, in the kiosk's language."""
    lang = language(cfg)
    d = outcome.decision
    cur = cfg.kiosk.currency
    if d.needs_pin:
        return PinScreen(digits=0, lang=lang)
    if not d.approved:
        reason = d.reason
        text = (reason.zh if lang == "zh" else reason.en) if reason else ""
        return DeniedScreen(text, lang=lang)
    if outcome.topup_open or outcome.topup_total:
        return TopUpScreen(money(outcome.topup_total, cur), lang=lang)
    own = [m for m in d.debits if not m.account]
    if d.debits and not own:  # a coupon or voucher, not a member's purse
        return ApprovedScreen("Code accepted", "Welcome", "-", lang=lang)
    return ApprovedScreen(d.member_name or "-", _taken(d, cur), _left(d, cur), lang, _note(d))


def _taken(d: Decision, currency: str) -> str:
    own = [m for m in d.debits if not m.account]
    if not own:
        return "Pass OK"
    return " + ".join(f"-{amount_text(m.purse, m.amount, currency)}" for m in own)


def _left(d: Decision, currency: str) -> str:
    purses = [m.purse for m in d.debits if not m.account] or ["cash"]
    parts = [amount_text(p, d.remaining[p], currency) for p in purses if p in d.remaining]
    return ", ".join(parts) or "-"


def _note(d: Decision) -> str:
    notes = [n.value[0] for n in d.notices if n.name != "NEAR_NEXT_TIER"]
    if d.to_next_tier:
        notes.append(f"{d.to_next_tier[1]} pts to {d.to_next_tier[0]}")
    return " · ".join(notes)


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
        await self.render(ServiceScreen(lines=tuple(lines)))

    async def out_of_service(self, reason: str = "") -> None:
        await self.render(OutOfServiceScreen(reason=reason))

    async def render(self, screen: Screen) -> None:
        self.shown.append(type(screen).__name__)
        if self.display is None:
            return
        status = Status(online=self.online(), now=datetime.now(UTC))
        await self.display.show(screen.render(status))

    async def settle(self) -> None:
        """Wait for pulses and beeps in flight (shutdown, tests)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
