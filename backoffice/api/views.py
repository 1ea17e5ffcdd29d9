"""The REST API: members, cards and their lifecycle, top-ups and refunds (Idempotency-Key),
balances, and a cursor-paginated feed of transactions. Every write goes through the same
`backoffice.members.actions` as the console's buttons, so it is audited the same way (actor
`api:<integration>`) and refused by the same rules."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Q
from django.http import HttpRequest
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backoffice.api import serializers as s
from backoffice.api.auth import Needs, TokenAuth
from backoffice.api.idempotency import HEADER, answer_once
from backoffice.audit.trail import perform
from backoffice.cloud import cloud
from backoffice.members import actions
from backoffice.members.models import Card, Member
from backoffice.operators.scope import venue_of
from cloud_sync import admin, feed

PROBLEMS = {400: s.Problem, 401: s.Problem, 403: s.Problem, 404: s.Problem, 415: s.Problem}
IDEMPOTENCY = OpenApiParameter(
    HEADER, {"type": "string", "pattern": r"^[!-~]{1,200}$"}, OpenApiParameter.HEADER,
    required=True,
    description="Your unique key for this request (e.g. the receipt number): a retry with the"
    " same key and body gets the first answer; another body with it is refused (409).",
)  # fmt: skip


class Base(APIView):
    authentication_classes = (TokenAuth,)
    permission_classes = (Needs,)
    needs: ClassVar[dict[str, str]] = {}

    def http(self, request: Request) -> HttpRequest:
        """The Django request under DRF's, collecting outcomes instead of flashing them."""
        django_request: HttpRequest = request._request
        django_request.notes = []  # type: ignore[attr-defined]
        return django_request

    def member(self, request: Request, account: str) -> Member | None:
        venue = venue_of(request._request)
        m = Member.objects.filter(account=account).first()
        if m is None or (venue is not None and m.site not in ("", venue)):
            return None
        return m


def _int_param(name: str, low: int, high: int, text: str) -> OpenApiParameter:
    schema = {"type": "integer", "minimum": low, "maximum": high}
    return OpenApiParameter(name, schema, description=f"{low}-{high}, {text}")


