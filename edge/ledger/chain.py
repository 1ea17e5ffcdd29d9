"""The ledger's rules, written once as plain functions over ops and a `ChainStore`.

What an op must be to enter a chain (known author, signature, shape, transfer route), where it
goes (placed on its chain, held pending until its gap fills, a duplicate, or refused), what each
kind does to purse totals and registers, and what a local write may do. The stores (the SQLite
`Ledger` of a kiosk or of the embedded cloud, the PostgreSQL cloud store) only persist.

Counts of a batch (`place`): `applied` = ops newly placed on a chain by this call, including
ops held pending earlier (or in this batch) that the batch's ops let through; `pending` = ops of
the batch still waiting for a predecessor when the call returns; `duplicate` = ops of the batch
already stored, identical; `refused` = ops of the batch refused (logged, never stored).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.ledger.errors import OpRefused, Refusal, SpendRefused
from edge.ledger.op import SPENDING, Intent, Kind, Op
from edge.ledger.purse import STRICT, PurseState, RiskPolicy, Share, plan_spend, purse_unit
from edge.ledger.records import (
    CARD_PREFIX,
    CREDIT_LIMIT_PREFIX,
    KIOSK_REGISTERS,
    SERVICE_REGISTER,
    SUN_COUNTER,
    SUN_CTR_MAX,
    VOUCHER_PREFIX,
    kiosk_account,
)

log = logging.getLogger(__name__)

# Caps on what one op may carry: a signed op is still an attacker's input (a stolen key).
MAX_NAME = 256  # replica, account, purse, counterpart, ref (as the wire decoder allows)
MAX_DATA = 65_536  # op data (as the wire decoder allows)
MAX_AMOUNT = 2**53 - 1  # amounts and register versions (ms): exact in every store and language
MAX_PENDING = 10_000  # ops held per replica waiting for a gap to fill

Role = Literal["cloud", "kiosk"]
TOTALS = ("inc", "dec", "debt", "xin", "xout")  # the per-replica totals a purse share keeps
Move = tuple[str, str, int]  # (replica, total, amount): one op's effect on one total


@dataclass(frozen=True, slots=True)
class Register:
    account: str
    name: str
    value: str
    version: int
    replica: str


class Keyring(Protocol):
    """Who may write chains in a store: each replica's public key and role."""

    @property
    def keeper_role(self) -> Role:
        """The role of the replica keeping this store (the cloud knows every enrolled kiosk)."""
        ...

    @property
    def cloud(self) -> str | None: ...

    def public_key(self, replica: str) -> Ed25519PublicKey | None: ...

    def role_of(self, replica: str) -> Role | None: ...


class ChainStore(Keyring, Protocol):
    """What the rules need persisted. Every call runs inside the caller's write transaction,
    and a read sees the writes made before it in that transaction."""

    def head(self, replica: str) -> tuple[int, bytes]:
        """(seq, hash) of the newest op of a replica's chain; (0, GENESIS) if none."""
        ...

    def stored_hash(self, replica: str, seq: int) -> bytes | None: ...

    def ops_with_ref(self, replica: str, ref: str) -> list[Op]: ...

    def shares(self, account: str, purse: str) -> tuple[Share, ...]: ...

    def register(self, account: str, name: str) -> Register | None: ...

    def open_debt(self, replica: str, unit: str) -> int:
        """A replica's outstanding debt over every purse of a unit: sum of negative rights."""
        ...

    def put_op(self, op: Op, digest: bytes) -> None:
        """Store an op and make it its chain's head."""
        ...

    def add_to_total(self, account: str, purse: str, replica: str, total: str, amount: int) -> None:
        """Add to one of `TOTALS` of a replica's share of a purse."""
        ...

    def put_register(self, register: Register) -> None: ...

    def hold_pending(self, op: Op) -> None:
        """Keep an op whose predecessor is missing (a second op for the same seq is ignored)."""
        ...

    def take_pending(self, replica: str, seq: int) -> Op | None:
        """Remove and return the pending op at (replica, seq), if any."""
        ...

    def discard_pending(self, replica: str, through_seq: int) -> None:
        """Forget pending ops of a replica at or below a seq its chain already holds."""
        ...

    def pending_of(self, replica: str) -> int:
        """How many ops of a replica are held pending."""
        ...


# -- effects ---------------------------------------------------------------------------------


