"""The head record: this kiosk's own chain head (seq and hash) in a small file beside the ledger,
rewritten after every commit and before the gate opens, so a ledger file restored from an older
copy is seen at the next open, offline, before it can spend rights it already spent.

It also notes the newest seq whose gate pulse was given (`opened`): the approvals after it were
committed but their gate may never have opened (a crash between commit and pulse), so the kiosk
owes those members their entry.

Cost: one fixed-size write in place (one sector, with a CRC so a torn write reads as none) on
each commit; the file is flushed to disk (fdatasync) at most once every `SYNC_EVERY_S` and at
close, not on every tap (a full sync doubled a tap's fsync cost). The record is written after
the ledger's durable commit, so it is never ahead of the ledger: a power cut can only leave it
behind (no false alarm), and a restore from a copy older than the last flush is always seen.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RECORD_BYTES = 256  # within one 512-byte sector: written whole or not at all
SYNC_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class HeadRecord:
    seq: int
    hash: bytes
    opened: int = 0  # newest own seq whose gate pulse was given


def _encode(record: HeadRecord) -> bytes:
    body = json.dumps({"seq": record.seq, "hash": record.hash.hex(), "opened": record.opened})
    line = f"{zlib.crc32(body.encode()):08x} {body}\n".encode()
    return line.ljust(RECORD_BYTES, b" ")


def read_head_record(path: Path) -> HeadRecord | None:
    """The record, or None when there is none (a new kiosk) or it does not check (logged)."""
    try:
        raw = path.read_bytes()[:RECORD_BYTES].decode().strip()
        crc, _, body = raw.partition(" ")
        if int(crc, 16) != zlib.crc32(body.encode()):
            raise ValueError("checksum does not match")
        fields = json.loads(body)
        return HeadRecord(int(fields["seq"]), bytes.fromhex(fields["hash"]), int(fields["opened"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("head record %s unreadable (%s): rewritten at the next commit", path, exc)
        return None


class HeadFile:
    """The open head record file of one ledger (one writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._synced = 0.0

    def write(self, record: HeadRecord, *, sync: bool = False) -> None:
        """Overwrite the record in place; flush to disk now with `sync`, else at most once
        every SYNC_EVERY_S."""
        os.pwrite(self._fd, _encode(record), 0)
        now = time.monotonic()
        if sync or now - self._synced >= SYNC_EVERY_S:
            os.fdatasync(self._fd)
            self._synced = now

    def close(self) -> None:
        try:
            os.fdatasync(self._fd)
        finally:
            os.close(self._fd)
