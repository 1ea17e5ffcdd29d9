"""Operator actions on members and cards: each is one `perform` (audited, refusals recorded)
around the same `cloud_sync.admin` calls the CLI makes, then the directory row is updated."""

from __future__ import annotations

import datetime as dt

from django.http import HttpRequest
from django.utils.translation import gettext as _

from backoffice.audit.trail import perform
from backoffice.cloud import cloud
from backoffice.members.models import Card, Member
from backoffice.money import money
from cloud_sync import admin
from cloud_sync.errors import ActionRefused, ConfigError
from cloud_sync.protocol import DenyEntry
from cloud_sync.reconciler import Outgoing


def expiry_ms(day: dt.date | None) -> int:
    """A card accepted until the end of its expiry day (UTC)."""
    if day is None:
        return 0
    end = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
    return int(end.timestamp() * 1000)


def sites_of(member: Member) -> list[str]:
    return [member.site] if member.site else cloud().sites()


def register(request: HttpRequest, member: Member) -> bool:
    """Register or update a member at the cloud (name, tier, category; card expiry)."""
    store = cloud().store

    def do() -> None:
        admin.register_member(store, member.account, member.name)
        admin.set_member(
            store,
            member.account,
            tier=member.tier or None,
            category=member.category or None,
            membership=cloud().cfg.membership,
        )
        until = expiry_ms(member.expiry)
        if member.pk and until:
            for card in member.cards.filter(status="active"):
                admin.set_card_expiry(store, card.ref, until)

    detail = {"profile": {"tier": member.tier, "category": member.category, "site": member.site}}
    return perform(
        request,
        "register_member",
        member.account,
        do,
        site=member.site,
        detail=detail,
        done=_("Member %(account)s saved") % {"account": member.account},
    )


def link(request: HttpRequest, member: Member, number: str, kind: str) -> bool:
    c = cloud()
    try:
        token = c.card_token(number, kind)
    except (ConfigError, ActionRefused) as exc:
        token = ""
        reason = str(exc)
    else:
        reason = ""

    def do() -> None:
        if reason:
            raise ConfigError(reason)
        admin.link_card(c.store, member.account, token, valid_until_ms=expiry_ms(member.expiry))

    ok = perform(
        request,
        "link_card",
        member.account,
        do,
        site=member.site,
        detail={"card": token},
        done=_("Card linked to %(account)s") % {"account": member.account},
    )
    if ok:
        Card.objects.update_or_create(
            ref=token, defaults={"member": member, "kind": kind, "status": "active"}
        )
    return ok


def set_status(request: HttpRequest, card: Card, status: str) -> bool:
    """lost / frozen / active (unfreeze) / cancelled: the status register and a deny-list delta
    to every venue the member uses, published to online kiosks at once."""
    member = card.member
    if member is None:
        return False
    c = cloud()
    outs: list[Outgoing] = []

    def do() -> None:
        # The move is made once; every other venue gets the same deny-list entry.
        sites = sites_of(member)
        if not sites:
            raise ConfigError(_("no venue known to send the deny list to"))
        outs.append(admin.set_card_status(c.reconciler, sites[0], card.ref, status)[1])
        entry = [DenyEntry(token=card.ref, status=status)]
        outs.extend(c.reconciler.deny_delta(site, entry) for site in sites[1:])

    ok = perform(
        request,
        f"card_{status}",
        member.account,
        do,
        site=member.site,
        detail={"card": card.ref, "status": card.status},
        done=_("Card is now %(status)s") % {"status": _(status)},
    )
    if ok:
        c.publish(outs)
        card.status = status
        card.save(update_fields=["status"])
    return ok


def replace(request: HttpRequest, card: Card, number: str, kind: str) -> bool:
    member = card.member
    if member is None:
        return False
    c = cloud()
    outs: list[Outgoing] = []
    new = c.card_token(number, kind) if c.secrets else ""

    def do() -> None:
        sites = sites_of(member)
        if not sites:
            raise ConfigError(_("no venue known to send the deny list to"))
        _account, first = admin.replace_card(c.reconciler, sites[0], card.ref, new)
        outs.extend(first)
        for site in sites[1:]:
            outs.append(admin.set_card_status(c.reconciler, site, card.ref, "replaced")[1])

    ok = perform(
        request,
        "card_replace",
        member.account,
        do,
        site=member.site,
        detail={"card": card.ref, "new_card": new},
        done=_("Card replaced"),
    )
    if ok:
        c.publish(outs)
        card.status = "replaced"
        card.save(update_fields=["status"])
        Card.objects.update_or_create(
            ref=new, defaults={"member": member, "kind": kind, "status": "active"}
        )
    return ok


def top_up(request: HttpRequest, member: Member, amount: int, receipt: str) -> bool:
    store = cloud().store
    return perform(
        request,
        "top_up",
        member.account,
        lambda: admin.top_up(
            store,
            member.account,
            "cash",
            amount,
            receipt.strip(),
            membership=cloud().cfg.membership,
        ),
        site=member.site,
        detail={"amount": amount, "receipt": receipt},
        done=_("Topped up %(amount)s (receipt %(receipt)s)")
        % {"amount": money(amount), "receipt": receipt},
    )


def refund(request: HttpRequest, member: Member, amount: int, original: str, reason: str) -> bool:
    store = cloud().store
    return perform(
        request,
        "refund",
        member.account,
        lambda: admin.refund(
            store, original.strip(), amount=amount, reason=reason, account=member.account
        ),
        site=member.site,
        detail={"amount": amount, "original": original, "why": reason},
        done=_("Refunded %(amount)s") % {"amount": money(amount)},
    )


def issue_code(request: HttpRequest, kind: str, code: str, amount: int) -> bool:
    store = cloud().store
    return perform(
        request,
        f"issue_{kind}",
        "",
        lambda: admin.issue_single_use(store, kind, code.strip(), amount),
        detail={"code": code, "amount": amount},
        done=_("Issued %(kind)s %(code)s") % {"kind": _(kind), "code": code},
    )


def delete(request: HttpRequest, member: Member) -> bool:
    """A member leaves: every card cancelled at the cloud (the ledger keeps the history), then
    the directory row goes."""
    ok = True
    for card in member.cards.exclude(status__in=("cancelled", "replaced")):
        ok = set_status(request, card, "cancelled") and ok
    if ok:
        perform(request, "delete_member", member.account, lambda: None, site=member.site)
        member.delete()
    return ok
