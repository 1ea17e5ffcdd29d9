"""Members and cards written outside the console (the CLI, the demo, an older cloud) are added
to the console's directory at start, so operators find them: names and tiers from the cloud's
registers, cards by reference and status. Existing rows are left as they are."""

from __future__ import annotations

import logging

from backoffice.cloud import Cloud
from backoffice.members.models import Card, Member
from edge.ledger import records as rec

log = logging.getLogger(__name__)


def sync_directory(c: Cloud) -> tuple[int, int]:
    """(members added, cards added)."""
    with c.lock:
        names = c.store.registers_named(rec.MEMBER_NAME)
        tiers = dict(c.store.registers_named(rec.MEMBER_TIER))
        owners = c.store.registers_named(rec.CARD_MEMBER)
        states = dict(c.store.registers_named(rec.CARD_STATUS))
    known = set(Member.objects.values_list("account", flat=True))
    new_members = [
        Member(account=a, name=n, tier=tiers.get(a, ""))
        for a, n in names
        if a not in known and not a.startswith(rec.CARD_PREFIX)
    ]
    Member.objects.bulk_create(new_members)
    by_account = {m.account: m for m in Member.objects.filter(account__in={a for _, a in owners})}
    known_refs = set(Card.objects.values_list("ref", flat=True))
    new_cards = []
    for card_account, member in owners:
        ref = card_account.removeprefix(rec.CARD_PREFIX)
        if ref not in known_refs and member in by_account:
            status = states.get(card_account, "active")
            new_cards.append(Card(ref=ref, member=by_account[member], status=status))
    Card.objects.bulk_create(new_cards)
    if new_members or new_cards:
        log.info("directory: %d members, %d cards from the cloud", len(new_members), len(new_cards))
    return len(new_members), len(new_cards)