def _ranged(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.strip().lstrip("-").isdigit() or len(text) > 12 or not low <= int(text) <= high:
        raise ValueError(f"{name} is a whole number from {low} to {high}")
    return int(text)


def _refusal(req: HttpRequest) -> Response:
    notes: list[tuple[bool, str]] = getattr(req, "notes", [])
    reason = next((text for ok, text in reversed(notes) if not ok), "refused")
    return Response({"detail": reason}, status=409)


def _not_found(account: str) -> Response:
    return Response({"detail": f"no member {account} (or not in your venue)"}, status=404)


def _balances(account: str) -> dict[str, int]:
    c = cloud()
    with c.lock:
        return {p.purse: p.value for p in c.store.purses(account)}


def _member_out(m: Member, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "account": m.account, "name": m.name, "phone": m.phone, "category": m.category,
        "tier": m.tier, "site": m.site,
    }  # fmt: skip
    if full:
        out["balances"] = _balances(m.account)
        out["cards"] = [{"ref": c.ref, "kind": c.kind, "status": c.status} for c in m.cards.all()]
    return out


class Members(Base):
    needs: ClassVar[dict[str, str]] = {"GET": "members.view_member", "POST": "members.add_member"}

    @extend_schema(
        operation_id="members_list",
        parameters=[
            OpenApiParameter("search", str, description="account, name or phone contains"),
            _int_param("limit", 1, 500, "default 100"),
            _int_param("offset", 0, 10**9, "default 0"),
        ],
        responses={200: s.MemberPage, **PROBLEMS},
    )
    def get(self, request: Request) -> Response:
        qs = Member.objects.all()
        venue = venue_of(request._request)
        if venue is not None:
            qs = qs.filter(site__in=("", venue))
        if q := request.query_params.get("search", "").strip():
            qs = qs.filter(Q(account__icontains=q) | Q(name__icontains=q) | Q(phone__icontains=q))
        try:
            limit = _ranged(request, "limit", 100, 1, 500)
            offset = _ranged(request, "offset", 0, 0, 10**9)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        page = qs[offset : offset + limit]
        return Response({"count": qs.count(), "results": [_member_out(m) for m in page]})

    @extend_schema(
        operation_id="member_create",
        request=s.MemberIn,
        responses={201: s.MemberOut, 409: s.Problem, **PROBLEMS},
    )
    def post(self, request: Request) -> Response:
        data = s.MemberIn(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        venue = venue_of(request._request)
        site = str(d["site"]) or (venue or "")
        if venue is not None and site != venue:
            return Response({"detail": f"your venue is {venue}"}, status=403)
        if Member.objects.filter(account=d["account"]).exists():
            return Response({"detail": f"member {d['account']} exists"}, status=409)
        m = Member(
            account=d["account"], name=d["name"], phone=d["phone"], category=d["category"],
            site=site,
        )  # fmt: skip
        req = self.http(request)
        if not actions.register(req, m):
            return _refusal(req)
        m.save()
        return Response(_member_out(m, full=True), status=201)


class MemberDetail(Base):
    needs: ClassVar[dict[str, str]] = {"GET": "members.view_member"}

    @extend_schema(operation_id="member_get", responses={200: s.MemberOut, **PROBLEMS})
    def get(self, request: Request, account: str) -> Response:
        m = self.member(request, account)
        return _not_found(account) if m is None else Response(_member_out(m, full=True))


class MemberBalances(Base):
    needs: ClassVar[dict[str, str]] = {"GET": "members.view_member"}

    @extend_schema(operation_id="member_balances", responses={200: s.Balances, **PROBLEMS})
    def get(self, request: Request, account: str) -> Response:
        m = self.member(request, account)
        if m is None:
            return _not_found(account)
        return Response({"account": m.account, "balances": _balances(m.account)})


class MemberCards(Base):
    needs: ClassVar[dict[str, str]] = {"POST": "members.link_card"}

    @extend_schema(
        operation_id="card_link",
        request=s.CardIn,
        responses={201: s.CardOut, 409: s.Problem, **PROBLEMS},
    )
    def post(self, request: Request, account: str) -> Response:
        m = self.member(request, account)
        if m is None:
            return _not_found(account)
        data = s.CardIn(data=request.data)
        data.is_valid(raise_exception=True)
        req = self.http(request)
        number, kind = str(data.validated_data["number"]), str(data.validated_data["kind"])
        if not actions.link(req, m, number, kind):
            return _refusal(req)
        card = Card.objects.get(ref=cloud().card_token(number, kind))
        return Response({"ref": card.ref, "kind": card.kind, "status": card.status}, status=201)


class CardStatus(Base):
    needs: ClassVar[dict[str, str]] = {"POST": "members.card_lifecycle"}

    @extend_schema(
        operation_id="card_status",
        request=s.CardStatusIn,
        responses={200: s.CardOut, 409: s.Problem, **PROBLEMS},
    )
    def post(self, request: Request, ref: str) -> Response:
        card = Card.objects.filter(ref=ref).select_related("member").first()
        if card is None or card.member is None or self.member(request, card.member.account) is None:
            return Response({"detail": f"no card {ref}"}, status=404)
        data = s.CardStatusIn(data=request.data)
        data.is_valid(raise_exception=True)
        req = self.http(request)
        if not actions.set_status(req, card, str(data.validated_data["status"])):
            return _refusal(req)
        return Response({"ref": card.ref, "kind": card.kind, "status": card.status})


class TopUps(Base):
    needs: ClassVar[dict[str, str]] = {"POST": "members.top_up"}

    @extend_schema(
        operation_id="topup_create",
        request=s.TopUpIn,
        parameters=[IDEMPOTENCY],
        responses={201: s.TopUpOut, 409: s.Problem, **PROBLEMS},
    )
    def post(self, request: Request, account: str) -> Response:
        m = self.member(request, account)
        if m is None:
            return _not_found(account)
        data = s.TopUpIn(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data

        def make() -> Response:
            req = self.http(request)
            store = cloud().store
            amount, purse, receipt = int(d["amount"]), str(d["purse"]), str(d["receipt"])
            ok = perform(
                req, "top_up", m.account,
                lambda: admin.top_up(store, m.account, purse, amount, receipt),
                site=m.site, detail={"amount": amount, "receipt": receipt, "purse": purse},
            )  # fmt: skip
            if not ok:
                return _refusal(req)
            balance = _balances(m.account).get(purse, 0)
            out = {"account": m.account, "purse": purse, "amount": amount, "receipt": receipt}
            return Response({**out, "balance": balance}, status=201)

        return answer_once(request, make)


class Refunds(Base):
    needs: ClassVar[dict[str, str]] = {"POST": "members.refund"}

    @extend_schema(
        operation_id="refund_create",
        request=s.RefundIn,
        parameters=[IDEMPOTENCY],
        responses={201: s.RefundOut, 409: s.Problem, **PROBLEMS},
    )
    def post(self, request: Request) -> Response:
        data = s.RefundIn(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        account = str(d.get("account") or "")
        if account and self.member(request, account) is None:
            return _not_found(account)

        def make() -> Response:
            req = self.http(request)
            store = cloud().store
            done: list[admin.RefundResult] = []
            ok = perform(
                req, "refund", account,
                lambda: done.append(admin.refund(
                    store, str(d["tap"]), amount=d.get("amount"), reason=str(d["reason"]),
                    account=account or None,
                )),
                detail={"amount": d.get("amount"), "original": d["tap"], "why": d["reason"]},
            )  # fmt: skip
            if not ok:
                return _refusal(req)
            r = done[0]
            out = {"account": r.member, "cash": r.cash, "points_back": r.points_back}
            return Response({**out, "repeated": r.repeated}, status=201)

        return answer_once(request, make)


class Transactions(Base):
    needs: ClassVar[dict[str, str]] = {"GET": "members.view_member"}

    @extend_schema(
        operation_id="transactions_list",
        parameters=[
            OpenApiParameter(
                "cursor",
                {"type": "string", "pattern": feed.CURSOR_PATTERN},
                description="next_cursor of the previous page (none: from the start)",
            ),
            _int_param("limit", 1, 1000, "default 100"),
        ],
        responses={200: s.TransactionPage, **PROBLEMS},
    )
    def get(self, request: Request) -> Response:
        try:
            cursor = feed.decode_cursor(request.query_params.get("cursor", ""))
            limit = _ranged(request, "limit", 100, 1, 1000)
        except (feed.BadCursor, ValueError) as exc:
            return Response({"detail": str(exc)}, status=400)
        c = cloud()
        with c.lock:
            page = feed.ops_after(c.store, cursor, limit)
        rows = [
            {
                "replica": o.replica,
                "seq": o.seq,
                "wall_ms": o.wall_ms,
                "kind": o.kind.name.lower(),
                "account": o.account,
                "purse": o.purse,
                "amount": o.amount,
                "counterpart": o.counterpart,
                "ref": o.ref,
            }
            for o in page.ops
        ]
        return Response(
            {"results": rows, "next_cursor": feed.encode_cursor(page.cursor), "more": page.more}
        )
