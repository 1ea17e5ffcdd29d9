"""A cursor over the ops the cloud store holds, in the order they became readable: one seq per
chain (`{replica: seq}`), so an op a kiosk kept offline for a day still comes after the cursor
that was taken before it arrived. The transactions API pages with it, and the webhook worker
derives its events from it, without touching the reconciler's hot path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloud_sync.errors import SyncError
from cloud_sync.store import CloudStore
from edge.ledger.op import Op

Cursor = dict[str, int]


class BadCursor(SyncError):
    """A cursor that this feed did not hand out."""


# `k1.40~cloud.7`: chain and seq pairs; every text of this shape is a cursor (an API schema
# states it, so a client or a fuzzer can form one)
_PAIR = r"[A-Za-z0-9_@:-]{1,64}\.[0-9]{1,18}"
CURSOR_PATTERN = rf"^({_PAIR}(~{_PAIR})*)?$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(cursor: Cursor) -> str:
    return "~".join(f"{r}.{s}" for r, s in sorted(cursor.items()))


def decode_cursor(text: str) -> Cursor:
    if not _CURSOR.match(text):
        raise BadCursor("not a cursor of this feed: start without one")
    out: Cursor = {}
    for pair in filter(None, text.split("~")):
        replica, _, seq = pair.rpartition(".")
        out[replica] = int(seq)
    return out


@dataclass(frozen=True, slots=True)
class Page:
    ops: list[Op]
    cursor: Cursor  # where the next page starts
    more: bool  # a chain has ops past the cursor still


def ops_after(store: CloudStore, cursor: Cursor, limit: int = 100) -> Page:
    """Up to `limit` ops past the cursor, chain by chain in name order."""
    heads = store.heads()
    out: list[Op] = []
    nxt = dict(cursor)
    more = False
    for replica in sorted(heads):
        after = cursor.get(replica, 0)
        if heads[replica] <= after:
            continue
        room = limit - len(out)
        if room <= 0:
            more = True
            break
        ops = store.ops(replica, after, room)
        out += ops
        if ops:
            nxt[replica] = ops[-1].seq
        more = more or nxt.get(replica, 0) < heads[replica]
    return Page(out, nxt, more)


def cursor_now(store: CloudStore) -> Cursor:
    """A cursor past everything stored now (a new subscriber starts here)."""
    return dict(store.heads())