def moves(op: Op) -> list[Move]:
    """Which per-replica totals an op moves."""
    if op.kind is Kind.INC:
        return [(op.replica, "inc", op.amount)]
    if op.kind in SPENDING:
        out = [(op.replica, "dec", op.amount)]
        if op.kind is Kind.DEBT:
            out.append((op.replica, "debt", op.amount))
        return out
    if op.kind is Kind.XFER:
        return [(op.replica, "xout", op.amount), (op.counterpart, "xin", op.amount)]
    return []


def register_wins(new: Register, old: Register | None) -> bool:
    """A versioned register keeps the highest (version, replica), in any delivery order."""
    return old is None or (new.version, new.replica) > (old.version, old.replica)


def purse_state(store: ChainStore, account: str, purse: str) -> PurseState:
    limit = store.register(account, credit_limit_name(purse))
    shares = store.shares(account, purse)
    return purse_from(account, purse, shares, limit.value if limit else None, store.cloud)


def credit_limit_name(purse: str) -> str:
    """The register holding a purse's credit limit (on the purse's account)."""
    return CREDIT_LIMIT_PREFIX + purse


def purse_from(
    account: str, purse: str, shares: tuple[Share, ...], limit: str | None, cloud: str | None
) -> PurseState:
    """A purse from its shares and the value of its credit-limit register
    (`credit_limit_name`), None when it has none."""
    return PurseState(
        account=account,
        purse=purse,
        shares=shares,
        credit_limit=int(limit) if limit is not None else 0,
        cloud=cloud,
    )


def _put(store: ChainStore, op: Op) -> bytes:
    """The one place an op enters a chain: the row, the head, the totals, the register."""
    digest = op.hash()
    store.put_op(op, digest)
    for replica, total, amount in moves(op):
        store.add_to_total(op.account, op.purse, replica, total, amount)
    if op.kind is Kind.SET:
        new = Register(op.account, op.purse, op.data, op.amount, op.replica)
        if register_wins(new, store.register(op.account, op.purse)):
            store.put_register(new)
    return digest


# -- what may enter a chain --------------------------------------------------------------------


def xfer_route_ok(keyring: Keyring, author: str, to: str) -> bool:
    """Transfers go only between the cloud and an enrolled kiosk, never to the author itself.
    The cloud knows every kiosk it enrolled; a kiosk knows only the cloud and takes the cloud's
    signed word that a replica which is not a cloud is a kiosk."""
    if to == author:
        return False
    to_role = keyring.role_of(to)
    if keyring.role_of(author) == "cloud":
        return to_role == "kiosk" if keyring.keeper_role == "cloud" else to_role != "cloud"
    return to_role == "cloud"


def shape_refusal(op: Op | Intent) -> str | None:
    """Why an op (or a local write) is out of bounds: names, value and amount sizes."""
    names = [op.account, op.purse, op.counterpart]
    if isinstance(op, Op):
        names += [op.replica, op.ref]
    if any(len(n) > MAX_NAME for n in names):
        return f"a name longer than {MAX_NAME} characters"
    if len(op.data) > MAX_DATA:
        return f"data longer than {MAX_DATA} characters"
    if not 0 <= op.amount <= MAX_AMOUNT:
        return "amount or version out of range"
    return None


def kiosk_register_refusal(replica: str, account: str, name: str, version: int) -> str | None:
    """A kiosk writes only its own locks and counters (PIN failures and lockouts, card read
    counters, its own service-mode record): never card status, tiers, PINs, credit limits or
    passes, which only the cloud writes. A SUN read counter is a card's, at the counter's own
    value (a max register: the version is the counter, 3 bytes on the card)."""
    if name not in KIOSK_REGISTERS:
        return f"a kiosk may not write register {name!r}"
    if name == SERVICE_REGISTER and account != kiosk_account(replica):
        return "a kiosk writes service mode only on its own account"
    if name == SUN_COUNTER and not (account.startswith(CARD_PREFIX) and version <= SUN_CTR_MAX):
        return f"a SUN read counter is a card's, at most {SUN_CTR_MAX}"
    return None


