"""Stores that hold secrets (names, PIN hashes, card references, claims) are the owner's alone:
created 0600 before SQLite opens them (its -wal and -shm files copy that mode), and an existing
file readable by others is named in one log line at start."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def prepare_private(path: str | Path) -> list[Path]:
    """Create `path` 0600 if missing; return the files of the store (the database and its -wal
    and -shm) that group or others can read, after logging one warning for each."""
    p = Path(path)
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return []
    try:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        return []  # SQLite names the fault itself when it opens the file
    loose: list[Path] = []
    for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm")):
        try:
            mode = stat.S_IMODE(f.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            loose.append(f)
            log.warning("%s is readable by others (mode %04o); run: chmod 600 %s", f, mode, f)
    return loose
