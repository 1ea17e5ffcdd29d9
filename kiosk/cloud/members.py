"""Members, cards and money: `kiosk cloud member | points | tiers | coupon | voucher | card |
topup | refund | correct | show`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import click

from cloud_sync import admin
from cloud_sync.errors import ActionRefused, SyncError
from cloud_sync.operator_input import ACCOUNT, AMOUNT, CARD, CODE, NAME
from cloud_sync.settings import CloudConfig
from cloud_sync.upkeep import lapse_points
from edge.ledger.records import CARD_PREFIX
from kiosk.cloud.common import cloud, config_option, publish_to_kiosks, reconciler_for, site_secrets
from provisioning.secret_input import secret_option


@cloud.group()
def member() -> None:
    """Member accounts."""


@member.command(name="register")
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option("--name", required=True, type=NAME, help="Member's display name.")
def member_register(config: Path, account: str, name: str) -> None:
    """Create or rename a member account."""
    with reconciler_for(config) as (_cfg, rec):
        admin.register_member(rec.store, account, name)
    click.echo(f"member {account} registered")


@member.command(name="set")
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option("--tier", default=None, help="Tier name (one of [[membership.tiers]]).")
@secret_option(
    "--pin", what="PIN", default=None, help="New PIN, 4-12 digits (stored as a salted hash only)"
)
@click.option("--pass", "pass_product", default=None, help="Product of a time pass to grant.")
@click.option(
    "--days",
    default=30,
    show_default=True,
    type=click.IntRange(1, 3660),
    help="Time pass length from now.",
)
@click.option(
    "--credit-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Overdraft on cash in minor units (透支); 0 removes it.",
)
@click.option(
    "--category", default=None, type=CODE, help="Member category (its prices and discount)."
)
@click.option(
    "--home",
    default=None,
    type=CODE,
    help="Site or scope group whose kiosks know the member (docs/knowledge-model.md).",
)
def member_set(
    config: Path,
    account: str,
    tier: str | None,
    pin: str | None,
    pass_product: str | None,
    days: int,
    credit_limit: int | None,
    category: str | None,
    home: str | None,
) -> None:
    """Set a member's tier, PIN, a time pass, credit limit, category or home scope (versioned
    registers the kiosks of the member's scope apply)."""
    window = None
    if pass_product is not None:
        now = time.time_ns() // 1_000_000
        window = (now, now + days * 86_400_000)
    with reconciler_for(config) as (cfg, rec):
        admin.set_member(
            rec.store,
            account,
            tier=tier,
            pin=pin,
            pass_product=pass_product,
            pass_window_ms=window,
            credit_limit=credit_limit,
            category=category,
            membership=cfg.membership,
            home=home,
        )
    click.echo(f"member {account} updated")


@cloud.group()
def points() -> None:
    """Member points: transfers between members, points that lapse."""


@points.command(name="transfer")
@config_option
@click.option("--from", "source", required=True, type=ACCOUNT, help="The member giving points.")
@click.option("--to", "target", required=True, type=ACCOUNT, help="The member receiving them.")
@click.option("--amount", required=True, type=AMOUNT, help="Points to give.")
@click.option("--ref", required=True, type=CODE, help="Your reference (a retry moves once).")
def points_transfer(config: Path, source: str, target: str, amount: int, ref: str) -> None:
    """Give points from one member to another (积分转赠), if [membership] point_transfers."""
    with reconciler_for(config) as (cfg, rec):
        admin.transfer_points(
            rec.store,
            cfg.membership,
            source,
            target,
            amount,
            ref=ref,
            now_ms=time.time_ns() // 1_000_000,
        )
        left = rec.store.purse(source, "points").value
    click.echo(f"{amount} points from {source} to {target}; {source} has {left} left")


