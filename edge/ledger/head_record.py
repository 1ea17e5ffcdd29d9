"""The head record: this kiosk's own chain head (seq and hash) in a small file beside the ledger,
rewritten after every commit, so a ledger file restored from an older copy is seen at the next
open, offline, before it can spend rights it already spent.

It also notes the newest seq whose gate pulse was given (`opened`): the approvals after it were
committed but their gate may never have opened (a crash between commit and pulse), so the kiosk
owes those members their entry.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HeadRecord:
    seq: int
    hash: bytes
    opened: int = 0  # newest own seq whose gate pulse was given


def read_head_record(path: Path) -> HeadRecord | None:
    """The record, or None when there is none (a new kiosk) or it does not parse (logged)."""
    try:
        raw = json.loads(path.read_text())
        return HeadRecord(int(raw["seq"]), bytes.fromhex(raw["hash"]), int(raw.get("opened", 0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("head record %s unreadable (%s): rewritten at the next commit", path, exc)
        return None


def write_head_record(path: Path, record: HeadRecord, *, durable: bool = True) -> None:
    """Replace the record whole (temporary file, rename): a crash leaves the old or the new one.
    `durable` fsyncs the file and its folder, so it survives a power cut."""
    tmp = path.with_name(path.name + ".tmp")
    body = json.dumps({"seq": record.seq, "hash": record.hash.hex(), "opened": record.opened})
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body.encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
