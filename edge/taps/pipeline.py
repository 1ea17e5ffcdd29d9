"""The decision pipeline: token -> card ref -> state -> rules -> durable ops -> gate and screen.

The op is committed (fsync) before the gate opens or the screen says approved. Every decision has
a tap id; a retry of the same tap never debits twice. Denials go to the audit log with a reason.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from edge.config import KioskConfig, Role
from edge.drivers.base import Token, TokenKind
from edge.ledger import Intent, Kind, Ledger, Refusal, SpendRefused
from edge.ledger import records as rec
from edge.ledger.membership import CardStatus
from edge.taps.members import (
    intents_for,
    read_balances,
    read_card,
    read_member,
    read_movements,
)
from edge.taps.reasons import DenyReason
from edge.taps.rules import (
    Balance,
    Decision,
    Lookup,
    Member,
    Tap,
    TapState,
    balance_lookup,
    decide,
    decide_single_use,
    deny,
    topup_bonus,
)
from edge.taps.tokens import card_ref

log = logging.getLogger(__name__)

REFUSAL_REASON = {
    Refusal.INSUFFICIENT_RIGHTS: DenyReason.HELD_ELSEWHERE,
    Refusal.RISK_PER_TAP: DenyReason.RISK_LIMIT,
    Refusal.RISK_TOTAL: DenyReason.RISK_LIMIT,
    Refusal.CHAIN_BEHIND: DenyReason.LEDGER_RECOVERING,
}
PIN_TIMEOUT_S = 30.0
LAST_ENTRY = rec.LAST_ENTRY  # register of a card account: ms of its last entry at a gate
MAX_KEYED_AMOUNT = 10_000_00  # a keyed sale above this is a typing error
TOPUP_SESSION_S = 60.0
OWED_ENTRY_S = 300.0  # a paid entry whose gate never opened (a crash) is owed this long


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a tap came to, for the screen, the buzzer and the logs."""

    decision: Decision
    tap_id: str
    card_ref: str = ""
    started_ns: int = 0
    durable_ns: int = 0  # when the ops were committed (0: nothing written)
    gate_ns: int = 0  # when the gate signal was given (0: not opened)
    topup_total: int = 0
    topup_open: bool = False  # a top-up session is open: insert coins
    # Offline: the balances shown are this kiosk's best knowledge as of this cloud time (ms);
    # 0 = online, the balances are the member's true ones.
    as_of_ms: int = 0
    lookup: Lookup | None = None  # a balance lookup: what the member holds, nothing spent
    lookup_armed: bool = False  # the lookup button was pressed: the next card is looked up
    finished_ns: int = field(default_factory=time.perf_counter_ns)  # decided, about to be shown

    @property
    def latency_ns(self) -> int:
        """From the read to the gate signal (approved at a gate) or to the decision."""
        return (self.gate_ns or self.finished_ns) - self.started_ns if self.started_ns else 0


class Feedback(Protocol):
    """The physical side of an outcome. `open_gate` returns once the gate relay is energised;
    the pulse goes on by itself."""

    async def open_gate(self) -> None: ...

    async def show(self, outcome: Outcome) -> None: ...

    async def service(self, lines: list[str]) -> None: ...

    async def idle(self) -> None: ...


class RightsSource(Protocol):
    """The cloud link, when there is one: asks for rights online within a time budget."""

    @property
    def online(self) -> bool: ...

    @property
    def last_contact_ms(self) -> int: ...

    async def request_rights(self, account: str, purse: str, amount: int) -> bool:
        """Get `amount` more rights than this kiosk holds now (the shortfall of the refused
        debit); True once they are held."""
        ...

    def denied(self, card_ref: str) -> str | None:
        """The card's status on the cloud's pushed deny list (lost, frozen...), if listed."""
        ...

    def known_values(self, account: str) -> tuple[dict[str, int], int] | None:
        """The account's values as the cloud last signed them plus this kiosk's own ops since,
        and the cloud time of that snapshot; None when the cloud has sent none."""
        ...

    async def lookup(self, account: str) -> bool:
        """Fetch an account of another scope online (within the rights budget); True once this
        kiosk knows it."""
        ...


@dataclass
class _PendingPin:
    token: Token
    ref: str
    tap_id: str
    asked_at: float


