"""The pages Django's admin does not fit: the member page (balances, cards one click each,
history of taps and top-ups, top-up and refund forms), vouchers and coupons, batch top-up."""

from __future__ import annotations

import datetime as dt
from typing import Any

import tablib
from django.contrib import admin as django_admin
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from backoffice.audit.trail import refused
from backoffice.cloud import cloud
from backoffice.members import actions
from backoffice.members.forms import (
    BatchForm,
    CodeForm,
    LinkCardForm,
    RefundForm,
    ReplaceCardForm,
    TopUpForm,
)
from backoffice.members.models import Card, Member
from backoffice.money import money, parse_money
from backoffice.operators.scope import in_scope
from edge.ledger import records as rec


def page(request: HttpRequest, template: str, **context: Any) -> HttpResponse:
    return render(request, template, {**django_admin.site.each_context(request), **context})


def _member(request: HttpRequest, account: str) -> Member:
    member = get_object_or_404(Member, account=account)
    if not in_scope(request, member.site):
        refused(request, "open_member", account, "another venue's member")
        raise Http404
    return member


def _history(account: str, refs: list[str]) -> list[dict[str, Any]]:
    c = cloud()
    with c.lock:
        ops = c.store.history(account, 50)
        for ref in refs:
            ops += c.store.history(rec.card_account(ref), 10)
    ops.sort(key=lambda o: o.wall_ms, reverse=True)
    return [
        {
            "when": dt.datetime.fromtimestamp(o.wall_ms / 1000, dt.UTC),
            "where": o.replica,
            "what": o.kind.name.lower(),
            "purse": "card" if o.account.startswith(rec.CARD_PREFIX) else o.purse,
            "amount": money(o.amount) if o.purse == "cash" else o.amount,
            "detail": o.data if o.account.startswith(rec.CARD_PREFIX) or o.data else "",
            "ref": o.ref,
        }
        for o in ops[:60]
    ]


@login_required
@permission_required("members.view_member", raise_exception=True)
def member_page(request: HttpRequest, account: str) -> HttpResponse:
    member = _member(request, account)
    cards = list(member.cards.all())
    c = cloud()
    with c.lock:
        purses = c.store.purses(account)
    balances = [(p.purse, money(p.value) if p.purse == "cash" else str(p.value)) for p in purses]
    return page(
        request,
        "backoffice/member.html",
        title=member.name,
        member=member,
        cards=cards,
        balances=balances,
        history=_history(account, [card.ref for card in cards]),
        topup_form=TopUpForm(),
        link_form=LinkCardForm(),
        replace_form=ReplaceCardForm(),
        refund_form=RefundForm(),
    )


@require_POST
@login_required
@permission_required("members.top_up", raise_exception=True)
def top_up(request: HttpRequest, account: str) -> HttpResponse:
    member = _member(request, account)
    form = TopUpForm(request.POST)
    if form.is_valid():
        actions.top_up(request, member, form.cleaned_data["amount"], form.cleaned_data["receipt"])
    else:
        _form_errors(request, form)
    return redirect("member", account=account)


@require_POST
@login_required
@permission_required("members.link_card", raise_exception=True)
def link_card(request: HttpRequest, account: str) -> HttpResponse:
    member = _member(request, account)
    form = LinkCardForm(request.POST)
    if form.is_valid():
        actions.link(request, member, form.cleaned_data["number"], form.cleaned_data["kind"])
    else:
        _form_errors(request, form)
    return redirect("member", account=account)


@require_POST
@login_required
@permission_required("members.refund", raise_exception=True)
def refund(request: HttpRequest, account: str) -> HttpResponse:
    member = _member(request, account)
    form = RefundForm(request.POST)
    if form.is_valid():
        d = form.cleaned_data
        actions.refund(request, member, d["amount"], d["original"], d["reason"])
    else:
        _form_errors(request, form)
    return redirect("member", account=account)


CARD_MOVES = {"lost": "lost", "freeze": "frozen", "unfreeze": "active", "cancel": "cancelled"}


@require_POST
@login_required
@permission_required("members.card_lifecycle", raise_exception=True)
def card_move(request: HttpRequest, ref: str, move: str) -> HttpResponse:
    card = get_object_or_404(Card, ref=ref)
    member = card.member
    if member is None:
        raise Http404
    _member(request, member.account)
    if move == "replace":
        form = ReplaceCardForm(request.POST)
        if form.is_valid():
            actions.replace(request, card, form.cleaned_data["number"], form.cleaned_data["kind"])
        else:
            _form_errors(request, form)
    elif move in CARD_MOVES:
        actions.set_status(request, card, CARD_MOVES[move])
    else:
        raise Http404
    return redirect("member", account=member.account)


@login_required
@permission_required("members.issue_codes", raise_exception=True)
def codes(request: HttpRequest) -> HttpResponse:
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        actions.issue_code(request, d["kind"], d["code"], d.get("amount") or 1)
        return redirect("codes")
    return page(request, "backoffice/codes.html", title=_("Vouchers and coupons"), form=form)


@login_required
@permission_required("members.top_up", raise_exception=True)
def batch_top_up(request: HttpRequest) -> HttpResponse:
    """A sheet of top-ups: every row checked first; nothing is credited unless all rows are
    good; then each row is one audited top-up (idempotent by its receipt)."""
    form = BatchForm(request.POST or None, request.FILES or None)
    rows: list[dict[str, Any]] = []
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["sheet"]
        fmt = "xlsx" if upload.name.lower().endswith(".xlsx") else "csv"
        raw = upload.read()
        try:
            data = tablib.Dataset().load(raw if fmt == "xlsx" else raw.decode("utf-8-sig"), fmt)
        except Exception as exc:  # tablib raises many kinds for a sheet it cannot read
            form.add_error("sheet", _("cannot read the sheet: %(e)s") % {"e": exc})
            data = tablib.Dataset()
        rows = [_check_row(request, n, r) for n, r in enumerate(data.dict, start=2)]
        if rows and not any(r["error"] for r in rows):
            for r in rows:
                r["done"] = actions.top_up(request, r["member"], r["amount"], r["receipt"])
    return page(request, "backoffice/batch.html", title=_("Batch top-up"), form=form, rows=rows)


def _check_row(request: HttpRequest, line: int, row: dict[str, Any]) -> dict[str, Any]:
    account = str(row.get("account") or "").strip()
    receipt = str(row.get("receipt") or "").strip()
    out: dict[str, Any] = {"line": line, "account": account, "receipt": receipt, "error": ""}
    member = Member.objects.filter(account=account).first()
    try:
        out["amount"] = parse_money(str(row.get("amount") or ""))
    except ValueError as exc:
        out["error"] = str(exc)
    if member is None or not in_scope(request, member.site):
        out["error"] = _("no member %(a)s") % {"a": account}
    elif not receipt:
        out["error"] = _("no receipt number")
    out["member"] = member
    return out


def _form_errors(request: HttpRequest, form: Any) -> None:
    from django.contrib import messages

    for field, errs in form.errors.items():
        for e in errs:
            messages.error(request, f"{field}: {e}")