@points.command(name="lapse")
@config_option
def points_lapse(config: Path) -> None:
    """Write off points older than [membership] points_lifetime_days now (the reconciler does
    it once a day by itself)."""
    with reconciler_for(config) as (cfg, rec):
        lapses = lapse_points(rec.store, cfg.membership, time.time_ns() // 1_000_000)
    for lapse in lapses:
        kept = lapse.lapsed - lapse.written_off
        held = f" ({kept} held by kiosks: next time)" if kept else ""
        click.echo(f"{lapse.member}: {lapse.written_off} points lapsed{held}")
    if not lapses:
        click.echo("no points lapsed")


@cloud.group()
def tiers() -> None:
    """Member tiers: kiosks upgrade at the tap; the review at the end of a window moves down."""


@tiers.command(name="review")
@config_option
@click.option("--account", default=None, help="One member; default: every member.")
def tiers_review(config: Path, account: str | None) -> None:
    """End the tier window: each tier becomes what the window's points reached (up or down,
    one down after [membership] inactive_days idle), and a new window starts."""
    with reconciler_for(config) as (cfg, rec):
        changes = admin.review_tiers(
            rec.store, cfg.membership, time.time_ns() // 1_000_000, account
        )
    for c in changes:
        moved = f"{c.before or '-'} -> {c.after or '-'}" if c.before != c.after else c.after or "-"
        click.echo(f"{c.member}: {moved} ({c.progress} points in the window)")


@cloud.command(name="coupon")
@config_option
@click.option("--code", required=True, type=CODE, help="The code printed as QR `C:<code>`.")
def coupon(config: Path, code: str) -> None:
    """Issue a single-use coupon (free entry), scanned as the QR code `C:<code>`."""
    with reconciler_for(config) as (_cfg, rec):
        admin.issue_single_use(rec.store, "coupon", code)
    click.echo(f"coupon C:{code} issued")


@cloud.command(name="voucher")
@config_option
@click.option("--code", required=True, type=CODE, help="The code printed as QR `V:<code>`.")
@click.option("--amount", required=True, type=AMOUNT, help="Value in minor units.")
def voucher(config: Path, code: str, amount: int) -> None:
    """Issue a single-use top-up voucher, redeemed at a top-up kiosk as the QR `V:<code>`."""
    with reconciler_for(config) as (_cfg, rec):
        try:
            admin.issue_single_use(rec.store, "voucher", code, amount)
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"voucher V:{code} of {amount} issued")


@cloud.group()
def card() -> None:
    """Cards: link, report lost, freeze, replace (only an HMAC of the number is stored)."""


def _date_ms(text: str, option: str) -> int:
    """A date (YYYY-MM-DD, end of that day UTC) or an ISO time with its offset -> ms."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from None
    if len(text) == 10:
        when = when + dt.timedelta(days=1)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _card_of(
    cfg: CloudConfig,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool = False,
) -> str:
    """The card reference from a number, an NFC UID (hex) or a tap on the desk's PC/SC reader.
    An NFC card is an NTAG 424 known by its verified SUN UID; with `uid_only`, a card read by
    its bare UID, which is never the same card (docs/security.md, "Cards")."""
    given = [x for x in (number, nfc_uid, reader) if x]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --card, --nfc-uid, --reader")
    if reader:
        from cloud_sync.desk_reader import read_uid

        try:
            nfc_uid = read_uid(reader)
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    if nfc_uid:
        uid = nfc_uid.replace(":", "").replace(" ", "")
        try:
            raw = bytes.fromhex(uid)
        except ValueError:
            raise click.BadParameter("not hex bytes", param_hint="--nfc-uid") from None
        if len(raw) not in (4, 7, 10):
            raise click.BadParameter("an NFC UID is 4, 7 or 10 bytes", param_hint="--nfc-uid")
        return admin.card_token(site_secrets(cfg), raw.hex().upper(), "uid" if uid_only else "nfc")
    if uid_only:
        raise click.UsageError("--uid-only goes with --nfc-uid or --reader")
    assert number is not None
    try:
        check = cfg.membership.card_check_digit
        return admin.card_token(site_secrets(cfg), number, check_digit=check)
    except ActionRefused as exc:
        raise click.BadParameter(str(exc), param_hint="--card") from None


card_options = [
    secret_option("--card", "number", what="card number", default=None, help="Card number"),
    click.option("--nfc-uid", default=None, help="NFC card UID in hex, e.g. 04A1B2C3D4E5F6."),
    click.option("--reader", default=None, help="Read the NFC card on this PC/SC desk reader."),
    click.option(
        "--uid-only",
        is_flag=True,
        help="A UID-only NFC card (clonable; kiosks take it only with accept_uid_cards), never "
        "the same card as an NTAG 424 of that UID.",
    ),
]


def with_card(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(card_options):
        f = option(f)
    return f


@card.command(name="link")
@config_option
@click.option("--account", default=None, type=ACCOUNT, help="Account id (omit with --anonymous).")
@with_card
@click.option(
    "--anonymous", is_flag=True, help="An anonymous card (不记名): an account of its own."
)
@click.option("--valid-until", default=None, help="Last day the card is valid (YYYY-MM-DD).")
def card_link(
    config: Path,
    account: str | None,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    anonymous: bool,
    valid_until: str | None,
) -> None:
    """Issue a card to a registered account, or as an anonymous card (status active)."""
    until = _date_ms(valid_until, "--valid-until") if valid_until else None
    if anonymous == (account is not None):
        raise click.UsageError("give --account, or --anonymous")
    with reconciler_for(config) as (cfg, rec):
        token = _card_of(cfg, number, nfc_uid, reader, uid_only)
        if account is None:
            account = admin.link_anonymous_card(rec.store, token, valid_until_ms=until)
        else:
            admin.link_card(rec.store, account, token, valid_until_ms=until)
    click.echo(f"card linked to {account}")


@card.command(name="discount")
@config_option
@with_card
@click.option("--pct", required=True, type=click.IntRange(0, 100), help="Discount rate, 0-100.")
def card_discount(
    config: Path,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    pct: int,
) -> None:
    """Set a card's own discount rate (applied after the category or tier discount)."""
    with reconciler_for(config) as (cfg, rec):
        card = _card_of(cfg, number, nfc_uid, reader, uid_only)
        account = admin.set_card_discount(rec.store, card, pct)
    click.echo(f"card of {account}: {pct}% discount")