def check_op(keyring: Keyring, op: Op) -> None:
    """Raise OpRefused unless the op is signed by a known replica, well formed and routed.
    Costs a signature check: callers run it before taking the write lock."""
    key = keyring.public_key(op.replica)
    if key is None:
        raise OpRefused(op.replica, op.seq, "unknown replica (no trusted key)")
    if op.seq < 1 or op.seq > MAX_AMOUNT:
        raise OpRefused(op.replica, op.seq, "seq out of range")
    if (why := shape_refusal(op)) is not None:
        raise OpRefused(op.replica, op.seq, why)
    if not op.signature_ok(key):
        raise OpRefused(op.replica, op.seq, "bad signature")
    if op.kind is not Kind.SET and op.amount <= 0:
        raise OpRefused(op.replica, op.seq, "amount must be positive")
    if op.kind is Kind.XFER and not xfer_route_ok(keyring, op.replica, op.counterpart):
        raise OpRefused(op.replica, op.seq, "transfer not between the cloud and an enrolled kiosk")
    why = None
    if op.kind is Kind.SET and keyring.role_of(op.replica) != "cloud":
        why = kiosk_register_refusal(op.replica, op.account, op.purse, op.amount)
    if why is not None:
        raise OpRefused(op.replica, op.seq, why)