@dataclass
class _TopupSession:
    member: str
    name: str
    opened_at: float
    total: int = 0  # coins and vouchers credited in this session
    coins: int = 0
    vouchers: int = 0  # of the total, what vouchers brought (their own bonus rules)
    credited: list[int] = field(default_factory=list)


class TapPipeline:
    """One kiosk's decisions. Single-threaded: the app feeds it events from one task."""

    def __init__(
        self,
        cfg: KioskConfig,
        ledger: Ledger,
        site_key: bytes,
        feedback: Feedback,
        *,
        rights: RightsSource | None = None,
        clock_ms: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        diagnostics: Callable[[], list[str]] = lambda: [],
        clock_trusted: Callable[[], bool] = lambda: True,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.site_key = site_key
        self.feedback = feedback
        self.rights = rights
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.monotonic = monotonic
        self.diagnostics = diagnostics
        self.clock_trusted = clock_trusted
        self._recent: OrderedDict[str, tuple[float, Outcome]] = OrderedDict()
        self._last_entry: OrderedDict[str, int] = OrderedDict()
        self._pin: _PendingPin | None = None
        self._topup: _TopupSession | None = None
        self._amount: int | None = None  # point of sale: keyed amount for the next tap
        self._use_points: bool | None = None  # point of sale: the member's choice, next tap
        self._lookup_until: float | None = None  # lookup button: deadline for the card
        self._service_until: float | None = None  # monotonic deadline while service mode is open
        self._counter_due: list[Intent] = []  # the SUN read counter of the tap being decided
        self._owed = self._owed_entries()  # member -> own seq of a paid entry never opened

    # -- inputs ------------------------------------------------------------------------------

    async def card(self, token: Token) -> Outcome:
        """A card was tapped, swiped or scanned."""
        started = time.perf_counter_ns()
        if (
            token.kind is TokenKind.MAGSTRIPE
            and self.cfg.rules.card_check_digit
            and not rec.check_digit_ok(token.value)
        ):
            # Numbers are issued with a Luhn digit: a neighbour's number, or a misread, names
            # no card and is refused before anything is looked up (barcodes: the decoder).
            return await self.refuse(DenyReason.UNKNOWN_CARD, "check digit wrong")
        if token.kind is TokenKind.NFC_UID and not self.cfg.rules.accept_uid_cards:
            # UID-only cards are clonable: refused at once, unless the site opts in.
            return await self.refuse(DenyReason.CARD_NOT_SECURE, "UID-only card")
        ref = card_ref(self.site_key, token)
        replayed = self._replayed(token, ref)
        if replayed is not None:
            log.warning("card refused: %s", replayed)
            return await self.refuse(DenyReason.CARD_NOT_SECURE, replayed)
        if token.sun_ctr is not None:
            # Every verified SUN read moves the card's counter in the scope, approved or not:
            # written with the tap's own ops when it has some, else on its own (`_settle`).
            self._counter_due = [
                Intent(Kind.SET, rec.card_account(ref), rec.SUN_COUNTER, token.sun_ctr, data="")
            ]
        outcome = await self._card(token, ref, started)
        self._settle()
        return outcome

    def _replayed(self, token: Token, ref: str) -> str | None:
        """Why a verified SUN read is a replay this kiosk's reader could not see: a read counter
        not above the one another kiosk of the scope read (relayed by the cloud)."""
        if token.sun_ctr is None:
            return None
        known = self.ledger.register(rec.card_account(ref), rec.SUN_COUNTER)
        if known is None or token.sun_ctr > known.version:
            return None
        return f"replayed: SUN read counter {token.sun_ctr}, {known.version} read in the scope"

    def _settle(self) -> None:
        """Write the SUN read counter of a tap that wrote nothing else (a lookup, a PIN asked)."""
        due, self._counter_due = self._counter_due, []
        if due:
            self.ledger.append(due, ref=uuid.uuid4().hex[:16])

    async def _card(self, token: Token, ref: str, started: int) -> Outcome:
        if self.cfg.kiosk.role is Role.TOPUP and self._topup is not None:
            # The closing tap ends the session, however soon it comes: never a double tap.
            return await self._close_topup(ref, started)
        armed, self._lookup_until = self._lookup_until, None
        if armed is not None and self.monotonic() <= armed:
            return await self._show_lookup(ref, started)
        repeated = self._debounced(ref)
        if repeated is not None:
            await self.feedback.show(repeated)
            return repeated
        return await self._decide(token, ref, uuid.uuid4().hex[:16], None, started)

    async def lookup(self) -> Outcome:
        """The lookup button: the next card within `[rules] lookup_seconds` shows its balances,
        passes, points and last movements, and spends nothing."""
        self._lookup_until = self.monotonic() + self.cfg.rules.lookup_seconds
        name = uuid.uuid4().hex[:16]
        outcome = Outcome(Decision(approved=True), name, lookup_armed=True)
        await self.feedback.show(outcome)
        return outcome

    async def _show_lookup(self, ref: str, started: int) -> Outcome:
        tap_id = uuid.uuid4().hex[:16]
        state = self._state(ref)
        movements = read_movements(self.ledger, state.member.id) if state.member else []
        found = balance_lookup(state, movements, self.clock_ms(), self.cfg)
        if isinstance(found, Decision):
            return await self._finish_denied(found, tap_id, ref, started)
        outcome = Outcome(Decision(approved=True, member_name=found.name), tap_id, ref, started)
        outcome = replace(outcome, lookup=found)
        await self.feedback.show(outcome)
        return outcome

    async def refuse(self, reason: DenyReason, detail: str = "") -> Outcome:
        """A read that never became a card (bad MAC, replay, half swipe, bank card): shown and
        audited, nothing else."""
        tap_id = uuid.uuid4().hex[:16]
        self.ledger.record_denial(
            ref=tap_id, account="", purse="", amount=0, reason=reason.name, detail=detail
        )
        outcome = Outcome(deny(reason), tap_id, started_ns=time.perf_counter_ns())
        await self.feedback.show(outcome)
        return outcome

    async def keyed(self, digits: str) -> Outcome | None:
        """Digits and Enter on the keypad: the PIN a tap asked for, or, at a point of sale with
        no fixed price, the amount (in minor units) for the next tap."""
        pending = self._pin
        self._pin = None
        if pending is not None and self.monotonic() - pending.asked_at <= PIN_TIMEOUT_S:
            started = time.perf_counter_ns()
            return await self._decide(pending.token, pending.ref, pending.tap_id, digits, started)
        kiosk, rules = self.cfg.kiosk, self.cfg.rules
        if kiosk.role is Role.POS and rules.redeem_points and digits == rules.points_choice_code:
            # The member's choice for the next tap: the other way round from the site's default.
            self._use_points = not rules.redeem_points_default
            log.info("points for the next tap: %s", "used" if self._use_points else "kept")
            return None
        if kiosk.role is Role.POS and kiosk.pos_amount == 0 and digits.isdigit():
            self._amount = int(digits) if 0 < int(digits) <= MAX_KEYED_AMOUNT else None
            log.info("amount keyed for the next tap: %s", self._amount)
        return None

    async def code(self, text: str) -> Outcome:
        """A QR code: `C:<id>` coupon (free entry) or `V:<id>` top-up voucher."""
        started = time.perf_counter_ns()
        tap_id = uuid.uuid4().hex[:16]
        kind, _, code_id = text.strip().partition(":")
        if kind not in ("C", "V") or not code_id or len(code_id) > 64:
            return await self._finish_denied(deny(DenyReason.UNKNOWN_CODE), tap_id, "", started)
        if kind == "C":
            account, purse, what = rec.COUPON_PREFIX + code_id, rec.COUPON_PURSE, "coupon"
        else:
            account, purse, what = rec.VOUCHER_PREFIX + code_id, rec.VOUCHER_PURSE, "voucher"
        session = self._topup
        member = None
        if what == "voucher":
            if session is None:
                reason = DenyReason.INSERT_CARD_FIRST
                return await self._finish_denied(deny(reason), tap_id, "", started)
            member = read_member(self.ledger, session.member)
        balances = self._balances(account)
        if purse not in balances and await self._looked_up(account):
            balances = self._balances(account)
        decision = decide_single_use(what, account, balances.get(purse), member, purse)
        target = member.id if member else ""
        outcome = await self._commit(decision, target, tap_id, "", started)
        if session is not None and outcome.decision.approved:
            brought = sum(m.amount for m in decision.credits)
            session.total += brought
            session.vouchers += brought
        return outcome

    async def coin(self, amount: int) -> Outcome:
        """A coin or note was counted: credit it at once, so a power cut loses nothing."""
        started = time.perf_counter_ns()
        tap_id = uuid.uuid4().hex[:16]
        session = self._topup
        if session is None or self.monotonic() - session.opened_at > TOPUP_SESSION_S:
            # Money in the box with no card: kept on the kiosk's unclaimed account for staff.
            account = f"unclaimed:{self.cfg.kiosk.id}"
            self.ledger.append([Intent(Kind.INC, account, "cash", amount)], ref=tap_id)
            log.warning("coin of %d with no top-up session: kept as unclaimed", amount)
            decision = deny(DenyReason.INSERT_CARD_FIRST)
            outcome = Outcome(decision, tap_id, started_ns=started)
            await self.feedback.show(outcome)
            return outcome
        self.ledger.append(self._credit(session.member, amount), ref=tap_id)
        durable = time.perf_counter_ns()
        session.total += amount
        session.coins += 1
        decision = self._session_decision(session)
        outcome = Outcome(
            decision,
            tap_id,
            started_ns=started,
            durable_ns=durable,
            topup_total=session.total,
            topup_open=True,
            as_of_ms=self._as_of(session.member),
        )
        await self.feedback.show(outcome)
        return outcome

    # -- the decision ------------------------------------------------------------------------

    def _debounced(self, ref: str) -> Outcome | None:
        window = self.cfg.rules.debounce_seconds
        seen = self._recent.get(ref)
        if seen is None or window <= 0 or self.monotonic() - seen[0] > window:
            return None
        return replace(
            seen[1], decision=replace(seen[1].decision, repeated=True), durable_ns=0, gate_ns=0
        )

    def _state(self, ref: str) -> TapState:
        card = read_card(self.ledger, ref)
        listed = self.rights.denied(ref) if self.rights is not None else None
        if card is not None and listed is not None:
            # The deny list arrives within a second; the status register may lag behind it.
            try:
                card = replace(card, status=CardStatus(listed))
            except ValueError:
                card = replace(card, status=CardStatus.FROZEN)  # unknown status: fail closed
        member = read_member(self.ledger, card.member) if card else None
        balances = self._balances(member.id) if member else {}
        age = 0
        if self.rights is not None:
            age = max(0, self.clock_ms() - self.rights.last_contact_ms)
        return TapState(
            card=card,
            member=member,
            balances=balances,
            # When the card last went in, here or (by its register, relayed by the cloud within
            # the scope) at any gate of the scope; survives a restart.
            last_entry_ms=max(self._last_entry.get(ref, 0), card.last_entry_ms if card else 0),
            denylist_age_ms=age,
            clock_trusted=self.clock_trusted(),
        )

    async def _decide(
        self, token: Token, ref: str, tap_id: str, pin: str | None, started: int
    ) -> Outcome:
        now = self.clock_ms()
        state = self._state(ref)
        uid_only = token.kind is TokenKind.NFC_UID
        if state.card is None and await self._looked_up(rec.card_account(ref)):
            state = self._state(ref)  # a member of another venue of the chain
        member, card = state.member, state.card
        if member and member.role == "tech" and card and card.status is CardStatus.ACTIVE:
            if self.in_service:
                await self.close_service("closed with the tech card")
            else:
                await self.open_service(f"tech card of {member.id}", self.cfg.kiosk.service_minutes)
            return Outcome(Decision(approved=True, member_name=member.name), tap_id, ref)
        if self.in_service:
            return await self._finish_denied(deny(DenyReason.OUT_OF_SERVICE), tap_id, ref, started)
        if self.ledger.recovering:
            why = deny(DenyReason.LEDGER_RECOVERING)
            return await self._finish_denied(why, tap_id, ref, started)
        owed = self._owed.pop(member.id, None) if member and card else None
        if owed is not None and member and card and card.status is CardStatus.ACTIVE:
            return await self._open_owed(member, owed, tap_id, ref, started)
        tap = Tap(
            tap_id=tap_id,
            now_ms=now,
            uid_only=uid_only,
            pin=pin,
            amount=self._amount,
            use_points=self._use_points,
        )
        decision = decide(state, tap, self.cfg)
        if await self._fetched_rights_for(decision, state):
            state = self._state(ref)  # the cloud granted what a top-up elsewhere made
            decision = decide(state, tap, self.cfg)
        if decision.needs_pin:
            self._pin = _PendingPin(token, ref, tap_id, self.monotonic())
            asking = Outcome(decision, tap_id, ref, started)
            await self.feedback.show(asking)  # the PIN screen
            return asking
        if not decision.approved:
            return await self._finish_denied(decision, tap_id, ref, started)
        self._amount = None  # a keyed amount pays one sale
        self._use_points = None  # and the points choice holds for that sale only
        if self.cfg.kiosk.role is Role.TOPUP and state.member is not None:
            self._topup = _TopupSession(state.member.id, state.member.name, self.monotonic())
            opened = Outcome(decision, tap_id, ref, started, topup_open=True)
            await self.feedback.show(opened)
            return opened
        member_id = state.member.id if state.member else ""
        return await self._commit(decision, member_id, tap_id, ref, started)

    async def _commit(
        self, decision: Decision, member_id: str, tap_id: str, ref: str, started: int
    ) -> Outcome:
        if not decision.approved:
            return await self._finish_denied(decision, tap_id, ref, started)
        intents = intents_for(decision, member_id, self.clock_ms())
        intents += self._entry_register(decision, ref)
        if self.cfg.kiosk.role is Role.TOPUP:
            intents += self._handover(intents)  # a voucher's money, like coins
        # Online, rights come from the cloud before any offline allowance is touched; the
        # ledger still makes the decision that counts, in its own transaction.
        if self.rights is not None and self.rights.online:
            for intent in intents:
                if intent.kind is Kind.DEC:
                    await self._ask_cloud(intent.account, intent.purse, intent.amount)
        try:
            self._append(intents, tap_id)
        except SpendRefused as exc:
            reason = self._refusal_reason(exc)
            denied = replace(decision, approved=False, reason=reason, debits=(), credits=())
            return await self._finish_denied(denied, tap_id, ref, started)
        durable = time.perf_counter_ns()
        gate = 0
        if self.cfg.kiosk.role is Role.GATE and decision.opens_gate:
            await self.feedback.open_gate()
            gate = time.perf_counter_ns()
            self.ledger.gate_opened(self.ledger.head()[0])
            if ref:
                self._remember_entry(ref)
        known = self.rights.known_values(member_id) if self.rights and member_id else None
        if known is not None and decision.remaining:
            # What is left, from what is known now the ops are written (the cloud's answer to a
            # rights request brought its newest signed values with it).
            now = {p: b.value for p, b in self._balances(member_id).items()}
            left = {p: now.get(p, v) for p, v in decision.remaining.items()}
            decision = replace(decision, remaining=left)
        outcome = Outcome(
            decision, tap_id, ref, started, durable, gate, as_of_ms=self._as_of(member_id)
        )
        self._remember(ref, outcome)
        await self.feedback.show(outcome)
        return outcome

    async def _looked_up(self, account: str) -> bool:
        if self.rights is None or not self.rights.online:
            return False
        try:
            return await self.rights.lookup(account)
        except Exception as err:  # the cloud link must never break a tap
            log.warning("lookup failed: %s", err)
            return False

    def _session_decision(self, session: _TopupSession) -> Decision:
        """A top-up session's screen: approved, with what the member holds now."""
        balances = self._balances(session.member)
        return Decision(
            approved=True,
            member_name=session.name,
            credits=(),
            remaining={p: b.value for p, b in balances.items()},
        )

    def _balances(self, account: str) -> dict[str, Balance]:
        """The account's purses as this kiosk best knows them (docs/knowledge-model.md): rights
        exactly from the ledger; values from the cloud's last signed snapshot plus this kiosk's
        own ops since (online: the true balance), or, with no snapshot, from the ledger."""
        balances = read_balances(self.ledger, account, self.cfg.rules.points_lifetime_days)
        known = self.rights.known_values(account) if self.rights is not None else None
        if known is None:
            return balances
        for purse, value in known[0].items():
            held = balances.get(purse)
            if held is None:
                rights = self.ledger.purse(account, purse).rights(self.ledger.replica)
                held = Balance(value=value, rights=rights)
            balances[purse] = replace(held, value=value)
        return balances

    def _as_of(self, account: str) -> int:
        """0 when the balances shown are true (online, or no cloud at all); offline, the cloud
        time of the knowledge they rest on (the screen says "as of 14:02")."""
        if self.rights is None or self.rights.online or not account:
            return 0
        known = self.rights.known_values(account)
        return known[1] if known is not None else max(1, self.rights.last_contact_ms)

    def _refusal_reason(self, exc: SpendRefused) -> DenyReason:
        """The true reason a debit was refused: what is known of the purse's value first (a
        coupon used elsewhere is "already used", not "not available offline")."""
        known = self._balances(exc.account).get(exc.purse)
        if known is not None and known.value < exc.amount and self.rights is not None:
            if exc.account.startswith(rec.COUPON_PREFIX):
                return DenyReason.COUPON_USED
            if exc.account.startswith(rec.VOUCHER_PREFIX):
                return DenyReason.VOUCHER_USED
            return DenyReason.INSUFFICIENT_BALANCE
        return REFUSAL_REASON.get(exc.reason, DenyReason.INSUFFICIENT_BALANCE)

    def _owed_entries(self) -> dict[str, int]:
        """Entries paid for (a debit committed) whose gate pulse was never recorded, recent
        enough to honour: the kiosk stopped between commit and pulse."""
        if self.cfg.kiosk.role is not Role.GATE:
            return {}
        since = self.clock_ms() - int(OWED_ENTRY_S * 1000)
        owed: dict[str, int] = {}
        for op in self.ledger.ops(self.ledger.replica, self.ledger.opened):
            if op.kind is Kind.DEC and op.ref and ":" not in op.account and op.wall_ms >= since:
                owed[op.account] = op.seq
        if owed:
            log.warning("entries owed after a stop before the gate opened: %d", len(owed))
        return owed

    async def _open_owed(
        self, member: Member, seq: int, tap_id: str, ref: str, started: int
    ) -> Outcome:
        """The member paid at op `seq` but the gate never opened: open it, debit nothing."""
        log.warning("owed entry for op #%d given (no second debit)", seq)
        await self.feedback.open_gate()
        gate = time.perf_counter_ns()
        self.ledger.gate_opened(seq)
        self._remember_entry(ref)
        balances = self._balances(member.id)
        decision = Decision(
            approved=True,
            member_name=member.name,
            remaining={p: b.value for p, b in balances.items()},
        )
        outcome = Outcome(decision, tap_id, ref, started, 0, gate)
        self._remember(ref, outcome)
        await self.feedback.show(outcome)
        return outcome

    async def _fetched_rights_for(self, decision: Decision, state: TapState) -> bool:
        """Short of balance as this kiosk sees it, but online: the cloud may know more (a top-up
        at another kiosk). Ask for the missing rights; True if they came."""
        wanted, member = decision.wanted, state.member
        if wanted is None or member is None:
            return False
        return await self._ask_cloud(member.id, wanted.purse, wanted.amount)

    def _credit(self, member: str, amount: int) -> list[Intent]:
        """A top-up: the credit, and its rights handed to the cloud in the same transaction, so
        the gate where the member goes next can be granted them (a top-up kiosk spends nothing).
        Offline, the hand-over travels with the credit when the link is back."""
        credit = [Intent(Kind.INC, member, "cash", amount)]
        return [*credit, *self._handover(credit)]

    def _handover(self, intents: list[Intent]) -> list[Intent]:
        """The transfers to the cloud of the rights that member cash credits create here."""
        cloud = self.ledger.cloud
        if cloud is None or cloud == self.ledger.replica:  # no cloud, or we are it
            return []
        return [
            Intent(Kind.XFER, i.account, i.purse, i.amount, counterpart=cloud)
            for i in intents
            if i.kind is Kind.INC and i.purse == "cash" and ":" not in i.account
        ]

    def _append(self, intents: list[Intent], tap_id: str) -> None:
        """The tap's ops, with the read counter it owes, in one transaction."""
        if intents:
            self.ledger.append([*self._counter_due, *intents], ref=tap_id)
            self._counter_due = []

    async def _ask_cloud(self, account: str, purse: str, amount: int) -> bool:
        """When online and this kiosk holds less than `amount`, ask the cloud for the shortfall
        (within its time budget). True if the kiosk now holds enough."""
        held = self.ledger.purse(account, purse).rights(self.ledger.replica)
        if held >= amount:
            return True
        if self.rights is None or not self.rights.online:
            return False
        try:
            return await self.rights.request_rights(account, purse, amount - max(held, 0))
        except Exception as err:  # the cloud link must never break a tap
            log.warning("rights request failed: %s", err)
            return False

    async def _finish_denied(
        self, decision: Decision, tap_id: str, ref: str, started: int
    ) -> Outcome:
        reason = decision.reason or DenyReason.UNKNOWN_CARD
        if decision.writes:
            now = self.clock_ms()
            writes = [
                Intent(Kind.SET, w.account, w.name, now, data=w.value) for w in decision.writes
            ]
            self._append(writes, tap_id)
        self.ledger.record_denial(
            ref=tap_id,
            account=ref and rec.card_account(ref),
            purse="",
            amount=0,
            reason=reason.name,
        )
        outcome = Outcome(decision, tap_id, ref, started)
        if reason not in (DenyReason.PIN_WRONG, DenyReason.PIN_CANCELLED):
            self._remember(ref, outcome)  # a member retrying a PIN is not a double tap
        await self.feedback.show(outcome)
        return outcome

    async def _close_topup(self, ref: str, started: int) -> Outcome:
        session = self._topup
        assert session is not None
        self._topup = None
        if session.total == 0:  # opened and closed with nothing inserted: show the balance
            return await self._show_lookup(ref, started)
        tap_id = uuid.uuid4().hex[:16]
        coins = session.total - session.vouchers
        bonus = topup_bonus(coins, "coins", self.cfg)
        bonus += topup_bonus(session.vouchers, "voucher", self.cfg)
        durable = 0
        if bonus:
            self.ledger.append(self._credit(session.member, bonus), ref=tap_id)
            durable = time.perf_counter_ns()
        decision = self._session_decision(session)
        outcome = Outcome(
            decision,
            tap_id,
            "",
            started,
            durable,
            topup_total=session.total + bonus,
            as_of_ms=self._as_of(session.member),
        )
        await self.feedback.show(outcome)
        return outcome

    # -- service mode: bounded in time, every step an audited op ---------------------------

    @property
    def in_service(self) -> bool:
        return self._service_until is not None

    async def open_service(self, by: str, minutes: int) -> None:
        """Open service mode for `minutes`; it closes by itself (see `tick`)."""
        until_ms = self.clock_ms() + minutes * 60_000
        self._audit_service(f"open until {until_ms} by {by}")
        self._service_until = self.monotonic() + minutes * 60
        log.warning("service mode open for %d min (%s)", minutes, by)
        await self.feedback.service(self.diagnostics())

    async def close_service(self, why: str) -> None:
        if self._service_until is None:
            return
        self._service_until = None
        self._audit_service(f"closed: {why}")
        log.warning("service mode closed: %s", why)
        await self.feedback.idle()

    async def tick(self) -> None:
        """Called about every second: service mode ends when its time is up."""
        if self._service_until is not None and self.monotonic() >= self._service_until:
            await self.close_service("time is up")

    def _audit_service(self, text: str) -> None:
        # A register op on the kiosk's own account: signed, chained, and sent to the cloud.
        account = f"kiosk:{self.cfg.kiosk.id}"
        intent = Intent(Kind.SET, account, "service", self.clock_ms(), data=text)
        self.ledger.append([intent], ref=uuid.uuid4().hex[:16])

    # -- memory of recent taps (bounded) -------------------------------------------------------

    def _remember(self, ref: str, outcome: Outcome) -> None:
        if not ref:
            return
        self._recent[ref] = (self.monotonic(), outcome)
        self._recent.move_to_end(ref)
        while len(self._recent) > 256:
            self._recent.popitem(last=False)

    def _entry_register(self, decision: Decision, ref: str) -> list[Intent]:
        """With anti-passback on, an entry (or an exit) is a register write in the tap's own
        transaction, so other gates of the scope learn it and a restart does not forget it."""
        kiosk = self.cfg.kiosk
        if not ref or kiosk.role is not Role.GATE or not decision.opens_gate:
            return []
        if not self.cfg.rules.passback_minutes:
            return []
        now = self.clock_ms()
        value = "0" if kiosk.direction == "out" else str(now)
        return [Intent(Kind.SET, rec.card_account(ref), LAST_ENTRY, now, data=value)]

    def _remember_entry(self, ref: str) -> None:
        if self.cfg.kiosk.direction == "out":
            self._last_entry.pop(ref, None)
            return
        self._last_entry[ref] = self.clock_ms()
        self._last_entry.move_to_end(ref)
        while len(self._last_entry) > 10_000:
            self._last_entry.popitem(last=False)