@card.command(name="expiry")
@config_option
@with_card
@click.option("--until", "until", required=True, help="Last day the card is valid (YYYY-MM-DD).")
def card_expiry(
    config: Path,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    until: str,
) -> None:
    """Set or renew a card's expiry date (an expired card renewed becomes active)."""
    until_ms = _date_ms(until, "--until")
    with reconciler_for(config) as (cfg, rec):
        card = _card_of(cfg, number, nfc_uid, reader, uid_only)
        account = admin.set_card_expiry(rec.store, card, until_ms)
    click.echo(f"card of {account} valid until {until}")


def _status(
    config: Path,
    site: str,
    number: str | None,
    nfc_uid: str | None,
    reader: str | None,
    uid_only: bool,
    status: str,
) -> None:
    with reconciler_for(config) as (cfg, rec):
        token = _card_of(cfg, number, nfc_uid, reader, uid_only)
        account, out = admin.set_card_status(rec, site, token, status)
        click.echo(f"card of {account} is now {status}")
        publish_to_kiosks(cfg, [out])


def _status_command(name: str, status: str, doc: str) -> None:
    @card.command(name=name, help=doc)
    @config_option
    @click.option("--site", required=True, help="Site whose kiosks must apply it.")
    @with_card
    def command(
        config: Path,
        site: str,
        number: str | None,
        nfc_uid: str | None,
        reader: str | None,
        uid_only: bool,
    ) -> None:
        _status(config, site, number, nfc_uid, reader, uid_only, status)


_status_command(
    "lost", "lost", "Report a card lost: status register + deny-list delta to every online kiosk."
)
_status_command("freeze", "frozen", "Freeze a card (deny-list delta); `card unfreeze` lifts it.")
_status_command(
    "unfreeze", "active", "Make a frozen card active again (never a lost or replaced one)."
)
_status_command("cancel", "cancelled", "Cancel a card for good (注销); it never comes back.")


@card.command(name="replace")
@config_option
@click.option("--site", required=True, help="Site.")
@secret_option("--old", "old", what="old card number", inner=CARD, required=True, help="Old card")
@secret_option("--new", "new", what="new card number", inner=CARD, required=True, help="New card")
def card_replace(config: Path, site: str, old: str, new: str) -> None:
    """Replace a card: the old one is denied, the new one linked to the same account."""
    with reconciler_for(config) as (cfg, rec):
        key, check = site_secrets(cfg), cfg.membership.card_check_digit
        account, outs = admin.replace_card(
            rec,
            site,
            admin.card_token(key, old, check_digit=check),
            admin.card_token(key, new, check_digit=check),
        )
        click.echo(f"card of {account} replaced")
        publish_to_kiosks(cfg, list(outs))


