"""Writing the audit trail: `perform` runs one operator action through the cloud library and
records it, allowed or refused, with the account's state before and after; `refused` records a
permission refusal; `record_cli` is how `kiosk cloud ...` commands write the same trail."""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.contrib import messages
from django.http import HttpRequest

from backoffice.audit.models import Action
from cloud_sync.errors import SyncError
from edge.ledger import LedgerError

log = logging.getLogger(__name__)

# What a command's parameters may carry into the trail: never a PIN, never a card number.
_SECRET_PARAMS = frozenset({"pin"})
_CARD_PARAMS = frozenset({"number", "old", "new"})


def client_address(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: a forwarded-for header is whatever the client says it is.
    return request.META.get("REMOTE_ADDR") or None


def record(
    actor: str,
    address: str | None,
    action: str,
    target: str = "",
    *,
    site: str = "",
    allowed: bool,
    reason: str = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> Action:
    return Action.objects.create(
        actor=actor[:150],
        address=address,
        action=action[:100],
        target=target[:200],
        site=site[:64],
        allowed=allowed,
        reason=reason[:500],
        before=dict(before or {}),
        after=dict(after or {}),
    )


def actor_of(request: HttpRequest) -> str:
    user = request.user
    return str(user.get_username()) if user.is_authenticated else "(anonymous)"


def refused(request: HttpRequest, action: str, target: str = "", reason: str = "") -> None:
    record(
        actor_of(request),
        client_address(request),
        action,
        target,
        allowed=False,
        reason=reason or "permission denied",
    )


def perform(
    request: HttpRequest,
    action: str,
    account: str,
    do: Callable[[], object],
    *,
    site: str = "",
    detail: Mapping[str, Any] | None = None,
    done: str = "",
) -> bool:
    """Run one cloud action for the operator of `request`, record it, and tell the operator.
    A refusal by the cloud's rules (unknown member, reused receipt, card of another member...)
    is recorded with its reason and shown as one line; nothing else is caught."""
    from backoffice.cloud import cloud

    c = cloud()
    with c.lock:
        before = c.account_state(account) if account else {}
        try:
            do()
        except (SyncError, LedgerError) as exc:
            record(
                actor_of(request),
                client_address(request),
                action,
                account,
                site=site,
                allowed=False,
                reason=str(exc),
                before={**before, **(detail or {})},
                after=before,
            )
            tell(request, False, str(exc))
            return False
        after = c.account_state(account) if account else {}
    record(
        actor_of(request),
        client_address(request),
        action,
        account,
        site=site,
        allowed=True,
        before={**before, **(detail or {})},
        after=after,
    )
    if done:
        tell(request, True, done)
    return True


def tell(request: HttpRequest, ok: bool, text: str) -> None:
    """Show the outcome to the operator; an API request (`notes` set by `backoffice.api`)
    collects it for its JSON answer instead."""
    notes: list[tuple[bool, str]] | None = getattr(request, "notes", None)
    if notes is not None:
        notes.append((ok, text))
    elif ok:
        messages.success(request, text)
    else:
        messages.error(request, text)


def safe_params(params: Mapping[str, Any], card_ref: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k in _SECRET_PARAMS:
            out[k] = "(set)" if v else None
        elif k in _CARD_PARAMS and isinstance(v, str):
            out[k] = "ref:" + card_ref(v)
        elif isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        else:
            out[k] = str(v)
    return out


def record_cli(
    command: str, params: Mapping[str, Any], error: str, card_ref: Callable[[str], str]
) -> None:
    """One `kiosk cloud` command in the trail, as actor `cli:<unix user>`."""
    safe = safe_params(params, card_ref)
    target = str(safe.get("account") or safe.get("number") or safe.get("old") or "")
    record(
        f"cli:{getpass.getuser()}",
        None,
        command,
        target,
        site=str(safe.get("site") or ""),
        allowed=not error,
        reason=error,
        before={"params": safe},
    )