@dataclass(slots=True)
class Placed:
    """What `place` did with a batch (see the module docstring for the counts)."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"applied": 0, "duplicate": 0, "pending": 0, "refused": 0}
    )
    refusals: list[OpRefused] = field(default_factory=list)

    def refuse(self, exc: OpRefused) -> None:
        log.warning("%s", exc)
        self.refusals.append(exc)
        self.counts["refused"] += 1


def place(store: ChainStore, ops: Sequence[Op], placed: Placed | None = None) -> Placed:
    """Place checked ops (`check_op`) on their chains, in seq order per replica: stored once by
    (replica, seq), linked by prev hash; an op ahead of a gap waits pending and is placed when
    the gap fills. Writes nothing for a refused op."""
    placed = placed or Placed()
    runs: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        runs[op.replica].append(op)
    for replica in sorted(runs):
        _place_run(store, replica, sorted(runs[replica], key=lambda o: o.seq), placed)
    return placed


def _place_run(store: ChainStore, replica: str, run: list[Op], placed: Placed) -> None:
    counts = placed.counts
    seq, head = store.head(replica)
    held: list[Op] = []
    for op in run:
        if op.seq > seq + 1:  # a gap: ops held earlier may fill it
            seq, head = _drain(store, replica, seq, head, counts)
        if op.seq <= seq:
            if store.stored_hash(replica, op.seq) == op.hash():
                counts["duplicate"] += 1
            else:  # same seq, other content: the replica signed two histories
                placed.refuse(OpRefused(replica, op.seq, "conflicts with the op already stored"))
        elif op.seq > seq + 1:
            if op.seq - seq > MAX_PENDING or store.pending_of(replica) >= MAX_PENDING:
                placed.refuse(OpRefused(replica, op.seq, f"more than {MAX_PENDING} ops pending"))
                continue
            store.hold_pending(op)
            held.append(op)
        elif op.prev != head:
            why = "does not link to the previous op (prev hash)"
            placed.refuse(OpRefused(replica, op.seq, why))
        else:
            head = _put(store, op)
            seq = op.seq
            counts["applied"] += 1
    seq, head = _drain(store, replica, seq, head, counts)
    store.discard_pending(replica, seq)
    counts["pending"] += sum(1 for op in held if op.seq > seq)


def _drain(
    store: ChainStore, replica: str, seq: int, head: bytes, counts: dict[str, int]
) -> tuple[int, bytes]:
    while (nxt := store.take_pending(replica, seq + 1)) is not None:
        if nxt.prev != head:
            # Signed by the replica but not on its chain: equivocation. Keep it out, loudly.
            log.error("pending op %s#%d does not link to its predecessor", replica, seq + 1)
            break
        head = _put(store, nxt)
        seq = nxt.seq
        counts["applied"] += 1
    return seq, head


# -- what the cloud lets a kiosk write (its role's authority) -----------------------------------


@dataclass(frozen=True, slots=True)
class KioskAuthority:
    """What the cloud accepts from a kiosk of a role beyond the chain rules: the most one stolen
    kiosk can cost is the rights it held, plus its debt allowance, plus its bounded credits."""

    role: str = "gate"  # gate | pos | topup
    credit_per_op: int = 100_000  # cash a top-up kiosk may credit in one op (minor units)
    credit_per_day: int | None = 1_000_000  # ...and in one cloud day; None = unbounded
    points_per_100: int = 100  # most points a purchase of 100 minor units may accrue
    debt_per_op: int = 0  # offline risk allowance the cloud accepts (0 = strict)
    version_ahead_ms: int = 86_400_000  # a kiosk's register version (its ms) vs the cloud's
    # How far a SUN read counter may jump above the one the cloud knows (a real card counts
    # every read, phones included; a stolen kiosk writing the top counter would lock the card).
    sun_ctr_jump: int = 100_000


@dataclass(slots=True)
class TapContext:
    """What the ops of one tap (one ref) spent before a credit: cash and vouchers."""

    cash_spent: int = 0
    vouchers_spent: int = 0


def authority_refusal(
    op: Op,
    authority: KioskAuthority,
    *,
    tap: TapContext,
    rights_before: int,
    credited_today: int,
    now_ms: int,
    counter_before: int = 0,
) -> str | None:
    """Why the cloud holds a kiosk's op for an operator's review instead of applying it, or
    None. A gate or point of sale never credits money (points only within what the tap paid);
    a top-up kiosk credits cash within its bounds, or what a voucher it redeemed was worth;
    debits only within the kiosk's rights plus its debt allowance; register versions not ahead
    of the cloud's clock; a card's SUN read counter within a jump of `counter_before`, the one
    the cloud knows."""
    if op.kind is Kind.SET:
        if op.purse == SUN_COUNTER and op.amount > counter_before + authority.sun_ctr_jump:
            return f"SUN read counter {op.amount} jumps above the {counter_before} known"
        if op.amount > now_ms + authority.version_ahead_ms:
            return "register version ahead of the cloud's clock"
        return None
    if op.kind in SPENDING:
        if op.amount > max(rights_before, 0) + authority.debt_per_op:
            return f"debit of {op.amount} beyond the {max(rights_before, 0)} rights it held"
        return None
    if op.kind is not Kind.INC:
        return None
    unit = purse_unit(op.purse)
    if unit == "points":
        if op.amount > tap.cash_spent * authority.points_per_100 // 100:
            return f"{op.amount} points for a purchase of {tap.cash_spent}"
        return None
    if unit != "cash":
        return f"a kiosk never credits {op.purse!r}"
    if op.amount <= tap.vouchers_spent:
        return None  # a voucher redeemed in the same tap: value the cloud issued
    if authority.role != "topup":
        return f"a {authority.role} kiosk never credits cash"
    if op.amount > authority.credit_per_op:
        return f"credit of {op.amount} above the per-op bound {authority.credit_per_op}"
    day = authority.credit_per_day
    if day is not None and credited_today + op.amount > day:
        return f"credits of {credited_today + op.amount} today above the day's bound {day}"
    return None


def tap_context_add(tap: TapContext, op: Op) -> None:
    """Count a spending op toward the credits of its tap."""
    if op.kind not in SPENDING:
        return
    if op.account.startswith(VOUCHER_PREFIX):
        tap.vouchers_spent += op.amount
    elif purse_unit(op.purse) == "cash":
        tap.cash_spent += op.amount


# -- what a local write may do -----------------------------------------------------------------


def check_intent(
    store: ChainStore, replica: str, intent: Intent, risk: RiskPolicy = STRICT
) -> Kind:
    """The kind a local write is written as, or SpendRefused: debits and transfers only within
    the writer's rights (or a kiosk's offline risk allowance), transfers only on the cloud route."""
    kind = intent.kind
    if shape_refusal(intent) is not None:
        raise SpendRefused(Refusal.BAD_AMOUNT, intent.account, intent.purse, intent.amount, 0)
    if kind is Kind.SET:
        if store.role_of(replica) != "cloud" and kiosk_register_refusal(
            replica, intent.account, intent.purse, intent.amount
        ):
            raise SpendRefused(Refusal.NOT_ALLOWED, intent.account, intent.purse, intent.amount, 0)
        return kind
    if kind is Kind.DEBT:
        raise SpendRefused(Refusal.NOT_ALLOWED, intent.account, intent.purse, intent.amount, 0)
    if intent.amount <= 0:
        raise SpendRefused(Refusal.BAD_AMOUNT, intent.account, intent.purse, intent.amount, 0)
    if kind is Kind.INC:
        return kind
    if kind is Kind.XFER and not xfer_route_ok(store, replica, intent.counterpart):
        raise SpendRefused(
            Refusal.XFER_NOT_VIA_CLOUD, intent.account, intent.purse, intent.amount, 0
        )
    rights = purse_state(store, intent.account, intent.purse).rights(replica)
    open_debt = 0
    if kind is Kind.DEC and rights < intent.amount:
        open_debt = store.open_debt(replica, purse_unit(intent.purse))
    return plan_spend(
        kind=kind,
        account=intent.account,
        purse=intent.purse,
        amount=intent.amount,
        rights=rights,
        open_debt=open_debt,
        policy=risk,
    )


def write(
    store: ChainStore,
    *,
    replica: str,
    key: Ed25519PrivateKey,
    intents: Sequence[Intent],
    ref: str,
    wall_ms: int,
    mono_ms: int,
    risk: RiskPolicy = STRICT,
    hold_until: int = 0,
) -> list[Op]:
    """Write intents as signed ops of `replica`, each checked against the totals the ones before
    it left. With a `ref`, a retry returns the ops already written and writes nothing. While
    the replica's own chain is behind `hold_until` (a restored image), nothing is written."""
    if ref:
        done = store.ops_with_ref(replica, ref)
        if done:
            return done
    seq, prev = store.head(replica)
    if seq < hold_until and intents:
        # The chain is behind what the cloud stored for it: a new op would fork it and could
        # spend rights already spent. Nothing until recovered.
        first = intents[0]
        raise SpendRefused(Refusal.CHAIN_BEHIND, first.account, first.purse, first.amount, 0)
    written: list[Op] = []
    for intent in intents:
        kind = check_intent(store, replica, intent, risk)
        seq += 1
        op = Op(
            replica=replica,
            seq=seq,
            wall_ms=wall_ms,
            mono_ms=mono_ms,
            kind=kind,
            account=intent.account,
            purse=intent.purse,
            amount=intent.amount,
            counterpart=intent.counterpart,
            ref=ref,
            data=intent.data,
            prev=prev,
        ).signed(key)
        prev = _put(store, op)
        written.append(op)
    return written