@cloud.command()
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option("--amount", required=True, type=AMOUNT, help="Minor units (2500 for 25.00).")
@click.option(
    "--purse",
    default="cash",
    show_default=True,
    type=CODE,
    help="cash, points or visits:<product>.",
)
@click.option(
    "--ref", required=True, type=CODE, help="Receipt number (a retry does not credit twice)."
)
def topup(config: Path, account: str, amount: int, purse: str, ref: str) -> None:
    """Top up at the counter: credit a purse on the cloud's chain (a registered account only;
    a receipt used for another top-up is refused)."""
    with reconciler_for(config) as (cfg, rec):
        admin.top_up(rec.store, account, purse, amount, ref, cfg.membership)
        value = rec.store.purse(account, purse).value
    click.echo(f"{purse} of {account}: {value}")


@cloud.command()
@config_option
@click.option("--ref", "tap", required=True, help="Tap id of the purchase (kiosk log, history).")
@click.option("--amount", type=AMOUNT, default=None, help="Cash to refund; default: all.")
@click.option("--reason", required=True, help="Why (kept in the signed ops).")
@click.option("--account", default=None, type=ACCOUNT, help="The member, to find the tap faster.")
def refund(config: Path, tap: str, amount: int | None, reason: str, account: str | None) -> None:
    """Refund a purchase, whole or part: cash back, its points taken back, and on a whole refund
    the points, visits or coupon it used given back. A retry refunds once."""
    with reconciler_for(config) as (_cfg, rec):
        done = admin.refund(rec.store, tap, amount=amount, reason=reason, account=account)
    if done.repeated:
        click.echo(f"tap {tap}: refunded already (nothing more written)")
        return
    click.echo(f"refunded {done.cash} to {done.member}; {done.points_back} points taken back")
    if done.points_short:
        click.echo(
            f"{done.points_short} earned points are held by a kiosk or spent: not taken back"
        )


@cloud.command()
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option(
    "--purse", default="cash", show_default=True, help="cash, points or visits:<product>."
)
@click.option("--amount", required=True, type=int, help="+N credits, -N debits (minor units).")
@click.option("--reason", required=True, help="Why (kept in the signed op).")
@click.option("--ref", required=True, help="Your reference for it (a retry writes once).")
def correct(config: Path, account: str, purse: str, amount: int, reason: str, ref: str) -> None:
    """Correct a purse by hand, with a reason: a signed op every replica applies."""
    with reconciler_for(config) as (_cfg, rec):
        admin.correct(rec.store, account, purse, amount, reason=reason, ref=ref)
        value = rec.store.purse(account, purse).value
    click.echo(f"{purse} of {account}: {value}")


@cloud.command()
@config_option
@click.option("--account", required=True, type=ACCOUNT, help="Account id.")
@click.option(
    "--history",
    "n",
    default=20,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="How many recent ops.",
)
def show(config: Path, account: str, n: int) -> None:
    """A member's balances, rights per replica, card states and recent history."""
    with reconciler_for(config) as (_cfg, rec):
        store = rec.store
        name = store.register(account, "name")
        click.echo(f"account {account}" + (f" ({name.value})" if name else ""))
        for st in store.purses(account):
            rights = ", ".join(f"{s.replica}={st.rights(s.replica)}" for s in st.shares)
            click.echo(f"  {st.purse:<16}{st.value:>10}  debt {st.debt}  rights {rights}")
        for op in store.history(account, n):
            when = dt.datetime.fromtimestamp(op.wall_ms / 1000, dt.UTC).strftime("%F %T")
            what = "card" if op.account.startswith(CARD_PREFIX) else op.purse
            click.echo(
                f"  {when} {op.replica}#{op.seq} {op.kind.name.lower()} {what} {op.amount}"
                + (f" -> {op.counterpart}" if op.counterpart else "")
            )