# -- a forked kiosk's set-aside branch: its overspend, as debt ---------------------------------


@dataclass(frozen=True, slots=True)
class ForkDebt:
    """What one purse owes for a forked kiosk's set-aside branch: `spent` there and not on the
    chain the cloud kept, recorded as `debt` up to the rights the kiosk `held` at the fork
    (plus its debt allowance). Spent beyond that bound (`beyond`) no honest kiosk could have
    written: it is reported for review, never recorded as a member's debt."""

    account: str
    purse: str
    spent: int
    held: int
    debt: int

    @property
    def beyond(self) -> int:
        return self.spent - self.debt


def rights_at_fork(rights_now: int, replica: str, kept: Sequence[Op]) -> int:
    """A replica's rights on one purse before `kept` (its ops of that purse from the fork on,
    on the chain the cloud kept): their effects undone from the rights it holds now."""
    held = rights_now
    for op in kept:
        for who, total, amount in moves(op):
            if who == replica and total != "debt":  # debt is inside dec already
                held += -amount if total in ("inc", "xin") else amount
    return held


def _spend_of_tap(op: Op) -> tuple[Kind, str, str, int, str]:
    """A spend as its tap wrote it (what, whose, how much, which tap), wherever it sits."""
    return (op.kind, op.account, op.purse, op.amount, op.ref)


def fork_debts(
    branch: Sequence[Op],
    *,
    kept: Sequence[Op],
    held: dict[tuple[str, str], int],
    allowance: int = 0,
    before: dict[tuple[str, str], ForkDebt] | None = None,
) -> list[ForkDebt]:
    """The debt of each purse the branch spent on: its spending ops that the kept chain does
    not contain (the same tap written on both branches is spent once), added to what earlier
    parts of the same branch recorded (`before`), capped by `held` + `allowance`."""
    before = before or {}
    contained = {_spend_of_tap(o) for o in kept}
    spent: dict[tuple[str, str], int] = {k: d.spent for k, d in before.items()}
    for op in branch:
        if op.kind in SPENDING and _spend_of_tap(op) not in contained:
            key = (op.account, op.purse)
            spent[key] = spent.get(key, 0) + op.amount
    out = []
    for (account, purse), amount in sorted(spent.items()):
        rights = before[(account, purse)].held if (account, purse) in before else None
        rights = held.get((account, purse), 0) if rights is None else rights
        debt = min(amount, max(rights, 0) + allowance)
        out.append(ForkDebt(account, purse, amount, rights, debt))
    return out
